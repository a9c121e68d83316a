// DirectoryService: the tenant's mail policies (audit holds, monitoring
// copies; policy.proto) and users' inbox rules (Sieve). tenantd keeps and
// checks them; relayd enforces them and caches them by `version`.
//
// Each policy is one record (T/auditpolicy, T/monitorpolicy), replaced
// whole by Set*, version bumped by one, `expected_version` compared in the
// same conditional write (ABORTED when it differs). An absent record reads
// as an empty policy of version 0. Every change goes to the admin audit log
// ("policy.audit.set", "policy.monitor.set", "user.sieve.set").
//
// Sieve: the script is stored under T/sieve/<user> and its version also in
// the user record, so Resolve can tell relayd (Recipient.sieve_version)
// without another read. Validation: size (64 KiB) and UTF-8 always; the
// grammar and extensions with libs/sieve's Compile when the build has it
// (MAILGRID_HAVE_SIEVE, set by CMakeLists.txt when the target exists).
#include <unistr.h>

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "libs/base/status.h"
#include "libs/base/strings.h"
#include "services/tenant/directory_service.h"
#include "services/tenant/errors.h"
#include "services/tenant/tenant_service.h"
#include "services/tenant/validation.h"

#ifdef MAILGRID_HAVE_SIEVE
#include "libs/sieve/sieve.h"
#endif

