// DomainService: DNS checks (on demand and the periodic recheck), which
// verify a domain and flag drift, and DKIM key rotation.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/kv/keys.h"
#include "services/tenant/directory_store.h"
#include "services/tenant/domain_service.h"
#include "services/tenant/errors.h"
#include "services/tenant/tenant_service.h"

namespace mailgrid::tenant {
namespace {

bool Bad(const v1::RecordCheck& c) {
  return c.status() == v1::RECORD_CHECK_STATUS_MISSING ||
         c.status() == v1::RECORD_CHECK_STATUS_WRONG;
}

std::string StatusWord(v1::RecordCheckStatus s) {
  return v1::RecordCheckStatus_Name(s).substr(std::string_view("RECORD_CHECK_STATUS_").size());
}

std::string Describe(const v1::DnsRecord& r) {
  std::string s = absl::StrCat(r.name(), " ", v1::DnsRecordType_Name(r.type()).substr(16), " ",
                               StatusWord(r.check().status()));
  if (r.check().found_size() > 0)
    absl::StrAppend(&s, " (found: ", absl::StrJoin(r.check().found(), ", "), ")");
  return s;
}

}  // namespace

absl::StatusOr<v1::DomainRecords> DomainServiceImpl::RunCheck(const Principal& p,
                                                              const std::string& tenant_id,
                                                              const std::string& name) {
  ASSIGN_OR_RETURN(Loaded first, Load(name));
  ASSIGN_OR_RETURN(auto expected, RecordsOf(first.tenant_id, first.record.value));
  // The network part, outside any transaction; "nothing changes" if the
  // resolver cannot be reached.
  ASSIGN_OR_RETURN(Lookups lookups, resolver_->LookupAll(QueriesFor(expected)));
  v1::DomainRecords out;
  RETURN_IF_ERROR(store_->Transact([&]() -> absl::StatusOr<Batch> {
    ASSIGN_OR_RETURN(Loaded d, Load(name));
    if (d.tenant_id != tenant_id) return NotFound("domain", name);
    storage::DomainRecord& rec = d.record.value;
    ASSIGN_OR_RETURN(auto records, RecordsOf(d.tenant_id, rec));
    absl::Time now = absl::Now();
    rec.clear_checks();
    bool required_ok = true;
    std::vector<std::string> drift;
    for (auto& r : records) {
      auto it = lookups.find({CanonicalName(r.name()), r.type()});
      if (it == lookups.end()) {
        r.mutable_check()->set_status(
            v1::RECORD_CHECK_STATUS_UNCHECKED);  // changed while we looked
      } else {
        *r.mutable_check() = Evaluate(r, it->second, now);
      }
      (*rec.mutable_checks())[RecordId(r)] = r.check();
      if (r.required_for_verification()) {
        if (r.check().status() != v1::RECORD_CHECK_STATUS_OK) required_ok = false;
        if (Bad(r.check())) drift.push_back(Describe(r));
      }
    }
    v1::Domain& dom = *rec.mutable_domain();
    *dom.mutable_last_checked_at() = ToProto(now);
    Batch batch;
    if (dom.state() != v1::DOMAIN_STATE_VERIFIED && required_ok) {
      dom.set_state(v1::DOMAIN_STATE_VERIFIED);
      dom.set_verification_method(v1::VERIFICATION_METHOD_DNS);
      *dom.mutable_verified_at() = ToProto(now);
      TouchDirectory(batch, d.tenant_id);  // the domain is now hosted for Resolve
      AddAudit(batch, d.tenant_id, p, "domain.verify", "domain", name,
               absl::StrCat("domain ", name, " VERIFIED by DNS (verification TXT and MX found)"),
               "", now);
    } else if (dom.state() == v1::DOMAIN_STATE_VERIFIED && !drift.empty() &&
               !dom.has_drift_detected_at()) {
      // Kept VERIFIED (mail keeps flowing) but flagged, once per episode.
      *dom.mutable_drift_detected_at() = ToProto(now);
      AddAudit(batch, d.tenant_id, p, "domain.drift", "domain", name,
               absl::StrCat("DNS records of ", name, " drifted: ", absl::StrJoin(drift, "; ")), "",
               now);
    } else if (dom.state() == v1::DOMAIN_STATE_VERIFIED && required_ok &&
               dom.has_drift_detected_at()) {
      dom.clear_drift_detected_at();
      AddAudit(batch, d.tenant_id, p, "domain.drift.cleared", "domain", name,
               absl::StrCat("DNS records of ", name, " are correct again"), "", now);
    }
    batch.ExpectVersion(keys::Domain(d.tenant_id, name), d.record.version)
        .Put(keys::Domain(d.tenant_id, name), rec);
    out.Clear();
    *out.mutable_domain() = DomainView(rec);
    for (auto& r : records) *out.add_records() = std::move(r);
    return batch;
  }));
  return out;
}

grpc::Status DomainServiceImpl::CheckDomain(Ctx* ctx, const v1::CheckDomainRequest* req,
                                            v1::DomainRecords* resp) {
  return Serve(*auth_, ctx, "CheckDomain", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(Loaded d,
                     Authorized(p, req->name(), {.platform_operator = true, .tenant_admin = true}));
    ASSIGN_OR_RETURN(*resp, RunCheck(p, d.tenant_id, d.record.value.domain().name()));
    return absl::OkStatus();
  });
}

