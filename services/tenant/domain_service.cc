// DomainService: claiming a domain, reading it and its records, releasing
// it, the operator's verification override, and the signing keys relayd
// fetches. DNS checks and DKIM rotation are in domain_check.cc.
#include "services/tenant/domain_service.h"

#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/kv/keys.h"
#include "services/tenant/directory_store.h"
#include "services/tenant/errors.h"
#include "services/tenant/plans.h"
#include "services/tenant/tenant_service.h"
#include "services/tenant/validation.h"

namespace mailgrid::tenant {

v1::Domain DomainView(const storage::DomainRecord& record) {
  v1::Domain d = record.domain();
  d.clear_dkim_keys();
  for (const auto& k : record.keys()) *d.add_dkim_keys() = k.key();
  return d;
}

std::string DkimSelector(absl::Time day, int64_t generation, v1::DkimAlgorithm algorithm) {
  return absl::StrCat("mg", absl::FormatTime("%Y%m%d", day, absl::UTCTimeZone()), "g", generation,
                      algorithm == v1::DKIM_ALGORITHM_ED25519 ? "-ed" : "-rsa");
}

DomainServiceImpl::DomainServiceImpl(TenantStore* store, const Authenticator* auth,
                                     const Options* options, std::unique_ptr<Resolver> resolver,
                                     std::optional<KeySealer> sealer)
    : store_(store),
      auth_(auth),
      options_(options),
      resolver_(std::move(resolver)),
      sealer_(std::move(sealer)) {
  record_config_.mx_hosts = options->mx_hosts;
  record_config_.cluster_hostname = options->cluster_hostname;
  record_config_.spf_include = options->spf_include;
}

absl::Status DomainServiceImpl::RequireSealer() const {
  if (sealer_.has_value()) return absl::OkStatus();
  return Precondition(
      "DKIM_NOT_CONFIGURED",
      "tenantd has no DKIM master key (--dkim-master-key-file or MAILGRID_DKIM_MASTER_KEY), so it "
      "cannot create DKIM keys");
}

absl::StatusOr<DomainServiceImpl::Loaded> DomainServiceImpl::Load(const std::string& ascii) {
  Loaded out;
  ASSIGN_OR_RETURN(auto tenant, store_->GetRaw(keys::DomainIndex(ascii)));
  if (!tenant.has_value()) return NotFound("domain", ascii);
  out.tenant_id = *tenant;
  ASSIGN_OR_RETURN(out.record,
                   store_->Read<storage::DomainRecord>(keys::Domain(out.tenant_id, ascii)));
  if (!out.record.found()) return NotFound("domain", ascii);
  return out;
}

absl::StatusOr<DomainServiceImpl::Loaded> DomainServiceImpl::Authorized(const Principal& p,
                                                                        const std::string& name,
                                                                        const Who& who) {
  ASSIGN_OR_RETURN(DomainName d, NormalizeDomain(name, "name"));
  absl::Status not_found = NotFound("domain", d.ascii);
  auto loaded = Load(d.ascii);
  if (absl::IsNotFound(loaded.status())) {
    // The role check first, so an absent domain and another tenant's answer alike.
    RETURN_IF_ERROR(CheckAccess(p, "", who, not_found));
    return not_found;
  }
  if (!loaded.ok()) return loaded.status();
  RETURN_IF_ERROR(CheckAccess(p, loaded->tenant_id, who, not_found));
  return loaded;
}

absl::StatusOr<std::vector<storage::DkimKeyRecord>> DomainServiceImpl::NewKeys(
    const std::string& domain, int64_t generation, v1::DkimKeyState state, absl::Time now) {
  RETURN_IF_ERROR(RequireSealer());
  std::vector<storage::DkimKeyRecord> out;
  for (v1::DkimAlgorithm alg : {v1::DKIM_ALGORITHM_ED25519, v1::DKIM_ALGORITHM_RSA_2048}) {
    ASSIGN_OR_RETURN(DkimKeyPair pair, GenerateDkimKey(alg));
    storage::DkimKeyRecord rec;
    v1::DkimKey& k = *rec.mutable_key();
    k.set_selector(DkimSelector(now, generation, alg));
    k.set_algorithm(alg);
    k.set_state(state);
    k.set_txt_value(DkimTxtValue(alg, pair.public_b64));
    *k.mutable_created_at() = ToProto(now);
    if (state == v1::DKIM_KEY_STATE_ACTIVE) *k.mutable_activated_at() = ToProto(now);
    KeySealer::Sealed sealed = sealer_->Seal(pair.private_pem, SealContext(domain, k.selector()));
    rec.set_sealed_private_key(sealed.ciphertext);
    rec.set_nonce(sealed.nonce);
    rec.set_master_key_id(sealer_->key_id());
    out.push_back(std::move(rec));
  }
  return out;
}

absl::StatusOr<std::vector<v1::DnsRecord>> DomainServiceImpl::RecordsOf(
    const std::string& tenant_id, const storage::DomainRecord& record) {
  ASSIGN_OR_RETURN(auto tenant, ReadTenant(*store_, tenant_id));
  std::vector<v1::DkimKey> keys;
  for (const auto& k : record.keys()) keys.push_back(k.key());
  auto records =
      GenerateRecords(record.domain().name(), record_config_, record.verification_token(), keys,
                      tenant.value.tenant().contact().email());
  for (auto& r : records) {
    auto it = record.checks().find(RecordId(r));
    if (it != record.checks().end()) *r.mutable_check() = it->second;
  }
  return records;
}

grpc::Status DomainServiceImpl::AddDomain(Ctx* ctx, const v1::AddDomainRequest* req,
                                          v1::Domain* resp) {
  return Serve(*auth_, ctx, "AddDomain", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(
        std::string tenant_id,
        AuthorizeTenant(p, req->tenant_id(), {.platform_operator = true, .tenant_admin = true}));
    ASSIGN_OR_RETURN(DomainName name, NormalizeDomain(req->name(), "name"));
    RETURN_IF_ERROR(RequireSealer());
    ASSIGN_OR_RETURN(auto tenant, ReadTenant(*store_, tenant_id));
    if (tenant.value.tenant().state() != v1::TENANT_STATE_ACTIVE) {
      return Precondition(
          "WRONG_STATE",
          absl::StrCat("tenant ", tenant_id, " is ", StateName(tenant.value.tenant().state()),
                       ": domains can be added only to an ACTIVE tenant"));
    }
    ASSIGN_OR_RETURN(auto claimed, store_->GetRaw(keys::DomainIndex(name.ascii)));
    if (claimed.has_value()) {
      return AlreadyExists("name", "DOMAIN_CLAIMED",
                           absl::StrCat("domain ", name.ascii, " is already claimed"));
    }
    // Key generation (RSA takes a while) happens once, outside the retries.
    absl::Time now = absl::Now();
    ASSIGN_OR_RETURN(auto keys, NewKeys(name.ascii, 1, v1::DKIM_KEY_STATE_ACTIVE, now));
    storage::DomainRecord record;
    v1::Domain& d = *record.mutable_domain();
    d.set_name(name.ascii);
    d.set_unicode_name(name.unicode);
    d.set_tenant_id(tenant_id);
    d.set_state(v1::DOMAIN_STATE_PENDING_VERIFICATION);
    *d.mutable_created_at() = ToProto(now);
    record.set_verification_token(NewVerificationToken());
    for (auto& k : keys) *record.add_keys() = std::move(k);
    record.set_dkim_version(1);
    record.set_dkim_generation(1);
    RETURN_IF_ERROR(store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto t, ReadTenant(*store_, tenant_id));
      if (t.value.tenant().state() != v1::TENANT_STATE_ACTIVE) {
        return Precondition("WRONG_STATE",
                            absl::StrCat("tenant ", tenant_id, " is no longer ACTIVE"));
      }
      if (t.value.tenant().plan_id().empty()) {
        return Precondition("NO_PLAN",
                            absl::StrCat("tenant ", tenant_id,
                                         " has no plan yet: choose one first (SetTenantPlan, "
                                         "`mailctl plan set`)"));
      }
      ASSIGN_OR_RETURN(auto plan, store_->Read<v1::Plan>(keys::Plan(t.value.tenant().plan_id())));
      ASSIGN_OR_RETURN(auto usage, store_->Read<v1::TenantUsage>(keys::Usage(tenant_id)));
      ASSIGN_OR_RETURN(auto existing,
                       store_->ScanAll(keys::DomainPrefix(tenant_id), /*keys_only=*/true));
      int64_t count = static_cast<int64_t>(existing.size());
      if (plan.found() && !Within(plan.value.domains(), count + 1)) {
        common::v1::LimitDetail limit;
        limit.set_limit("plan.domains");
        *limit.mutable_value() = plan.value.domains();
        limit.set_usage(count);
        limit.set_requested(1);
        return WithLimits(
            absl::StatusCode::kResourceExhausted, "PLAN_LIMIT",
            absl::StrCat("plan \"", plan.value.name(), "\" allows ",
                         LimitText(plan.value.domains()), " domain(s); the tenant has ", count),
            {limit});
      }
      ASSIGN_OR_RETURN(auto holder, store_->GetRaw(keys::DomainIndex(name.ascii)));
      if (holder.has_value()) {
        return AlreadyExists("name", "DOMAIN_CLAIMED",
                             absl::StrCat("domain ", name.ascii, " is already claimed"));
      }
      usage.value.set_tenant_id(tenant_id);
      usage.value.set_domains(count + 1);
      Batch batch;
      batch.ExpectAbsent(keys::DomainIndex(name.ascii))
          .ExpectVersion(keys::Usage(tenant_id), usage.version)
          .ExpectVersion(keys::Tenant(tenant_id), t.version)
          .PutRaw(keys::DomainIndex(name.ascii), tenant_id)
          .Put(keys::Domain(tenant_id, name.ascii), record)
          .Put(keys::Usage(tenant_id), usage.value);
      AddAudit(batch, tenant_id, p, "domain.add", "domain", name.ascii,
               absl::StrCat("domain ", name.ascii, " added"), "", now);
      return batch;
    }));
    *resp = DomainView(record);
    log::Info("domain added", {{"tenant", tenant_id}, {"domain", name.ascii}});
    return absl::OkStatus();
  });
}