namespace mailgrid::tenant {

using storage::AddressRecord;

namespace {

constexpr int kMaxRules = 100;
constexpr int kMaxKeywords = 100;
constexpr int kMaxListItems = 1000;  // addresses, departments, users per rule
constexpr size_t kMaxSieveBytes = 64 << 10;

std::string F(int i, std::string_view field) {
  return absl::StrCat("rules[", i, "].", ToAbsl(field));
}
std::string F(int i, std::string_view field, int j) {
  return absl::StrCat("rules[", i, "].", ToAbsl(field), "[", j, "]");
}

absl::Status VersionMismatch(std::string_view what, int64_t expected, int64_t stored) {
  return absl::AbortedError(absl::StrCat("the ", ToAbsl(what), " is at version ", stored,
                                         ", not the expected ", expected,
                                         ": read it again and reapply the change"));
}

// Assigns missing rule ids; refuses duplicates.
template <typename Rules>
absl::Status FillRuleIds(Rules* rules, std::string_view prefix) {
  std::set<std::string> seen;
  for (int i = 0; i < rules->size(); ++i) {
    auto* r = rules->Mutable(i);
    if (r->rule_id().empty()) r->set_rule_id(NewId(prefix));
    if (r->rule_id().size() > 64)
      return InvalidField(F(i, "rule_id"), "TOO_LONG", "at most 64 characters");
    if (!seen.insert(r->rule_id()).second)
      return InvalidField(F(i, "rule_id"), "DUPLICATE",
                          absl::StrCat("rule id ", r->rule_id(), " is used twice"));
  }
  return absl::OkStatus();
}

}  // namespace

// ---- shared checks -----------------------------------------------------------

// The user `id` of tenant `tid`, or INVALID_ARGUMENT `field` NOT_FOUND.
static absl::StatusOr<storage::UserRecord> UserOfTenant(TenantStore& s, const std::string& tid,
                                                        const std::string& id,
                                                        const std::string& field) {
  if (id.empty()) return InvalidField(field, "EMPTY", "must not be empty");
  ASSIGN_OR_RETURN(auto rec, s.Read<storage::UserRecord>(dkeys::User(tid, id)));
  if (!rec.found() || rec.value.user().state() == v1::USER_STATE_DELETED)
    return InvalidField(field, "NOT_FOUND", absl::StrCat("no user ", id, " in this tenant"));
  return rec.value;
}

static absl::Status DeptOfTenant(TenantStore& s, const std::string& tid, const std::string& id,
                                 const std::string& field) {
  if (id.empty()) return InvalidField(field, "EMPTY", "must not be empty");
  ASSIGN_OR_RETURN(auto d, s.Read<v1::Department>(dkeys::Dept(tid, id)));
  if (!d.found())
    return InvalidField(field, "NOT_FOUND", absl::StrCat("no department ", id, " in this tenant"));
  return absl::OkStatus();
}

// An address of this tenant, as its address record (aliases not followed).
static absl::StatusOr<AddressRecord> AddressOfTenant(TenantStore& s, const std::string& tid,
                                                     const std::string& input,
                                                     const std::string& field) {
  ASSIGN_OR_RETURN(ParsedAddress a, ParseAddress(input, field));
  ASSIGN_OR_RETURN(auto rec, s.Read<AddressRecord>(dkeys::Address(a.key)));
  if (!rec.found() || rec.value.tenant_id() != tid)
    return InvalidField(field, "NOT_IN_TENANT",
                        absl::StrCat(a.address, " is not an address of this tenant"));
  return rec.value;
}

absl::Status DirectoryServiceImpl::RequireFeature(const TenantCtx& t, v1::PlanFeature feature,
                                                  std::string_view what) {
  if (!t.has_plan || PlanHas(t.plan, feature)) return absl::OkStatus();
  return Precondition("PLAN_FEATURE_MISSING",
                      absl::StrCat("plan \"", t.plan.name(), "\" does not include ", ToAbsl(what)),
                      v1::PlanFeature_Name(feature));
}

// ---- audit policy --------------------------------------------------------------

absl::Status DirectoryServiceImpl::CheckAuditPolicy(const std::string& tid,
                                                    v1::AuditPolicy& policy) {
  if (policy.rules_size() > kMaxRules)
    return InvalidField("rules", "TOO_MANY", absl::StrCat("at most ", kMaxRules, " rules"));
  RETURN_IF_ERROR(FillRuleIds(policy.mutable_rules(), "ar-"));
  for (int i = 0; i < policy.rules_size(); ++i) {
    v1::AuditRule& r = *policy.mutable_rules(i);
    ASSIGN_OR_RETURN(*r.mutable_name(), ValidateOptionalText(r.name(), F(i, "name"), 200));
    if (r.sender_addresses_size() > kMaxListItems)
      return InvalidField(F(i, "sender_addresses"), "TOO_MANY",
                          absl::StrCat("at most ", kMaxListItems));
    for (int j = 0; j < r.sender_addresses_size(); ++j) {
      // Canonical, aliases resolved: the sender's primary address.
      const std::string field = F(i, "sender_addresses", j);
      ASSIGN_OR_RETURN(AddressRecord a,
                       AddressOfTenant(*store_, tid, r.sender_addresses(j), field));
      std::string canonical = a.address();
      if (a.kind() == AddressRecord::KIND_ALIAS &&
          a.alias_target_kind() == v1::ALIAS_TARGET_KIND_USER) {
        ASSIGN_OR_RETURN(auto u, UserOfTenant(*store_, tid, a.target_id(), field));
        canonical = u.user().address();
      } else if (a.kind() == AddressRecord::KIND_ALIAS) {
        ASSIGN_OR_RETURN(
            auto sm, store_->Read<storage::SharedMailboxRecord>(dkeys::Shared(tid, a.target_id())));
        if (sm.found()) canonical = sm.value.mailbox().address();
      }
      r.set_sender_addresses(j, canonical);
    }
    if (r.sender_department_ids_size() > kMaxListItems)
      return InvalidField(F(i, "sender_department_ids"), "TOO_MANY",
                          absl::StrCat("at most ", kMaxListItems));
    for (int j = 0; j < r.sender_department_ids_size(); ++j)
      RETURN_IF_ERROR(
          DeptOfTenant(*store_, tid, r.sender_department_ids(j), F(i, "sender_department_ids", j)));
    if (r.keywords_size() > kMaxKeywords)
      return InvalidField(F(i, "keywords"), "TOO_MANY",
                          absl::StrCat("at most ", kMaxKeywords, " keywords per rule"));
    for (int j = 0; j < r.keywords_size(); ++j) {
      ASSIGN_OR_RETURN(std::string k, ValidateName(r.keywords(j), F(i, "keywords", j), 200));
      r.set_keywords(j, k);
    }
    if (r.larger_than_bytes() < 0)
      return InvalidField(F(i, "larger_than_bytes"), "NEGATIVE", "0 (no size condition) or more");
  }
  if (policy.has_hold_expiry()) {
    const auto& d = policy.hold_expiry();
    const int64_t s = d.seconds();
    if (s < 60 || s > 90 * 24 * 3600 || d.nanos() < 0)
      return InvalidField("hold_expiry", "OUT_OF_RANGE", "from one minute to 90 days");
  }
  if (policy.auditor_user_ids_size() > kMaxListItems)
    return InvalidField("auditor_user_ids", "TOO_MANY", absl::StrCat("at most ", kMaxListItems));
  for (int j = 0; j < policy.auditor_user_ids_size(); ++j) {
    const std::string field = absl::StrCat("auditor_user_ids[", j, "]");
    ASSIGN_OR_RETURN(auto u, UserOfTenant(*store_, tid, policy.auditor_user_ids(j), field));
    const auto& roles = u.user().roles();
    if (std::find(roles.begin(), roles.end(), common::v1::ROLE_AUDITOR) == roles.end())
      return InvalidField(field, "NOT_AN_AUDITOR",
                          absl::StrCat(u.user().address(), " does not hold the auditor role"));
  }
  return absl::OkStatus();
}

grpc::Status DirectoryServiceImpl::GetAuditPolicy(Ctx* ctx, const v1::GetAuditPolicyRequest* req,
                                                  v1::AuditPolicy* resp) {
  return Serve(*auth_, ctx, "GetAuditPolicy", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeTenant(p, req->tenant_id(),
                                     {.tenant_admin = true, .auditor = true, .service = true}));
    ASSIGN_OR_RETURN(auto rec, store_->Read<v1::AuditPolicy>(dkeys::AuditPolicy(tid)));
    *resp = rec.value;
    resp->set_tenant_id(tid);
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::SetAuditPolicy(Ctx* ctx, const v1::SetAuditPolicyRequest* req,
                                                  v1::AuditPolicy* resp) {
  return Serve(*auth_, ctx, "SetAuditPolicy", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeTenant(p, req->policy().tenant_id(), {.tenant_admin = true}));
    ASSIGN_OR_RETURN(TenantCtx t, ActiveTenant(tid));
    v1::AuditPolicy in = req->policy();
    if (in.enabled() || in.rules_size() > 0)
      RETURN_IF_ERROR(RequireFeature(t, v1::PLAN_FEATURE_MAIL_AUDIT, "mail audit"));
    RETURN_IF_ERROR(CheckAuditPolicy(tid, in));
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto old, store_->Read<v1::AuditPolicy>(dkeys::AuditPolicy(tid)));
      if (req->expected_version() != 0 && req->expected_version() != old.value.version())
        return VersionMismatch("audit policy", req->expected_version(), old.value.version());
      v1::AuditPolicy next = in;
      next.set_tenant_id(tid);
      next.set_version(old.value.version() + 1);
      *next.mutable_updated_at() = ToProto(absl::Now());
      *next.mutable_updated_by() = p.ToActor();
      Batch batch;
      batch.ExpectVersion(dkeys::AuditPolicy(tid), old.version).Put(dkeys::AuditPolicy(tid), next);
      int enabled = 0;
      for (const auto& r : next.rules()) enabled += r.enabled();
      AddAudit(batch, tid, p, "policy.audit.set", "policy", "audit",
               absl::StrCat("audit policy version ", next.version(), ": ",
                            next.enabled() ? "enabled" : "disabled", ", ", next.rules_size(),
                            " rule(s), ", enabled, " enabled"),
               "", absl::Now());
      *resp = next;
      return batch;
    });
  });
}