absl::StatusOr<int> DomainServiceImpl::RecheckAll() {
  ASSIGN_OR_RETURN(auto index, store_->ScanAll(keys::DomainIndexPrefix()));
  int checked = 0;
  Principal system = Principal::Tenantd();
  for (const auto& e : index) {
    kv::KeyReader r(e.key());
    r.ConsumePrefix(keys::DomainIndexPrefix());
    ASSIGN_OR_RETURN(std::string name, r.Str());
    auto result = RunCheck(system, e.value(), name);
    if (absl::IsUnavailable(result.status()))
      return result.status();  // resolver down: try next round
    if (!result.ok()) {
      log::Warn("domain recheck failed", {{"domain", name}, {"status", result.status()}});
      continue;
    }
    ++checked;
    if (result->domain().has_drift_detected_at())
      log::Warn("domain records drifted", {{"domain", name}});
  }
  return checked;
}

grpc::Status DomainServiceImpl::RotateDkim(Ctx* ctx, const v1::RotateDkimRequest* req,
                                           v1::Domain* resp) {
  return Serve(*auth_, ctx, "RotateDkim", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(Loaded first,
                     Authorized(p, req->name(), {.platform_operator = true, .tenant_admin = true}));
    const std::string name = first.record.value.domain().name();
    auto in_state = [](const storage::DomainRecord& rec, v1::DkimKeyState s) {
      std::vector<std::string> out;
      for (const auto& k : rec.keys()) {
        if (k.key().state() == s) out.push_back(k.key().selector());
      }
      return out;
    };
    if (req->force() && !(p.platform() && p.HasRole(auth::kRolePlatformOperator))) {
      return PermissionDenied("force (switching without checking DNS) is for platform operators");
    }
    switch (req->step()) {
      case v1::DKIM_ROTATION_STEP_BEGIN: {
        RETURN_IF_ERROR(RequireSealer());
        auto busy = in_state(first.record.value, v1::DKIM_KEY_STATE_PUBLISHED);
        auto retiring = in_state(first.record.value, v1::DKIM_KEY_STATE_RETIRING);
        busy.insert(busy.end(), retiring.begin(), retiring.end());
        if (!busy.empty()) {
          return Precondition(
              "ROTATION_IN_PROGRESS",
              absl::StrCat("a DKIM rotation of ", name, " is in progress (",
                           absl::StrJoin(busy, ", "), "): finish it with SWITCH and RETIRE first"));
        }
        int64_t generation = first.record.value.dkim_generation() + 1;
        ASSIGN_OR_RETURN(auto fresh,
                         NewKeys(name, generation, v1::DKIM_KEY_STATE_PUBLISHED, absl::Now()));
        return store_->Transact([&]() -> absl::StatusOr<Batch> {
          ASSIGN_OR_RETURN(Loaded d, Load(name));
          if (d.record.value.dkim_generation() + 1 != generation) {
            return absl::AbortedError("another rotation of " + name + " began at the same time");
          }
          for (const auto& k : fresh) *d.record.value.add_keys() = k;
          d.record.value.set_dkim_generation(generation);
          Batch batch;
          batch.ExpectVersion(keys::Domain(d.tenant_id, name), d.record.version)
              .Put(keys::Domain(d.tenant_id, name), d.record.value);
          AddAudit(batch, d.tenant_id, p, "domain.dkim.rotate.begin", "domain", name,
                   absl::StrCat("new DKIM selectors ", fresh[0].key().selector(), ", ",
                                fresh[1].key().selector(), " generated: publish them"),
                   "", absl::Now());
          *resp = DomainView(d.record.value);
          return batch;
        });
      }
      case v1::DKIM_ROTATION_STEP_SWITCH: {
        auto published = in_state(first.record.value, v1::DKIM_KEY_STATE_PUBLISHED);
        if (published.empty()) {
          return Precondition("ROTATION_NOT_STARTED",
                              "no new DKIM keys of " + name + " to switch to: BEGIN first");
        }
        auto retiring = in_state(first.record.value, v1::DKIM_KEY_STATE_RETIRING);
        if (!retiring.empty()) {
          return Precondition("ROTATION_IN_PROGRESS",
                              absl::StrCat("keys ", absl::StrJoin(retiring, ", "), " of ", name,
                                           " must RETIRE first"));
        }
        if (!req->force()) {
          std::vector<v1::DnsRecord> want;
          for (const auto& k : first.record.value.keys()) {
            if (k.key().state() != v1::DKIM_KEY_STATE_PUBLISHED) continue;
            v1::DnsRecord r;
            r.set_name(absl::StrCat(k.key().selector(), "._domainkey.", name));
            r.set_type(v1::DNS_RECORD_TYPE_TXT);
            r.set_value(k.key().txt_value());
            r.set_purpose(v1::DNS_RECORD_PURPOSE_DKIM);
            want.push_back(r);
          }
          ASSIGN_OR_RETURN(Lookups lookups, resolver_->LookupAll(QueriesFor(want)));
          for (const auto& r : want) {
            v1::RecordCheck c =
                Evaluate(r, lookups[{CanonicalName(r.name()), r.type()}], absl::Now());
            if (c.status() != v1::RECORD_CHECK_STATUS_OK) {
              return Precondition(
                  "NEW_KEY_NOT_PUBLISHED",
                  absl::StrCat("the TXT record of ", r.name(), " is not visible in DNS yet (",
                               StatusWord(c.status()), c.detail().empty() ? "" : ": ", c.detail(),
                               "): publish it, wait for the TTL, and SWITCH again"));
            }
          }
        }
        return store_->Transact([&]() -> absl::StatusOr<Batch> {
          ASSIGN_OR_RETURN(Loaded d, Load(name));
          absl::Time now = absl::Now();
          bool any = false;
          for (auto& k : *d.record.value.mutable_keys()) {
            v1::DkimKey& key = *k.mutable_key();
            if (key.state() == v1::DKIM_KEY_STATE_ACTIVE) {
              key.set_state(v1::DKIM_KEY_STATE_RETIRING);
            } else if (key.state() == v1::DKIM_KEY_STATE_PUBLISHED) {
              key.set_state(v1::DKIM_KEY_STATE_ACTIVE);
              *key.mutable_activated_at() = ToProto(now);
              any = true;
            }
          }
          if (!any)
            return Precondition("ROTATION_NOT_STARTED",
                                "no new DKIM keys of " + name + " to switch to");
          d.record.value.set_dkim_version(d.record.value.dkim_version() + 1);
          Batch batch;
          batch.ExpectVersion(keys::Domain(d.tenant_id, name), d.record.version)
              .Put(keys::Domain(d.tenant_id, name), d.record.value);
          AddAudit(batch, d.tenant_id, p, "domain.dkim.rotate.switch", "domain", name,
                   absl::StrCat("signing switched to ", absl::StrJoin(published, ", ")),
                   req->force() ? "forced without a DNS check" : "", now);
          *resp = DomainView(d.record.value);
          return batch;
        });
      }
      case v1::DKIM_ROTATION_STEP_RETIRE: {
        auto retiring = in_state(first.record.value, v1::DKIM_KEY_STATE_RETIRING);
        if (retiring.empty()) {
          return Precondition("ROTATION_NOT_STARTED",
                              "no DKIM keys of " + name + " are RETIRING: SWITCH first");
        }
        return store_->Transact([&]() -> absl::StatusOr<Batch> {
          ASSIGN_OR_RETURN(Loaded d, Load(name));
          absl::Time now = absl::Now();
          for (auto& k : *d.record.value.mutable_keys()) {
            if (k.key().state() != v1::DKIM_KEY_STATE_RETIRING) continue;
            k.mutable_key()->set_state(v1::DKIM_KEY_STATE_RETIRED);
            *k.mutable_key()->mutable_retired_at() = ToProto(now);
            // A retired key never signs again: drop the secret.
            k.clear_sealed_private_key();
            k.clear_nonce();
          }
          Batch batch;
          batch.ExpectVersion(keys::Domain(d.tenant_id, name), d.record.version)
              .Put(keys::Domain(d.tenant_id, name), d.record.value);
          AddAudit(batch, d.tenant_id, p, "domain.dkim.rotate.retire", "domain", name,
                   absl::StrCat("DKIM selectors ", absl::StrJoin(retiring, ", "),
                                " retired: their TXT records may go"),
                   "", now);
          *resp = DomainView(d.record.value);
          return batch;
        });
      }
      default:
        return InvalidField("step", "MISSING", "must be BEGIN, SWITCH or RETIRE");
    }
  });
}

}  // namespace mailgrid::tenant
