// The plan catalog (platform operators), a tenant's choice of plan, and its
// usage. Usage of mailboxes, storage and seats is written by the directory
// (issue 5) into the tenant's usage record; domains are counted here.
#include "services/tenant/plans.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/kv/keys.h"
#include "services/tenant/errors.h"
#include "services/tenant/tenant_service.h"
#include "services/tenant/validation.h"

namespace mailgrid::tenant {

namespace {

absl::Status CheckLimit(common::v1::Limit* limit, bool set, const std::string& field) {
  if (!set) {
    limit->set_unlimited(true);
    limit->set_value(0);
    return absl::OkStatus();
  }
  if (limit->unlimited()) {
    limit->set_value(0);
    return absl::OkStatus();
  }
  if (limit->value() < 0) return InvalidField(field, "OUT_OF_RANGE", "must not be negative");
  return absl::OkStatus();
}

}  // namespace

std::string LimitText(const common::v1::Limit& limit) {
  return limit.unlimited() ? "unlimited" : absl::StrCat(limit.value());
}

absl::StatusOr<v1::Plan> ValidatePlan(const v1::Plan& in) {
  v1::Plan p = in;
  ASSIGN_OR_RETURN(*p.mutable_name(), ValidateName(in.name(), "plan.name", 100));
  ASSIGN_OR_RETURN(*p.mutable_description(),
                   ValidateOptionalText(in.description(), "plan.description", 1000));
  RETURN_IF_ERROR(CheckLimit(p.mutable_mailboxes(), in.has_mailboxes(), "plan.mailboxes"));
  RETURN_IF_ERROR(CheckLimit(p.mutable_storage_per_mailbox_bytes(),
                             in.has_storage_per_mailbox_bytes(), "plan.storage_per_mailbox_bytes"));
  RETURN_IF_ERROR(CheckLimit(p.mutable_pooled_storage_bytes(), in.has_pooled_storage_bytes(),
                             "plan.pooled_storage_bytes"));
  RETURN_IF_ERROR(CheckLimit(p.mutable_shared_mailbox_seats(), in.has_shared_mailbox_seats(),
                             "plan.shared_mailbox_seats"));
  RETURN_IF_ERROR(CheckLimit(p.mutable_domains(), in.has_domains(), "plan.domains"));
  RETURN_IF_ERROR(CheckLimit(p.mutable_messages_per_user_per_hour(),
                             in.has_messages_per_user_per_hour(),
                             "plan.messages_per_user_per_hour"));
  if (p.storage_model() == v1::STORAGE_MODEL_UNSPECIFIED)
    p.set_storage_model(v1::STORAGE_MODEL_PER_MAILBOX);
  std::set<int> seen;
  for (int i = 0; i < p.features_size(); ++i) {
    int f = p.features(i);
    if (f == v1::PLAN_FEATURE_UNSPECIFIED || !v1::PlanFeature_IsValid(f)) {
      return InvalidField(absl::StrCat("plan.features[", i, "]"), "UNKNOWN", "not a known feature");
    }
    if (!seen.insert(f).second)
      return InvalidField(absl::StrCat("plan.features[", i, "]"), "DUPLICATE", "listed twice");
  }
  return p;
}

bool Within(const common::v1::Limit& limit, int64_t usage) {
  return limit.unlimited() || usage <= limit.value();
}

std::vector<common::v1::LimitDetail> LimitsBelowUsage(const v1::Plan& plan,
                                                      const v1::TenantUsage& usage) {
  std::vector<common::v1::LimitDetail> out;
  auto check = [&](const char* name, const common::v1::Limit& limit, int64_t used) {
    if (Within(limit, used)) return;
    common::v1::LimitDetail d;
    d.set_limit(name);
    *d.mutable_value() = limit;
    d.set_usage(used);
    d.set_requested(limit.value());
    out.push_back(d);
  };
  check("plan.mailboxes", plan.mailboxes(), usage.mailboxes());
  check("plan.domains", plan.domains(), usage.domains());
  check("plan.shared_mailbox_seats", plan.shared_mailbox_seats(), usage.shared_mailbox_seats());
  if (plan.storage_model() == v1::STORAGE_MODEL_POOLED) {
    check("plan.storage_bytes", plan.pooled_storage_bytes(), usage.storage_bytes());
  }
  return out;
}

std::string DescribeExceeded(const v1::Plan& plan,
                             const std::vector<common::v1::LimitDetail>& exceeded) {
  std::vector<std::string> parts;
  for (const auto& d : exceeded) {
    std::string what = d.limit().substr(d.limit().find('.') + 1);
    parts.push_back(
        absl::StrCat(what, ": plan allows ", LimitText(d.value()), ", in use ", d.usage()));
  }
  return absl::StrCat("plan \"", plan.name(), "\" is below current usage (",
                      absl::StrJoin(parts, "; "), ")");
}

// ---- RPCs -------------------------------------------------------------------

grpc::Status TenantServiceImpl::ListPlans(Ctx* ctx, const v1::ListPlansRequest* req,
                                          v1::ListPlansResponse* resp) {
  return Serve(*auth_, ctx, "ListPlans", [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(CheckAccess(p, "", {.any_authenticated = true}, Unauthenticated()));
    ASSIGN_OR_RETURN(auto page, store_->Scan(keys::PlanPrefix(), PageSize(req->page()),
                                             req->page().page_token()));
    for (const auto& e : page.entries) {
      v1::Plan plan;
      if (!plan.ParseFromString(e.value()))
        return absl::DataLossError("stored plan does not parse");
      if (plan.retired() && !req->include_retired()) continue;
      *resp->add_plans() = plan;
    }
    resp->mutable_page_info()->set_next_page_token(page.next_token);
    resp->mutable_page_info()->set_total_size(-1);
    return absl::OkStatus();
  });
}

grpc::Status TenantServiceImpl::CreatePlan(Ctx* ctx, const v1::CreatePlanRequest* req,
                                           v1::Plan* resp) {
  return Serve(*auth_, ctx, "CreatePlan", [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(CheckAccess(p, "", {.platform_operator = true},
                                PermissionDenied("plans are managed by operators")));
    ASSIGN_OR_RETURN(v1::Plan plan, ValidatePlan(req->plan()));
    plan.set_plan_id(NewId("plan-"));
    plan.set_version(1);
    std::string name_key = keys::PlanName(NameKey(plan.name()));
    RETURN_IF_ERROR(store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto holder, store_->GetRaw(name_key));
      if (holder.has_value()) {
        return AlreadyExists("plan.name", "DUPLICATE_NAME",
                             absl::StrCat("a plan named \"", plan.name(), "\" exists"));
      }
      Batch batch;
      batch.ExpectAbsent(name_key)
          .PutRaw(name_key, plan.plan_id())
          .Put(keys::Plan(plan.plan_id()), plan);
      return batch;
    }));
    *resp = plan;
    log::Info("plan created", {{"plan", plan.plan_id()}, {"name", plan.name()}});
    return absl::OkStatus();
  });
}

