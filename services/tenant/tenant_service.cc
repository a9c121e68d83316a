// TenantService: registration, onboarding tokens, review and the rest of
// the lifecycle (lifecycle.h), events. Documents are in documents.cc, plans
// and usage in plans.cc.
#include "services/tenant/tenant_service.h"

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/kv/keys.h"
#include "mailgrid/tenant/v1/directory.pb.h"
#include "services/tenant/errors.h"
#include "services/tenant/validation.h"

namespace mailgrid::tenant {

using v1::TenantState;

uint32_t PageSize(const common::v1::Pagination& page) {
  if (page.page_size() <= 0) return 50;
  return static_cast<uint32_t>(std::min(page.page_size(), 1000));
}

void AddEvent(Batch& batch, const std::string& tenant_id, TenantState from, TenantState to,
              const std::string& action, const Principal& who, const std::string& reason,
              absl::Time at) {
  v1::TenantEvent e;
  e.set_event_id(NewId("ev-"));
  e.set_tenant_id(tenant_id);
  e.set_from_state(from);
  e.set_to_state(to);
  e.set_action(action);
  *e.mutable_actor() = who.ToActor();
  *e.mutable_at() = ToProto(at);
  e.set_reason(reason);
  batch.Put(keys::Event(tenant_id, at, e.event_id()), e);
}

void AddAudit(Batch& batch, const std::string& tenant_id, const Principal& who,
              const std::string& action, const std::string& target_kind,
              const std::string& target_id, const std::string& summary, const std::string& reason,
              absl::Time at) {
  v1::AdminAuditEntry e;
  e.set_entry_id(NewId("au-"));
  e.set_tenant_id(tenant_id);
  *e.mutable_at() = ToProto(at);
  *e.mutable_actor() = who.ToActor();
  e.set_action(action);
  e.set_target_kind(target_kind);
  e.set_target_id(target_id);
  e.set_summary(summary);
  e.set_reason(reason);
  batch.Put(keys::Audit(tenant_id, at, e.entry_id()), e);
}

v1::Tenant TenantView(const storage::TenantRecord& record, absl::Time now) {
  v1::Tenant t = record.tenant();
  t.set_onboarding_token_active(!record.onboarding_token_sha256().empty() &&
                                FromProto(record.onboarding_expires_at()) > now &&
                                t.state() != v1::TENANT_STATE_DELETED);
  return t;
}

absl::StatusOr<Versioned<storage::TenantRecord>> ReadTenant(TenantStore& store,
                                                            const std::string& tenant_id) {
  ASSIGN_OR_RETURN(auto record, store.Read<storage::TenantRecord>(keys::Tenant(tenant_id)));
  if (!record.found()) return NotFound("tenant", tenant_id);
  return record;
}

TenantServiceImpl::TenantServiceImpl(TenantStore* store, const Authenticator* auth,
                                     const Options* options)
    : store_(store), auth_(auth), options_(options) {}

namespace {

struct ValidRegistration {
  std::string company_name;
  v1::PostalAddress address;
  v1::Contact contact;
};

absl::StatusOr<ValidRegistration> Validate(const v1::RegisterTenantRequest& req) {
  ValidRegistration v;
  ASSIGN_OR_RETURN(v.company_name, ValidateName(req.company_name(), "company_name", 200));
  const auto& a = req.address();
  ASSIGN_OR_RETURN(*v.address.mutable_street(), ValidateName(a.street(), "address.street", 300));
  ASSIGN_OR_RETURN(*v.address.mutable_city(), ValidateOptionalText(a.city(), "address.city", 200));
  ASSIGN_OR_RETURN(*v.address.mutable_region(),
                   ValidateOptionalText(a.region(), "address.region", 200));
  ASSIGN_OR_RETURN(*v.address.mutable_postal_code(),
                   ValidateOptionalText(a.postal_code(), "address.postal_code", 32));
  ASSIGN_OR_RETURN(*v.address.mutable_country_code(),
                   NormalizeCountryCode(a.country_code(), "address.country_code"));
  ASSIGN_OR_RETURN(*v.contact.mutable_name(),
                   ValidateName(req.contact().name(), "contact.name", 200));
  ASSIGN_OR_RETURN(*v.contact.mutable_phone(),
                   NormalizePhone(req.contact().phone(), "contact.phone"));
  ASSIGN_OR_RETURN(*v.contact.mutable_email(),
                   NormalizeEmail(req.contact().email(), "contact.email"));
  return v;
}

// The uniqueness keys of a company: same name with the same email, or with
// the same phone.
std::vector<std::string> UniqueKeys(const v1::Tenant& t) {
  std::string name = NameKey(t.company_name());
  return {keys::TenantUnique(name, "email", absl::AsciiStrToLower(t.contact().email())),
          keys::TenantUnique(name, "phone", t.contact().phone())};
}

}  // namespace

absl::StatusOr<std::string> TenantServiceImpl::NewOnboardingToken(Batch& batch,
                                                                  storage::TenantRecord& record,
                                                                  absl::Time now) {
  if (!record.onboarding_token_sha256().empty())
    batch.Delete(keys::Onboarding(Hex(record.onboarding_token_sha256())));
  std::string token = absl::StrCat(kOnboardingPrefix, NewId(""), NewId(""));
  record.set_onboarding_token_sha256(Sha256(token));
  *record.mutable_onboarding_expires_at() = ToProto(now + options_->onboarding_token_ttl);
  batch.PutRaw(keys::Onboarding(Hex(record.onboarding_token_sha256())),
               record.tenant().tenant_id());
  return token;
}

grpc::Status TenantServiceImpl::RegisterTenant(Ctx* ctx, const v1::RegisterTenantRequest* req,
                                               v1::RegisterTenantResponse* resp) {
  // Self-service: anyone may register a company (rate limiting belongs in
  // front of tenantd and is not done here yet; see README).
  return Serve(*auth_, ctx, "RegisterTenant", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(ValidRegistration v, Validate(*req));
    if (!req->plan_id().empty()) {
      ASSIGN_OR_RETURN(auto plan, store_->Read<v1::Plan>(keys::Plan(req->plan_id())));
      if (!plan.found()) return NotFound("plan", req->plan_id());
      if (plan.value.retired())
        return Precondition("PLAN_RETIRED", "plan " + plan.value.name() + " is retired", "plan_id");
    }
    std::string token;
    storage::TenantRecord record;
    RETURN_IF_ERROR(store_->Transact([&]() -> absl::StatusOr<Batch> {
      absl::Time now = absl::Now();
      record.Clear();
      v1::Tenant& t = *record.mutable_tenant();
      t.set_tenant_id(NewId("t-"));
      t.set_company_name(v.company_name);
      *t.mutable_address() = v.address;
      *t.mutable_contact() = v.contact;
      t.set_state(v1::TENANT_STATE_PENDING_DOCUMENTS);
      t.set_plan_id(req->plan_id());
      *t.mutable_created_at() = ToProto(now);
      *t.mutable_updated_at() = ToProto(now);
      Batch batch;
      for (const std::string& key : UniqueKeys(t)) {
        ASSIGN_OR_RETURN(auto existing, store_->GetRaw(key));
        if (existing.has_value()) {
          bool by_email = key == UniqueKeys(t)[0];
          return AlreadyExists("company_name", "DUPLICATE_TENANT",
                               absl::StrCat("company \"", t.company_name(),
                                            "\" is already registered with this contact ",
                                            by_email ? "email" : "phone"));
        }
        batch.ExpectAbsent(key).PutRaw(key, t.tenant_id());
        record.add_unique_keys(key);
      }
      ASSIGN_OR_RETURN(token, NewOnboardingToken(batch, record, now));
      v1::TenantUsage usage;
      usage.set_tenant_id(t.tenant_id());
      usage.set_plan_id(t.plan_id());
      *usage.mutable_computed_at() = ToProto(now);
      batch.ExpectAbsent(keys::Tenant(t.tenant_id()))
          .Put(keys::Tenant(t.tenant_id()), record)
          .PutRaw(keys::TenantRegistry(t.tenant_id()), "")
          .Put(keys::Usage(t.tenant_id()), usage);
      AddEvent(batch, t.tenant_id(), v1::TENANT_STATE_UNSPECIFIED, t.state(), "registered", p, "",
               now);
      return batch;
    }));
    *resp->mutable_tenant() = TenantView(record);
    resp->set_onboarding_token(token);
    *resp->mutable_onboarding_token_expires_at() = record.onboarding_expires_at();
    log::Info("tenant registered", {{"tenant", record.tenant().tenant_id()}});
    return absl::OkStatus();
  });
}