grpc::Status DomainServiceImpl::GetDomain(Ctx* ctx, const v1::GetDomainRequest* req,
                                          v1::Domain* resp) {
  return Serve(*auth_, ctx, "GetDomain", [&](const Principal& p) -> absl::Status {
    // identityd (service) asks which tenant owns an SSO login's "@domain".
    ASSIGN_OR_RETURN(Loaded d, Authorized(p, req->name(), {.platform_operator = true,
                                                          .tenant_admin = true,
                                                          .service = true}));
    *resp = DomainView(d.record.value);
    return absl::OkStatus();
  });
}

grpc::Status DomainServiceImpl::ListDomains(Ctx* ctx, const v1::ListDomainsRequest* req,
                                            v1::ListDomainsResponse* resp) {
  return Serve(*auth_, ctx, "ListDomains", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(
        std::string tenant_id,
        AuthorizeTenant(p, req->tenant_id(),
                        {.platform_operator = true, .tenant_admin = true, .auditor = true}));
    ASSIGN_OR_RETURN(auto tenant, ReadTenant(*store_, tenant_id));
    ASSIGN_OR_RETURN(auto page, store_->Scan(keys::DomainPrefix(tenant_id), PageSize(req->page()),
                                             req->page().page_token()));
    for (const auto& e : page.entries) {
      storage::DomainRecord r;
      if (!r.ParseFromString(e.value())) return absl::DataLossError("stored domain does not parse");
      *resp->add_domains() = DomainView(r);
    }
    resp->mutable_page_info()->set_next_page_token(page.next_token);
    resp->mutable_page_info()->set_total_size(-1);
    return absl::OkStatus();
  });
}

