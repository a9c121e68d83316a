// The Resolve index's thread (resolve_cache.h): every few tens of ms it
// proves this replica fresh (resolve_freshness.h) and re-reads the stamp
// of every tenant it holds answers for; a tenant whose stamp moved is
// warmed again: every user's primary address answered in advance from one
// scan of the tenant's user records, so relayd's first RCPT to anyone is a
// map lookup too. Other addresses (aliases, groups, shared mailboxes,
// postmaster@, misses) are computed on first use and kept.
//
// Threads: "index" (probe + stamps) and "warm" (one tenant at a time, at
// most once per kWarmSpacing per tenant, so a burst of admin changes does
// not keep a replica rebuilding). Both stop in StopResolveIndex().
#include "absl/container/flat_hash_map.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "services/tenant/directory_service.h"
#include "services/tenant/tenant_service.h"

namespace mailgrid::tenant {

using storage::AddressRecord;

namespace {
constexpr absl::Duration kIndexPeriod = absl::Milliseconds(25);
constexpr absl::Duration kProbeWait = absl::Milliseconds(500);
constexpr absl::Duration kWarmSpacing = absl::Seconds(2);
constexpr uint32_t kWarmPage = 1000;

// What the warm thread waits for (under index_mu_).
struct WarmWait {
  const bool* stop;
  const std::set<std::string>* pending;
  static bool Ready(WarmWait* w) { return *w->stop || !w->pending->empty(); }
};
}  // namespace

absl::StatusOr<ResolveCache::Stamp> DirectoryServiceImpl::ReadStamp(TenantStore& s,
                                                                    const std::string& tid) {
  ASSIGN_OR_RETURN(auto dirgen, s.GetRaw(dkeys::DirGen(tid)));
  uint64_t version = 0;
  ASSIGN_OR_RETURN(auto tenant, s.GetRaw(keys::Tenant(tid), &version));
  (void)tenant;
  return ResolveCache::Stamp{dirgen.value_or(""), version};
}

void DirectoryServiceImpl::StartResolveIndex() {
  index_thread_ = std::thread([this] { IndexLoop(); });
  warm_thread_ = std::thread([this] { WarmLoop(); });
}

void DirectoryServiceImpl::StopResolveIndex() {
  {
    absl::MutexLock lock(&index_mu_);
    index_stop_ = true;
  }
  if (index_thread_.joinable()) index_thread_.join();
  if (warm_thread_.joinable()) warm_thread_.join();
}

void DirectoryServiceImpl::IndexLoop() {
  absl::Time last_complaint = absl::InfinitePast();
  uint64_t last_applied = 0;
  for (;;) {
    {
      absl::MutexLock lock(&index_mu_);
      if (index_mu_.AwaitWithTimeout(absl::Condition(&index_stop_), kIndexPeriod)) return;
    }
    absl::StatusOr<uint64_t> probe = freshness_->Probe(kProbeWait);
    if (!probe.ok()) {
      // Resolve then reads through the leader once the bound has passed.
      if (absl::Now() - last_complaint > absl::Seconds(30)) {
        last_complaint = absl::Now();
        log::Warn("this replica cannot show it is current; Resolve reads through the leader",
                  {{"why", probe.status()}});
      }
      continue;
    }
    const absl::Time as_of = freshness_->fresh_as_of();
    // Nothing applied since the last round: every stamp read then still
    // holds, now vouched for as of this probe (no reads).
    if (*probe != 0 && *probe == last_applied) {
      cache_.Revouch(as_of);
    } else {
      last_applied = *probe;
      for (const std::string& tid : cache_.Tenants()) {
        auto stamp = ReadStamp(*rs_, tid);
        if (stamp.ok()) cache_.SetStamp(tid, *stamp, as_of);
      }
    }
    // Tenants whose held stamp is not the one their warm-up used.
    for (const std::string& tid : cache_.Tenants()) {
      ResolveCache::Stamp held;
      if (!cache_.CurrentStamp(tid, &held)) continue;
      absl::MutexLock lock(&index_mu_);
      auto it = warmed_.find(tid);
      if (it == warmed_.end() || !(it->second == held)) warm_pending_.insert(tid);
    }
  }
}

void DirectoryServiceImpl::WarmLoop() {
  absl::flat_hash_map<std::string, absl::Time> last_warm;
  for (;;) {
    std::string tid;
    {
      absl::MutexLock lock(&index_mu_);
      WarmWait wait{&index_stop_, &warm_pending_};
      index_mu_.AwaitWithTimeout(absl::Condition(&WarmWait::Ready, &wait), absl::Seconds(1));
      if (index_stop_) return;
      const absl::Time now = absl::Now();
      for (const auto& t : warm_pending_) {
        auto it = last_warm.find(t);
        if (it == last_warm.end() || now - it->second >= kWarmSpacing) {
          tid = t;
          break;
        }
      }
      if (tid.empty()) {
        index_mu_.AwaitWithTimeout(absl::Condition(&index_stop_), absl::Milliseconds(100));
        continue;
      }
      warm_pending_.erase(tid);
    }
    last_warm[tid] = absl::Now();
    auto warmed = WarmTenant(tid);
    if (!warmed.ok()) log::Debug("resolve index warm-up failed", {{"why", warmed.status()}});
  }
}

absl::StatusOr<size_t> DirectoryServiceImpl::WarmTenant(const std::string& tid) {
  const absl::Time as_of = freshness_->fresh_as_of();
  if (absl::Now() - as_of > cache_.max_staleness()) return 0;  // not fresh: nothing to vouch for
  TenantStore& s = *rs_;
  // The stamp first: a change after this read makes these answers stale.
  ASSIGN_OR_RETURN(ResolveCache::Stamp stamp, ReadStamp(s, tid));
  ASSIGN_OR_RETURN(auto tenant, s.Read<storage::TenantRecord>(keys::Tenant(tid)));
  {
    absl::MutexLock lock(&index_mu_);
    warmed_[tid] = stamp;
  }
  if (tenant.value.tenant().state() != v1::TENANT_STATE_ACTIVE) return 0;
  // Domains whose users' primary addresses resolve plainly: VERIFIED and not
  // an alias of another domain (those go through ResolveUncached).
  absl::flat_hash_map<std::string, bool> plain;
  auto domain_plain = [&](const std::string& d) -> absl::StatusOr<bool> {
    auto it = plain.find(d);
    if (it != plain.end()) return it->second;
    ASSIGN_OR_RETURN(auto drec, s.Read<storage::DomainRecord>(keys::Domain(tid, d)));
    ASSIGN_OR_RETURN(auto settings, s.Read<v1::DomainMailSettings>(dkeys::MailSettings(tid, d)));
    bool ok = drec.found() && drec.value.domain().state() == v1::DOMAIN_STATE_VERIFIED &&
              settings.value.alias_of().empty();
    plain[d] = ok;
    return ok;
  };
  size_t warmed = 0;
  std::string token;
  do {
    {
      absl::MutexLock lock(&index_mu_);
      if (index_stop_) return warmed;
    }
    ASSIGN_OR_RETURN(TenantStore::Page page, s.Scan(dkeys::UserPrefix(tid), kWarmPage, token));
    token = page.next_token;
    std::vector<std::pair<std::string, std::shared_ptr<const ResolveCache::Entry>>> batch;
    for (const auto& kv : page.entries) {
      storage::UserRecord rec;
      if (!rec.ParseFromString(kv.value())) continue;
      const v1::User& u = rec.user();
      if (u.state() == v1::USER_STATE_DELETED) continue;  // ADDRESS_DELETED: computed on use
      auto a = ParseAddress(u.address(), "address");
      if (!a.ok()) continue;
      ASSIGN_OR_RETURN(bool ok, domain_plain(a->domain));
      if (!ok) continue;
      ASSIGN_OR_RETURN(auto ar, s.Read<AddressRecord>(dkeys::Address(a->key)));
      if (!ar.found() || ar.value.kind() != AddressRecord::KIND_USER ||
          ar.value.target_id() != u.user_id() || ar.value.tenant_id() != tid)
        continue;
      // Exactly what ResolveUncached answers for a user's primary address
      // (directory_service_test checks the two agree).
      auto e = std::make_shared<ResolveCache::Entry>();
      e->computed_at = as_of;
      e->tenant_id = tid;
      e->stamp = stamp;
      e->response.set_tenant_id(tid);
      e->response.set_canonical_address(ar.value.address());
      e->response.set_kind(v1::ADDRESS_KIND_USER);
      v1::Recipient r = RecipientOf(rec);
      if (!r.mailbox_id().empty()) *e->response.add_recipients() = std::move(r);
      batch.emplace_back(a->key, std::move(e));
    }
    warmed += batch.size();
    cache_.InsertAll(std::move(batch));
  } while (!token.empty());
  return warmed;
}

}  // namespace mailgrid::tenant