grpc::Status TenantServiceImpl::UpdatePlan(Ctx* ctx, const v1::UpdatePlanRequest* req,
                                           v1::Plan* resp) {
  return Serve(*auth_, ctx, "UpdatePlan", [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(CheckAccess(p, "", {.platform_operator = true},
                                PermissionDenied("plans are managed by operators")));
    ASSIGN_OR_RETURN(v1::Plan plan, ValidatePlan(req->plan()));
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto old, store_->Read<v1::Plan>(keys::Plan(plan.plan_id())));
      if (plan.plan_id().empty() || !old.found()) return NotFound("plan", plan.plan_id());
      if (req->expected_version() != 0 && req->expected_version() != old.value.version()) {
        return absl::AbortedError(absl::StrCat("plan ", plan.plan_id(), " is at version ",
                                               old.value.version(), ", not ",
                                               req->expected_version(), ": re-read and retry"));
      }
      // Lowering a limit below what a tenant on the plan uses is refused.
      ASSIGN_OR_RETURN(auto registry,
                       store_->ScanAll(keys::TenantRegistryPrefix(), /*keys_only=*/true));
      for (const auto& e : registry) {
        kv::KeyReader r(e.key());
        r.ConsumePrefix(keys::TenantRegistryPrefix());
        ASSIGN_OR_RETURN(std::string id, r.Str());
        ASSIGN_OR_RETURN(auto t, store_->Read<storage::TenantRecord>(keys::Tenant(id)));
        if (!t.found() || t.value.tenant().plan_id() != plan.plan_id()) continue;
        ASSIGN_OR_RETURN(auto usage, store_->Read<v1::TenantUsage>(keys::Usage(id)));
        auto exceeded = LimitsBelowUsage(plan, usage.value);
        if (!exceeded.empty()) {
          return WithLimits(absl::StatusCode::kFailedPrecondition, "LIMIT_BELOW_USAGE",
                            absl::StrCat(DescribeExceeded(plan, exceeded), " for tenant ", id,
                                         "; create a new plan and move tenants instead"),
                            exceeded);
        }
      }
      plan.set_version(old.value.version() + 1);
      Batch batch;
      batch.ExpectVersion(keys::Plan(plan.plan_id()), old.version)
          .Put(keys::Plan(plan.plan_id()), plan);
      std::string old_name = keys::PlanName(NameKey(old.value.name()));
      std::string new_name = keys::PlanName(NameKey(plan.name()));
      if (old_name != new_name) {
        ASSIGN_OR_RETURN(auto holder, store_->GetRaw(new_name));
        if (holder.has_value()) {
          return AlreadyExists("plan.name", "DUPLICATE_NAME",
                               absl::StrCat("a plan named \"", plan.name(), "\" exists"));
        }
        batch.Delete(old_name).ExpectAbsent(new_name).PutRaw(new_name, plan.plan_id());
      }
      *resp = plan;
      return batch;
    });
  });
}