// ---- monitoring policy -----------------------------------------------------------

absl::Status DirectoryServiceImpl::CheckMonitoringPolicy(const std::string& tid,
                                                         v1::MonitoringPolicy& policy) {
  if (policy.rules_size() > kMaxRules)
    return InvalidField("rules", "TOO_MANY", absl::StrCat("at most ", kMaxRules, " rules"));
  RETURN_IF_ERROR(FillRuleIds(policy.mutable_rules(), "mr-"));
  for (int i = 0; i < policy.rules_size(); ++i) {
    v1::MonitoringRule& r = *policy.mutable_rules(i);
    ASSIGN_OR_RETURN(*r.mutable_name(), ValidateOptionalText(r.name(), F(i, "name"), 200));
    ASSIGN_OR_RETURN(*r.mutable_justification(),
                     ValidateOptionalText(r.justification(), F(i, "justification"), 2000));
    if (r.monitored_user_ids_size() + r.monitored_department_ids_size() == 0)
      return InvalidField(F(i, "monitored_user_ids"), "EMPTY",
                          "a rule monitors at least one user or department");
    if (r.monitored_user_ids_size() > kMaxListItems ||
        r.monitored_department_ids_size() > kMaxListItems)
      return InvalidField(F(i, "monitored_user_ids"), "TOO_MANY",
                          absl::StrCat("at most ", kMaxListItems, " users and departments"));
    for (int j = 0; j < r.monitored_user_ids_size(); ++j)
      RETURN_IF_ERROR(
          UserOfTenant(*store_, tid, r.monitored_user_ids(j), F(i, "monitored_user_ids", j))
              .status());
    for (int j = 0; j < r.monitored_department_ids_size(); ++j)
      RETURN_IF_ERROR(DeptOfTenant(*store_, tid, r.monitored_department_ids(j),
                                   F(i, "monitored_department_ids", j)));
    // The supervisor: a user's or shared mailbox's address of this tenant.
    const std::string sf = F(i, "supervisor_address");
    if (r.supervisor_address().empty()) return InvalidField(sf, "EMPTY", "must not be empty");
    ASSIGN_OR_RETURN(AddressRecord a, AddressOfTenant(*store_, tid, r.supervisor_address(), sf));
    if (a.kind() == AddressRecord::KIND_GROUP)
      return InvalidField(sf, "NOT_A_MAILBOX", "the supervisor must be a user or shared mailbox");
    r.set_supervisor_address(a.address());
    const bool to_user = a.kind() == AddressRecord::KIND_USER ||
                         (a.kind() == AddressRecord::KIND_ALIAS &&
                          a.alias_target_kind() == v1::ALIAS_TARGET_KIND_USER);
    if (!to_user) continue;
    // CYCLE: the supervisor's own mail would be copied to themselves.
    const std::string& sup = a.target_id();
    for (const auto& u : r.monitored_user_ids())
      if (u == sup) return InvalidField(sf, "CYCLE", "the supervisor is among the monitored users");
    if (r.monitored_department_ids_size() == 0) continue;
    ASSIGN_OR_RETURN(auto su, UserOfTenant(*store_, tid, sup, sf));
    std::set<std::string> monitored(r.monitored_department_ids().begin(),
                                    r.monitored_department_ids().end());
    for (const auto& d : su.user().department_ids()) {
      // The supervisor's department or any department above it.
      std::string at = d;
      for (int depth = 0; !at.empty() && depth < 1000; ++depth) {
        if (monitored.count(at))
          return InvalidField(sf, "CYCLE",
                              "the supervisor is in a monitored department (or below one)");
        ASSIGN_OR_RETURN(auto dept, store_->Read<v1::Department>(dkeys::Dept(tid, at)));
        at = dept.found() ? dept.value.parent_id() : "";
      }
    }
  }
  return absl::OkStatus();
}