grpc::Status TenantServiceImpl::GetTenant(Ctx* ctx, const v1::GetTenantRequest* req,
                                          v1::Tenant* resp) {
  return Serve(*auth_, ctx, "GetTenant", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string id, AuthorizeTenant(p, req->tenant_id(),
                                                     {.platform_operator = true,
                                                      .platform_reviewer = true,
                                                      .tenant_admin = true}));
    ASSIGN_OR_RETURN(auto record, ReadTenant(*store_, id));
    *resp = TenantView(record.value);
    return absl::OkStatus();
  });
}

grpc::Status TenantServiceImpl::ListTenants(Ctx* ctx, const v1::ListTenantsRequest* req,
                                            v1::ListTenantsResponse* resp) {
  return Serve(*auth_, ctx, "ListTenants", [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(CheckAccess(p, "", {.platform_operator = true, .platform_reviewer = true},
                                PermissionDenied("listing tenants is for platform staff")));
    std::string needle = NameKey(req->name_contains());
    ASSIGN_OR_RETURN(auto page, store_->Scan(keys::TenantRegistryPrefix(), PageSize(req->page()),
                                             req->page().page_token(), /*keys_only=*/true));
    for (const auto& e : page.entries) {
      kv::KeyReader r(e.key());
      r.ConsumePrefix(keys::TenantRegistryPrefix());
      ASSIGN_OR_RETURN(std::string id, r.Str());
      ASSIGN_OR_RETURN(auto record, store_->Read<storage::TenantRecord>(keys::Tenant(id)));
      if (!record.found()) continue;
      const v1::Tenant& t = record.value.tenant();
      bool state_ok = req->states().empty() ? t.state() != v1::TENANT_STATE_DELETED
                                            : absl::c_linear_search(req->states(), t.state());
      if (!state_ok) continue;
      if (!needle.empty() && !absl::StrContains(NameKey(t.company_name()), needle)) continue;
      *resp->add_tenants() = TenantView(record.value);
    }
    resp->mutable_page_info()->set_next_page_token(page.next_token);
    resp->mutable_page_info()->set_total_size(-1);
    return absl::OkStatus();
  });
}