grpc::Status DomainServiceImpl::RemoveDomain(Ctx* ctx, const v1::RemoveDomainRequest* req,
                                             v1::RemoveDomainResponse*) {
  return Serve(*auth_, ctx, "RemoveDomain", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(Loaded first,
                     Authorized(p, req->name(), {.platform_operator = true, .tenant_admin = true}));
    const std::string name = first.record.value.domain().name();
    // Refused while the directory still uses the domain. (An address created
    // on it between this check and the delete below is not caught: the
    // address would then resolve as DOMAIN_NOT_HOSTED until removed.)
    ASSIGN_OR_RETURN(DomainUse use, UsesOfDomain(*store_, first.tenant_id, name));
    if (use.addresses() > 0 || use.alias_domains > 0)
      return Precondition("IN_USE",
                          absl::StrCat(use.Describe(), " still use ", name,
                                       ": remove or rename them first"),
                          "name");
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(Loaded d, Load(name));
      ASSIGN_OR_RETURN(auto usage, store_->Read<v1::TenantUsage>(keys::Usage(d.tenant_id)));
      usage.value.set_domains(std::max<int64_t>(0, usage.value.domains() - 1));
      Batch batch;
      batch.ExpectVersion(keys::Domain(d.tenant_id, name), d.record.version)
          .ExpectVersion(keys::Usage(d.tenant_id), usage.version)
          .Delete(keys::Domain(d.tenant_id, name))
          .Delete(keys::DomainIndex(name))
          .Delete(dkeys::MailSettings(d.tenant_id, name))
          .Put(keys::Usage(d.tenant_id), usage.value);
      TouchDirectory(batch, d.tenant_id);  // cached Resolve answers go stale
      AddAudit(batch, d.tenant_id, p, "domain.remove", "domain", name,
               absl::StrCat("domain ", name, " removed"), "", absl::Now());
      return batch;
    });
  });
}