grpc::Status DirectoryServiceImpl::GetMonitoringPolicy(Ctx* ctx,
                                                       const v1::GetMonitoringPolicyRequest* req,
                                                       v1::MonitoringPolicy* resp) {
  return Serve(*auth_, ctx, "GetMonitoringPolicy", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeTenant(p, req->tenant_id(),
                                     {.tenant_admin = true, .auditor = true, .service = true}));
    ASSIGN_OR_RETURN(auto rec, store_->Read<v1::MonitoringPolicy>(dkeys::MonitoringPolicy(tid)));
    *resp = rec.value;
    resp->set_tenant_id(tid);
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::SetMonitoringPolicy(Ctx* ctx,
                                                       const v1::SetMonitoringPolicyRequest* req,
                                                       v1::MonitoringPolicy* resp) {
  return Serve(*auth_, ctx, "SetMonitoringPolicy", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeTenant(p, req->policy().tenant_id(), {.tenant_admin = true}));
    ASSIGN_OR_RETURN(TenantCtx t, ActiveTenant(tid));
    v1::MonitoringPolicy in = req->policy();
    if (in.rules_size() > 0)
      RETURN_IF_ERROR(RequireFeature(t, v1::PLAN_FEATURE_MONITORING, "monitoring"));
    RETURN_IF_ERROR(CheckMonitoringPolicy(tid, in));
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto old, store_->Read<v1::MonitoringPolicy>(dkeys::MonitoringPolicy(tid)));
      if (req->expected_version() != 0 && req->expected_version() != old.value.version())
        return VersionMismatch("monitoring policy", req->expected_version(), old.value.version());
      v1::MonitoringPolicy next = in;
      next.set_tenant_id(tid);
      next.set_version(old.value.version() + 1);
      *next.mutable_updated_at() = ToProto(absl::Now());
      *next.mutable_updated_by() = p.ToActor();
      Batch batch;
      batch.ExpectVersion(dkeys::MonitoringPolicy(tid), old.version)
          .Put(dkeys::MonitoringPolicy(tid), next);
      int enabled = 0;
      std::string why;
      for (const auto& r : next.rules()) {
        enabled += r.enabled();
        if (r.enabled() && !r.justification().empty())
          absl::StrAppend(&why, why.empty() ? "" : "; ", r.name(), ": ", r.justification());
      }
      AddAudit(batch, tid, p, "policy.monitor.set", "policy", "monitoring",
               absl::StrCat("monitoring policy version ", next.version(), ": ", next.rules_size(),
                            " rule(s), ", enabled, " enabled"),
               why.substr(0, 2000), absl::Now());
      *resp = next;
      return batch;
    });
  });
}

