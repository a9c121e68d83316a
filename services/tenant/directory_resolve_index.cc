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
#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "services/tenant/directory_service.h"
#include "services/tenant/tenant_service.h"

namespace mailgrid::tenant {

using storage::AddressRecord;

namespace {
// The index thread's period while Resolve calls arrive or the replica's
// state moves is Options::resolve_index_period (default 25 ms: changes made
// elsewhere show in tens of ms); never shorter than this.
constexpr absl::Duration kMinIndexPeriod = absl::Milliseconds(5);
// How long after the last Resolve or applied change the thread stays at
// its short period. Idle, it probes only as often as the staleness bound needs
// to keep the index vouched for (IdlePeriod): a 3-replica cluster with no
// clients spent about 0.2 cores proving itself fresh 40 times a second.
constexpr absl::Duration kActiveFor = absl::Seconds(2);
constexpr absl::Duration kProbeWait = absl::Milliseconds(500);
constexpr absl::Duration kWarmSpacing = absl::Seconds(2);
constexpr uint32_t kWarmPage = 1000;
// Threads answering Resolve calls that read the store (index misses, reads
// through the leader): a few, as those are short point reads; more would
// only queue on the store's own locks.
constexpr int kResolveWorkers = 4;

// What the warm thread waits for (under index_mu_).
struct WarmWait {
  const bool* stop;
  const std::set<std::string>* pending;
  const std::set<std::string>* models;
  static bool Ready(WarmWait* w) {
    return *w->stop || !w->pending->empty() || !w->models->empty();
  }
};
// What a Resolve worker waits for (under work_mu_).
struct WorkWait {
  const std::deque<std::function<void()>>* work;
  const bool* running;
  static bool Ready(WorkWait* w) { return !w->work->empty() || !*w->running; }
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
  {
    absl::MutexLock lock(&work_mu_);
    work_running_ = true;
  }
  for (int i = 0; i < kResolveWorkers; ++i) workers_.emplace_back([this] { ResolveWorkerLoop(); });
}

void DirectoryServiceImpl::StopResolveIndex() {
  {
    absl::MutexLock lock(&index_mu_);
    index_stop_ = true;
  }
  if (index_thread_.joinable()) index_thread_.join();
  if (warm_thread_.joinable()) warm_thread_.join();
  {
    // Workers finish what is queued (each a call gRPC waits for); later
    // work runs inline on the caller.
    absl::MutexLock lock(&work_mu_);
    work_running_ = false;
  }
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void DirectoryServiceImpl::RunResolveWork(std::function<void()> work) {
  {
    absl::MutexLock lock(&work_mu_);
    if (work_running_) {
      work_.push_back(std::move(work));
      return;
    }
  }
  work();
}

void DirectoryServiceImpl::ResolveWorkerLoop() {
  for (;;) {
    std::function<void()> work;
    {
      absl::MutexLock lock(&work_mu_);
      WorkWait wait{&work_, &work_running_};
      work_mu_.Await(absl::Condition(&WorkWait::Ready, &wait));
      if (work_.empty()) return;
      work = std::move(work_.front());
      work_.pop_front();
    }
    work();
  }
}

absl::Duration DirectoryServiceImpl::IdlePeriod() const {
  // A quarter of the bound: a probe that takes a while still lands in time.
  return std::clamp(cache_.max_staleness() / 4, ActivePeriod(), absl::Seconds(1));
}

absl::Duration DirectoryServiceImpl::ActivePeriod() const {
  return std::clamp(options_->resolve_index_period, kMinIndexPeriod, absl::Seconds(1));
}

void DirectoryServiceImpl::NoteResolve(absl::Time now) {
  // At most one store per ms: the callback threads share this cache line.
  const int64_t us = absl::ToUnixMicros(now);
  if (us - last_resolve_us_.load(std::memory_order_relaxed) > 1000)
    last_resolve_us_.store(us, std::memory_order_relaxed);
}

void DirectoryServiceImpl::IndexLoop() {
  absl::Time last_complaint = absl::InfinitePast();
  absl::Time last_moved = absl::Now();  // the last round that saw the state move
  uint64_t last_applied = 0;
  for (;;) {
    const absl::Time last_resolve =
        absl::FromUnixMicros(last_resolve_us_.load(std::memory_order_relaxed));
    const bool active = absl::Now() - std::max(last_moved, last_resolve) < kActiveFor;
    {
      absl::MutexLock lock(&index_mu_);
      if (index_mu_.AwaitWithTimeout(absl::Condition(&index_stop_),
                                     active ? ActivePeriod() : IdlePeriod()))
        return;
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
      bool moved = false;
      for (const std::string& tid : cache_.Tenants()) {
        auto stamp = ReadStamp(*rs_, tid);
        if (stamp.ok()) moved |= cache_.SetStamp(tid, *stamp, as_of);
      }
      // Only a directory change keeps the short period: the group's applied
      // index also moves with keys that are not the directory's (relayd's
      // outbound queue lives in this group), and probing every 25 ms for
      // those was a ReadIndex round per relayed message at the leader.
      // (*probe 0: a single store, always re-read.)
      if (*probe != 0 && moved) last_moved = absl::Now();
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
    bool model_only = false;
    {
      absl::MutexLock lock(&index_mu_);
      WarmWait wait{&index_stop_, &warm_pending_, &model_pending_};
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
      if (tid.empty() && !model_pending_.empty()) {
        // An expansion found the department model missing or stale: load
        // it now (a warm-up due later would load it too).
        tid = *model_pending_.begin();
        model_only = true;
      }
      if (tid.empty()) {
        index_mu_.AwaitWithTimeout(absl::Condition(&index_stop_), absl::Milliseconds(100));
        continue;
      }
      model_pending_.erase(tid);
      if (!model_only) warm_pending_.erase(tid);
    }
    if (!model_only) {
      last_warm[tid] = absl::Now();
      auto warmed = WarmTenant(tid);
      if (!warmed.ok()) log::Debug("resolve index warm-up failed", {{"why", warmed.status()}});
    }
    // The department model follows each warm-up (reloaded only when the
    // tenant's memberships changed), so the first expansion of a group
    // after a change reads memory.
    auto model = RefreshDeptModel(tid);
    if (!model.ok()) log::Debug("department model load failed", {{"why", model.status()}});
  }
}

absl::StatusOr<size_t> DirectoryServiceImpl::WarmTenant(const std::string& tid) {
  absl::MutexLock run(&warm_run_mu_);
  absl::StatusOr<size_t> warmed = WarmTenantLocked(tid);
  if (!warmed.ok()) {
    // What was seen is no longer what the index holds: start over next time.
    warm_state_.erase(tid);
    cache_.ClearWarm(tid);
  }
  return warmed;
}

absl::StatusOr<size_t> DirectoryServiceImpl::WarmTenantLocked(const std::string& tid) {
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
  WarmedTenant& w = warm_state_[tid];
  std::vector<std::string> erase;
  if (tenant.value.tenant().state() != v1::TENANT_STATE_ACTIVE) {
    for (const auto& [id, u] : w.users)
      if (!u.key.empty()) erase.push_back(u.key);
    w = WarmedTenant{};
    cache_.ApplyWarm(tid, stamp, {}, erase);
    return 0;
  }
  // Domains whose users' primary addresses resolve plainly: VERIFIED and not
  // an alias of another domain (those go through ResolveUncached). One that
  // changed either way rebuilds every user.
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
  bool rebuild_all = false;
  for (const auto& [d, was] : w.plain_domains) {
    ASSIGN_OR_RETURN(bool now, domain_plain(d));
    rebuild_all |= now != was;
  }
  const uint32_t round = ++w.round;
  std::vector<std::pair<std::string, std::shared_ptr<const ResolveCache::Entry>>> upserts;
  // The answer held for one user (its address key; "" for none).
  auto answer = [&](const storage::UserRecord& rec) -> absl::StatusOr<std::string> {
    const v1::User& u = rec.user();
    if (u.state() == v1::USER_STATE_DELETED) return std::string();  // ADDRESS_DELETED: on use
    auto a = ParseAddress(u.address(), "address");
    if (!a.ok()) return std::string();
    ASSIGN_OR_RETURN(bool ok, domain_plain(a->domain));
    if (!ok) return std::string();
    ASSIGN_OR_RETURN(auto ar, s.Read<AddressRecord>(dkeys::Address(a->key)));
    if (!ar.found() || ar.value.kind() != AddressRecord::KIND_USER ||
        ar.value.target_id() != u.user_id() || ar.value.tenant_id() != tid)
      return std::string();
    // Exactly what ResolveUncached + AnswerFrom answer for a user's primary
    // address (directory_index_test checks the two agree byte for byte).
    v1::ResolveResponse r;
    r.set_tenant_id(tid);
    r.set_canonical_address(ar.value.address());
    r.set_kind(v1::ADDRESS_KIND_USER);
    v1::Recipient rcpt = RecipientOf(rec);
    if (!rcpt.mailbox_id().empty()) *r.add_recipients() = std::move(rcpt);
    r.set_posting_decision(v1::POSTING_DECISION_ALLOWED);
    auto e = std::make_shared<ResolveCache::Entry>();
    e->computed_at = as_of;
    e->tenant_id = tid;
    e->packed = r.SerializeAsString();
    upserts.emplace_back(a->key, std::move(e));
    return a->key;
  };
  // The first warm-up reads every record in the scan; later ones scan keys
  // and versions only (a change log would spare even that) and read just
  // the records whose version moved.
  const bool full = rebuild_all || w.users.empty();
  std::string token;
  do {
    {
      absl::MutexLock lock(&index_mu_);
      if (index_stop_) return absl::CancelledError("stopping");
    }
    ASSIGN_OR_RETURN(TenantStore::Page page, s.Scan(dkeys::UserPrefix(tid), full ? kWarmPage : 10 * kWarmPage,
                                                    token, /*keys_only=*/!full));
    token = page.next_token;
    for (const auto& kv : page.entries) {
      WarmedTenant::User& held = w.users[kv.key()];
      held.round = round;
      if (!full && held.built && held.fingerprint == kv.version()) continue;
      storage::UserRecord rec;
      if (full) {
        if (!rec.ParseFromString(kv.value())) continue;
      } else {
        ASSIGN_OR_RETURN(uint64_t version, s.Get(kv.key(), &rec));
        if (version == 0) continue;  // purged meanwhile: next round drops it
      }
      ASSIGN_OR_RETURN(std::string key, answer(rec));
      if (!held.key.empty() && held.key != key) erase.push_back(held.key);
      held.key = std::move(key);
      held.fingerprint = kv.version();
      held.built = true;
    }
  } while (!token.empty());
  // Users gone since (purged): their answers go too.
  w.held = 0;
  for (auto it = w.users.begin(); it != w.users.end();) {
    if (it->second.round != round) {
      if (!it->second.key.empty()) erase.push_back(it->second.key);
      w.users.erase(it++);
      continue;
    }
    if (!it->second.key.empty()) ++w.held;
    ++it;
  }
  w.plain_domains = std::move(plain);
  cache_.ApplyWarm(tid, stamp, std::move(upserts), erase);
  return w.held;
}

}  // namespace mailgrid::tenant