grpc::Status DomainServiceImpl::GetDomainRecords(Ctx* ctx, const v1::GetDomainRecordsRequest* req,
                                                 v1::DomainRecords* resp) {
  return Serve(*auth_, ctx, "GetDomainRecords", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(Loaded d,
                     Authorized(p, req->name(), {.platform_operator = true, .tenant_admin = true}));
    *resp->mutable_domain() = DomainView(d.record.value);
    ASSIGN_OR_RETURN(auto records, RecordsOf(d.tenant_id, d.record.value));
    for (auto& r : records) *resp->add_records() = std::move(r);
    return absl::OkStatus();
  });
}

grpc::Status DomainServiceImpl::OverrideVerification(Ctx* ctx,
                                                     const v1::OverrideVerificationRequest* req,
                                                     v1::Domain* resp) {
  return Serve(*auth_, ctx, "OverrideVerification", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(Loaded first, Authorized(p, req->name(), {.platform_operator = true}));
    ASSIGN_OR_RETURN(std::string reason, ValidateOptionalText(req->reason(), "reason", 2000));
    if (reason.empty())
      return InvalidField("reason", "EMPTY", "an override needs a reason (it is audited)");
    const std::string name = first.record.value.domain().name();
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(Loaded d, Load(name));
      absl::Time now = absl::Now();
      v1::Domain& dom = *d.record.value.mutable_domain();
      dom.set_state(v1::DOMAIN_STATE_VERIFIED);
      dom.set_verification_method(v1::VERIFICATION_METHOD_OVERRIDE);
      *dom.mutable_verified_at() = ToProto(now);
      dom.clear_drift_detected_at();
      Batch batch;
      batch.ExpectVersion(keys::Domain(d.tenant_id, name), d.record.version)
          .Put(keys::Domain(d.tenant_id, name), d.record.value);
      TouchDirectory(batch, d.tenant_id);
      AddAudit(batch, d.tenant_id, p, "domain.verify.override", "domain", name,
               absl::StrCat("domain ", name, " marked VERIFIED by an operator without DNS"), reason,
               now);
      *resp = DomainView(d.record.value);
      return batch;
    });
  });
}

grpc::Status DomainServiceImpl::GetDkimSigningKey(Ctx* ctx, const v1::GetDkimSigningKeyRequest* req,
                                                  v1::GetDkimSigningKeyResponse* resp) {
  return Serve(*auth_, ctx, "GetDkimSigningKey", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(Loaded d, Authorized(p, req->domain(), {.service = true}));
    absl::Status not_found = NotFound("domain", d.record.value.domain().name());
    if (d.record.value.domain().state() != v1::DOMAIN_STATE_VERIFIED) return not_found;
    ASSIGN_OR_RETURN(auto tenant, ReadTenant(*store_, d.tenant_id));
    if (tenant.value.tenant().state() != v1::TENANT_STATE_ACTIVE) return not_found;
    if (!sealer_.has_value()) return RequireSealer();
    const std::string& name = d.record.value.domain().name();
    for (const auto& k : d.record.value.keys()) {
      if (k.key().state() != v1::DKIM_KEY_STATE_ACTIVE) continue;
      ASSIGN_OR_RETURN(std::string pem, sealer_->Open({k.nonce(), k.sealed_private_key()},
                                                      SealContext(name, k.key().selector())));
      v1::DkimSigningKey* out = resp->add_keys();
      out->set_domain(name);
      out->set_selector(k.key().selector());
      out->set_algorithm(k.key().algorithm());
      out->set_private_key_pem(pem);
    }
    resp->set_version(d.record.value.dkim_version());
    resp->set_cache_ttl_seconds(300);
    resp->set_tenant_id(d.tenant_id);
    return absl::OkStatus();
  });
}

}  // namespace mailgrid::tenant