// ---- Sieve -------------------------------------------------------------------------

absl::Status ValidateSieveScript(std::string_view script) {
  if (script.size() > kMaxSieveBytes)
    return InvalidField(
        "script", "TOO_LARGE",
        absl::StrCat("the script has ", script.size(), " bytes; at most ", kMaxSieveBytes));
  if (u8_check(reinterpret_cast<const uint8_t*>(script.data()), script.size()) != nullptr)
    return InvalidField("script", "NOT_UTF8", "the script is not UTF-8");
#ifdef MAILGRID_HAVE_SIEVE
  if (!script.empty()) {
    auto compiled = sieve::Compile(script);
    if (!compiled.ok()) {
      std::string reason(sieve::CompileErrorReason(compiled.status()));
      if (reason.empty()) return compiled.status();
      // The message is "line:column: what is wrong".
      return InvalidField("script", reason, ToStd(compiled.status().message()));
    }
  }
#endif
  return absl::OkStatus();
}

absl::StatusOr<std::string> DirectoryServiceImpl::AuthorizeSieve(const Principal& p,
                                                                 const std::string& user_id,
                                                                 bool write) {
  const bool self = !p.anonymous() && p.subject == user_id && !p.HasRole(auth::kRoleService);
  ASSIGN_OR_RETURN(
      std::string tid,
      AuthorizeObject(p, "user", user_id,
                      {.any_authenticated = self, .tenant_admin = true, .service = !write}));
  if (self && p.tenant_id != tid) return NotFound("user", user_id);
  return tid;
}

grpc::Status DirectoryServiceImpl::GetSieveScript(Ctx* ctx, const v1::GetSieveScriptRequest* req,
                                                  v1::SieveScript* resp) {
  return Serve(*auth_, ctx, "GetSieveScript", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid, AuthorizeSieve(p, req->user_id(), false));
    ASSIGN_OR_RETURN(auto user, ReadUser(*store_, tid, req->user_id()));
    if (user.value.user().state() == v1::USER_STATE_DELETED)
      return NotFound("user", req->user_id());
    ASSIGN_OR_RETURN(auto rec, store_->Read<v1::SieveScript>(dkeys::Sieve(tid, req->user_id())));
    *resp = rec.value;  // none yet: empty script, version 0
    resp->set_user_id(req->user_id());
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::SetSieveScript(Ctx* ctx, const v1::SetSieveScriptRequest* req,
                                                  v1::SieveScript* resp) {
  return Serve(*auth_, ctx, "SetSieveScript", [&](const Principal& p) -> absl::Status {
    const std::string& uid = req->user_id();
    ASSIGN_OR_RETURN(std::string tid, AuthorizeSieve(p, uid, true));
    RETURN_IF_ERROR(ValidateSieveScript(req->script()));
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto user, ReadUser(*store_, tid, uid));
      if (user.value.user().state() == v1::USER_STATE_DELETED) return NotFound("user", uid);
      ASSIGN_OR_RETURN(auto old, store_->Read<v1::SieveScript>(dkeys::Sieve(tid, uid)));
      if (req->expected_version() != 0 && req->expected_version() != old.value.version())
        return VersionMismatch("Sieve script", req->expected_version(), old.value.version());
      v1::SieveScript next;
      next.set_user_id(uid);
      next.set_script(req->script());
      next.set_version(old.value.version() + 1);
      *next.mutable_updated_at() = ToProto(absl::Now());
      // Resolve tells relayd the version (0: no rules to run).
      user.value.set_sieve_version(next.script().empty() ? 0 : next.version());
      Batch batch;
      batch.ExpectVersion(dkeys::Sieve(tid, uid), old.version)
          .Put(dkeys::Sieve(tid, uid), next)
          .ExpectVersion(dkeys::User(tid, uid), user.version)
          .Put(dkeys::User(tid, uid), user.value);
      for (const auto& d : user.value.user().department_ids())
        batch.Put(dkeys::DeptMember(tid, d, uid), RecipientOf(user.value));
      Changed(batch, tid, p, "user.sieve.set", "user", uid,
              absl::StrCat("inbox rules of ", user.value.user().address(), " set (version ",
                           next.version(), ", ", next.script().size(), " bytes)"));
      *resp = next;
      return batch;
    });
  });
}

}  // namespace mailgrid::tenant