grpc::Status TenantServiceImpl::IssueOnboardingToken(Ctx* ctx,
                                                     const v1::IssueOnboardingTokenRequest* req,
                                                     v1::IssueOnboardingTokenResponse* resp) {
  return Serve(*auth_, ctx, "IssueOnboardingToken", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(
        std::string id,
        AuthorizeTenant(p, req->tenant_id(), {.platform_operator = true, .tenant_admin = true}));
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto record, ReadTenant(*store_, id));
      if (record.value.tenant().state() == v1::TENANT_STATE_DELETED) {
        return Precondition("WRONG_STATE", "tenant " + id + " is DELETED");
      }
      Batch batch;
      batch.ExpectVersion(keys::Tenant(id), record.version);
      ASSIGN_OR_RETURN(std::string token, NewOnboardingToken(batch, record.value, absl::Now()));
      batch.Put(keys::Tenant(id), record.value);
      resp->set_onboarding_token(token);
      *resp->mutable_expires_at() = record.value.onboarding_expires_at();
      return batch;
    });
  });
}

grpc::Status TenantServiceImpl::RevokeOnboardingToken(Ctx* ctx,
                                                      const v1::RevokeOnboardingTokenRequest* req,
                                                      v1::RevokeOnboardingTokenResponse*) {
  return Serve(*auth_, ctx, "RevokeOnboardingToken", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(
        std::string id,
        AuthorizeTenant(p, req->tenant_id(), {.platform_operator = true, .tenant_admin = true}));
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto record, ReadTenant(*store_, id));
      Batch batch;
      if (record.value.onboarding_token_sha256().empty()) return batch;  // nothing to do
      batch.ExpectVersion(keys::Tenant(id), record.version);
      batch.Delete(keys::Onboarding(Hex(record.value.onboarding_token_sha256())));
      record.value.clear_onboarding_token_sha256();
      record.value.clear_onboarding_expires_at();
      batch.Put(keys::Tenant(id), record.value);
      return batch;
    });
  });
}