grpc::Status TenantServiceImpl::SetTenantPlan(Ctx* ctx, const v1::SetTenantPlanRequest* req,
                                              v1::Tenant* resp) {
  return Serve(*auth_, ctx, "SetTenantPlan", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(
        std::string id,
        AuthorizeTenant(p, req->tenant_id(), {.platform_operator = true, .tenant_admin = true}));
    if (req->plan_id().empty()) return InvalidField("plan_id", "EMPTY", "must not be empty");
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto record, ReadTenant(*store_, id));
      v1::Tenant& t = *record.value.mutable_tenant();
      if (t.state() == v1::TENANT_STATE_DELETED)
        return Precondition("WRONG_STATE", "tenant " + id + " is DELETED");
      ASSIGN_OR_RETURN(auto plan, store_->Read<v1::Plan>(keys::Plan(req->plan_id())));
      if (!plan.found()) return NotFound("plan", req->plan_id());
      if (plan.value.retired() && t.plan_id() != req->plan_id()) {
        return Precondition("PLAN_RETIRED", "plan \"" + plan.value.name() + "\" is retired",
                            "plan_id");
      }
      ASSIGN_OR_RETURN(auto usage, store_->Read<v1::TenantUsage>(keys::Usage(id)));
      ASSIGN_OR_RETURN(auto domains, store_->ScanAll(keys::DomainPrefix(id), /*keys_only=*/true));
      usage.value.set_domains(static_cast<int64_t>(domains.size()));
      auto exceeded = LimitsBelowUsage(plan.value, usage.value);
      if (!exceeded.empty()) {
        return WithLimits(absl::StatusCode::kFailedPrecondition, "LIMIT_BELOW_USAGE",
                          DescribeExceeded(plan.value, exceeded), exceeded);
      }
      Batch batch;
      absl::Time now = absl::Now();
      std::string why = absl::StrCat(t.plan_id().empty() ? "(none)" : t.plan_id(), " -> ",
                                     plan.value.plan_id(), " (", plan.value.name(), ")");
      t.set_plan_id(plan.value.plan_id());
      *t.mutable_updated_at() = ToProto(now);
      usage.value.set_tenant_id(id);
      usage.value.set_plan_id(plan.value.plan_id());
      batch.ExpectVersion(keys::Tenant(id), record.version)
          .ExpectVersion(keys::Plan(plan.value.plan_id()), plan.version)
          .ExpectVersion(keys::Usage(id), usage.version)
          .Put(keys::Tenant(id), record.value)
          .Put(keys::Usage(id), usage.value);
      AddEvent(batch, id, v1::TENANT_STATE_UNSPECIFIED, v1::TENANT_STATE_UNSPECIFIED,
               "plan_changed", p, why, now);
      *resp = TenantView(record.value, now);
      return batch;
    });
  });
}

grpc::Status TenantServiceImpl::GetTenantUsage(Ctx* ctx, const v1::GetTenantUsageRequest* req,
                                               v1::TenantUsage* resp) {
  return Serve(*auth_, ctx, "GetTenantUsage", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(
        std::string id,
        AuthorizeTenant(p, req->tenant_id(), {.platform_operator = true, .tenant_admin = true}));
    ASSIGN_OR_RETURN(auto record, ReadTenant(*store_, id));
    ASSIGN_OR_RETURN(auto usage, store_->Read<v1::TenantUsage>(keys::Usage(id)));
    ASSIGN_OR_RETURN(auto domains, store_->ScanAll(keys::DomainPrefix(id), /*keys_only=*/true));
    *resp = usage.value;
    resp->set_tenant_id(id);
    resp->set_plan_id(record.value.tenant().plan_id());
    resp->set_domains(static_cast<int64_t>(domains.size()));
    *resp->mutable_computed_at() = ToProto(absl::Now());
    return absl::OkStatus();
  });
}

}  // namespace mailgrid::tenant