absl::StatusOr<v1::Tenant> TenantServiceImpl::Transition(const Principal& p, const std::string& id,
                                                         Action action, const std::string& reason,
                                                         absl::Duration grace) {
  v1::Tenant out;
  RETURN_IF_ERROR(store_->Transact([&]() -> absl::StatusOr<Batch> {
    ASSIGN_OR_RETURN(auto record, ReadTenant(*store_, id));
    v1::Tenant& t = *record.value.mutable_tenant();
    absl::Time now = absl::Now();
    absl::Time purge_after =
        t.has_purge_after() ? FromProto(t.purge_after()) : absl::InfiniteFuture();
    ASSIGN_OR_RETURN(struct Transition tr, NextState(id, t.state(), action, now, purge_after));
    Batch batch;
    batch.ExpectVersion(keys::Tenant(id), record.version);
    if (tr.to == v1::TENANT_STATE_DELETED) {
      // The company may register again at once; its name is free.
      for (const auto& key : record.value.unique_keys()) batch.Delete(key);
      if (!record.value.onboarding_token_sha256().empty()) {
        batch.Delete(keys::Onboarding(Hex(record.value.onboarding_token_sha256())));
      }
      *t.mutable_purge_after() = ToProto(now + grace);
    } else if (tr.from == v1::TENANT_STATE_DELETED) {
      // Undelete: take the name back unless it was registered again.
      for (const auto& key : record.value.unique_keys()) {
        ASSIGN_OR_RETURN(auto holder, store_->GetRaw(key));
        if (holder.has_value()) {
          return Precondition(
              "NAME_TAKEN", "tenant " + id +
                                " cannot be restored: its company name and contact were registered "
                                "again by tenant " +
                                *holder);
        }
        batch.ExpectAbsent(key).PutRaw(key, id);
      }
      t.clear_purge_after();
    }
    t.set_state(tr.to);
    t.set_state_reason(reason);
    *t.mutable_updated_at() = ToProto(now);
    batch.Put(keys::Tenant(id), record.value);
    AddEvent(batch, id, tr.from, tr.to, tr.action, p, reason, now);
    out = TenantView(record.value, now);
    return batch;
  }));
  log::Info("tenant state changed", {{"tenant", id}, {"state", StateName(out.state())}});
  return out;
}

grpc::Status TenantServiceImpl::ReviewTenant(Ctx* ctx, const v1::ReviewTenantRequest* req,
                                             v1::Tenant* resp) {
  return Serve(*auth_, ctx, "ReviewTenant", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string id,
                     AuthorizeTenant(p, req->tenant_id(), {.platform_reviewer = true}));
    if (req->decision() != v1::REVIEW_DECISION_APPROVE &&
        req->decision() != v1::REVIEW_DECISION_REJECT) {
      return InvalidField("decision", "MISSING", "must be APPROVE or REJECT");
    }
    std::string reason;
    ASSIGN_OR_RETURN(reason, ValidateOptionalText(req->reason(), "reason", 2000));
    if (req->decision() == v1::REVIEW_DECISION_REJECT && reason.empty()) {
      return InvalidField("reason", "EMPTY",
                          "a rejection needs a reason (it is shown to the company)");
    }
    Action action =
        req->decision() == v1::REVIEW_DECISION_APPROVE ? Action::kApprove : Action::kReject;
    ASSIGN_OR_RETURN(*resp, Transition(p, id, action, reason));
    return absl::OkStatus();
  });
}

namespace {
absl::StatusOr<std::string> RequiredReason(const std::string& reason) {
  ASSIGN_OR_RETURN(std::string r, ValidateOptionalText(reason, "reason", 2000));
  if (r.empty()) return InvalidField("reason", "EMPTY", "must not be empty");
  return r;
}
}  // namespace

grpc::Status TenantServiceImpl::SuspendTenant(Ctx* ctx, const v1::SuspendTenantRequest* req,
                                              v1::Tenant* resp) {
  return Serve(*auth_, ctx, "SuspendTenant", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string id,
                     AuthorizeTenant(p, req->tenant_id(), {.platform_operator = true}));
    ASSIGN_OR_RETURN(std::string reason, RequiredReason(req->reason()));
    ASSIGN_OR_RETURN(*resp, Transition(p, id, Action::kSuspend, reason));
    return absl::OkStatus();
  });
}

grpc::Status TenantServiceImpl::ResumeTenant(Ctx* ctx, const v1::ResumeTenantRequest* req,
                                             v1::Tenant* resp) {
  return Serve(*auth_, ctx, "ResumeTenant", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string id,
                     AuthorizeTenant(p, req->tenant_id(), {.platform_operator = true}));
    ASSIGN_OR_RETURN(std::string reason, ValidateOptionalText(req->reason(), "reason", 2000));
    ASSIGN_OR_RETURN(*resp, Transition(p, id, Action::kResume, reason));
    return absl::OkStatus();
  });
}

grpc::Status TenantServiceImpl::DeleteTenant(Ctx* ctx, const v1::DeleteTenantRequest* req,
                                             v1::Tenant* resp) {
  return Serve(*auth_, ctx, "DeleteTenant", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string id,
                     AuthorizeTenant(p, req->tenant_id(), {.platform_operator = true}));
    ASSIGN_OR_RETURN(std::string reason, RequiredReason(req->reason()));
    absl::Duration grace = kDefaultGracePeriod;
    if (req->has_grace_period()) {
      grace = absl::Seconds(req->grace_period().seconds()) +
              absl::Nanoseconds(req->grace_period().nanos());
      if (grace < absl::ZeroDuration() || grace > kMaxGracePeriod) {
        return InvalidField("grace_period", "OUT_OF_RANGE", "must be between 0 and 365 days");
      }
    }
    ASSIGN_OR_RETURN(*resp, Transition(p, id, Action::kDelete, reason, grace));
    return absl::OkStatus();
  });
}

grpc::Status TenantServiceImpl::ListTenantEvents(Ctx* ctx, const v1::ListTenantEventsRequest* req,
                                                 v1::ListTenantEventsResponse* resp) {
  return Serve(*auth_, ctx, "ListTenantEvents", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string id, AuthorizeTenant(p, req->tenant_id(),
                                                     {.platform_operator = true,
                                                      .platform_reviewer = true,
                                                      .tenant_admin = true,
                                                      .auditor = true}));
    ASSIGN_OR_RETURN(auto record, ReadTenant(*store_, id));
    ASSIGN_OR_RETURN(auto page, store_->Scan(keys::EventPrefix(id), PageSize(req->page()),
                                             req->page().page_token()));
    for (const auto& e : page.entries) {
      if (!resp->add_events()->ParseFromString(e.value()))
        return absl::DataLossError("stored event does not parse");
    }
    resp->mutable_page_info()->set_next_page_token(page.next_token);
    resp->mutable_page_info()->set_total_size(-1);
    return absl::OkStatus();
  });
}

absl::Status TenantServiceImpl::PurgeExpired(absl::Time now) {
  ASSIGN_OR_RETURN(auto registry,
                   store_->ScanAll(keys::TenantRegistryPrefix(), /*keys_only=*/true));
  for (const auto& e : registry) {
    kv::KeyReader r(e.key());
    r.ConsumePrefix(keys::TenantRegistryPrefix());
    ASSIGN_OR_RETURN(std::string id, r.Str());
    ASSIGN_OR_RETURN(auto record, store_->Read<storage::TenantRecord>(keys::Tenant(id)));
    // Uploads abandoned by a crash: their chunks are invisible but take space.
    ASSIGN_OR_RETURN(auto pending, store_->ScanAll(keys::PendingUploadPrefix(id)));
    for (const auto& pe : pending) {
      storage::PendingUpload up;
      if (!up.ParseFromString(pe.value()) || FromProto(up.started_at()) > now - absl::Hours(1))
        continue;
      Batch batch;
      batch.ExpectVersion(pe.key(), pe.version())
          .DeletePrefix(keys::DocumentChunkPrefix(id, up.document_id()))
          .Delete(pe.key());
      RETURN_IF_ERROR(store_->Commit(std::move(batch)).status());
      log::Info("abandoned upload swept", {{"tenant", id}, {"document", up.document_id()}});
    }
    if (!record.found() || record.value.tenant().state() != v1::TENANT_STATE_DELETED) continue;
    auto tr = NextState(id, v1::TENANT_STATE_DELETED, Action::kPurge, now,
                        FromProto(record.value.tenant().purge_after()));
    if (!tr.ok()) continue;  // grace period not over
    Batch batch;
    batch.ExpectVersion(keys::Tenant(id), record.version);
    ASSIGN_OR_RETURN(auto domains, store_->ScanAll(keys::DomainPrefix(id), /*keys_only=*/true));
    for (const auto& d : domains) {
      kv::KeyReader dr(d.key());
      dr.ConsumePrefix(keys::DomainPrefix(id));
      ASSIGN_OR_RETURN(std::string name, dr.Str());
      batch.Delete(keys::DomainIndex(name));
    }
    ASSIGN_OR_RETURN(auto docs, store_->ScanAll(keys::DocumentPrefix(id), /*keys_only=*/true));
    for (const auto& d : docs) {
      kv::KeyReader dr(d.key());
      dr.ConsumePrefix(keys::DocumentPrefix(id));
      ASSIGN_OR_RETURN(std::string doc, dr.Str());
      batch.Delete(keys::DocumentIndex(doc));
    }
    batch.DeletePrefix(keys::TenantRange(id)).Delete(keys::TenantRegistry(id));
    ASSIGN_OR_RETURN(bool done, store_->Commit(std::move(batch)));
    if (done) log::Info("tenant purged", {{"tenant", id}});
  }
  return absl::OkStatus();
}

}  // namespace mailgrid::tenant
