// DirectoryService: users and their mailboxes (create, read, list, state
// changes, rename), GetPrincipal for identityd, and the helpers every
// directory file shares (tenant and domain checks, placement, audit).
#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/kv/keys.h"
#include "services/tenant/directory_service.h"
#include "services/tenant/directory_users.h"
#include "services/tenant/errors.h"
#include "services/tenant/plans.h"
#include "services/tenant/tenant_service.h"
#include "services/tenant/validation.h"

namespace mailgrid::tenant {

using storage::AddressRecord;

bool PlanHas(const v1::Plan& plan, v1::PlanFeature feature) {
  return std::find(plan.features().begin(), plan.features().end(), feature) !=
         plan.features().end();
}

v1::Recipient RecipientOf(const v1::User& u) {
  v1::Recipient r;
  if (u.state() != v1::USER_STATE_DELETED) r.set_mailbox_id(u.mailbox_id());
  r.set_address(u.address());
  r.set_shard(u.shard());
  r.set_kind(common::v1::MAILBOX_KIND_USER);
  r.set_tenant_id(u.tenant_id());
  r.set_user_id(u.user_id());
  r.set_disabled(u.state() == v1::USER_STATE_DISABLED);
  return r;
}

v1::Recipient RecipientOf(const storage::UserRecord& rec) {
  v1::Recipient r = RecipientOf(rec.user());
  r.set_sieve_version(rec.sieve_version());
  return r;
}

std::string KeyOfAddress(const std::string& address) {
  size_t at = address.rfind('@');
  if (at == std::string::npos) return address;
  return AddressKey(address.substr(0, at), address.substr(at + 1));
}

DirectoryServiceImpl::DirectoryServiceImpl(TenantStore* store, const Authenticator* auth,
                                           const Options* options, DirectoryPeers* peers,
                                           TenantStore* resolve_reads,
                                           ReplicaFreshness* freshness)
    : store_(store),
      rs_(resolve_reads != nullptr ? resolve_reads : store),
      auth_(auth),
      options_(options),
      peers_(peers),
      cache_(options->resolve_max_staleness,
             static_cast<size_t>(std::max<int64_t>(0, options->resolve_cache_entries))),
      own_freshness_(freshness == nullptr ? std::make_unique<ReplicaFreshness>(nullptr, nullptr)
                                          : nullptr),
      freshness_(freshness != nullptr ? freshness : own_freshness_.get()) {}

DirectoryServiceImpl::~DirectoryServiceImpl() { StopResolveIndex(); }

// ---- shared helpers ---------------------------------------------------------

absl::StatusOr<DirectoryServiceImpl::TenantCtx> DirectoryServiceImpl::ActiveTenant(
    const std::string& tenant_id) {
  TenantCtx c;
  c.tenant_id = tenant_id;
  ASSIGN_OR_RETURN(c.tenant, ReadTenant(*store_, tenant_id));
  const auto& t = c.tenant.value.tenant();
  if (t.state() != v1::TENANT_STATE_ACTIVE) {
    return Precondition("WRONG_STATE",
                        absl::StrCat("tenant ", tenant_id, " is ", StateName(t.state()),
                                     ": the directory can be changed only in an ACTIVE tenant"));
  }
  if (!t.plan_id().empty()) {
    ASSIGN_OR_RETURN(auto plan, store_->Read<v1::Plan>(keys::Plan(t.plan_id())));
    if (plan.found()) {
      c.plan = plan.value;
      c.has_plan = true;
    }
  }
  return c;
}

absl::Status DirectoryServiceImpl::CheckAddressDomain(const std::string& tenant_id,
                                                      const ParsedAddress& a,
                                                      const std::string& field) {
  ASSIGN_OR_RETURN(auto owner, store_->GetRaw(keys::DomainIndex(a.domain)));
  // The same words for another tenant's domain and for nobody's.
  if (!owner.has_value() || *owner != tenant_id) {
    return InvalidField(field, "DOMAIN_NOT_IN_TENANT",
                        absl::StrCat("domain ", a.domain, " is not a domain of this tenant"));
  }
  ASSIGN_OR_RETURN(auto d, store_->Read<storage::DomainRecord>(keys::Domain(tenant_id, a.domain)));
  if (!d.found())
    return InvalidField(field, "DOMAIN_NOT_IN_TENANT",
                        absl::StrCat("domain ", a.domain, " is not a domain of this tenant"));
  if (d.value.domain().state() != v1::DOMAIN_STATE_VERIFIED) {
    return Precondition("DOMAIN_NOT_VERIFIED",
                        absl::StrCat("domain ", a.domain,
                                     " is not VERIFIED yet: publish its DNS records and run a "
                                     "check (mailctl domain check)"),
                        field);
  }
  ASSIGN_OR_RETURN(auto settings,
                   store_->Read<v1::DomainMailSettings>(dkeys::MailSettings(tenant_id, a.domain)));
  if (!settings.value.alias_of().empty()) {
    return InvalidField(field, "DOMAIN_IS_ALIAS",
                        absl::StrCat("domain ", a.domain, " is an alias of ",
                                     settings.value.alias_of(), ": create the address there"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ParsedAddress> DirectoryServiceImpl::NewAddress(const std::string& tenant_id,
                                                               std::string_view input,
                                                               const std::string& field) {
  ASSIGN_OR_RETURN(ParsedAddress a, ParseAddress(input, field));
  RETURN_IF_ERROR(CheckAddressDomain(tenant_id, a, field));
  ASSIGN_OR_RETURN(auto taken, store_->GetRaw(dkeys::Address(a.key)));
  if (taken.has_value()) return AddressTaken(field, a.address);
  return a;
}

absl::Status AddressTaken(const std::string& field, const std::string& address) {
  return AlreadyExists(field, "ALREADY_EXISTS",
                       absl::StrCat("address ", address,
                                    " is already in use (addresses are compared ignoring case "
                                    "and Unicode normalisation)"));
}

absl::StatusOr<std::string> DirectoryServiceImpl::AuthorizeObject(const Principal& p,
                                                                  std::string_view kind,
                                                                  const std::string& id,
                                                                  const Who& who) {
  absl::Status not_found = NotFound(kind, id);
  if (id.empty())
    return InvalidField(absl::StrCat(std::string(kind), "_id"), "EMPTY", "must not be empty");
  auto t = TenantOfObject(*store_, kind, id);
  if (absl::IsNotFound(t.status())) {
    RETURN_IF_ERROR(CheckAccess(p, "", who, not_found));
    return not_found;
  }
  if (!t.ok()) return t.status();
  RETURN_IF_ERROR(CheckAccess(p, *t, who, not_found));
  return *t;
}

absl::StatusOr<std::vector<uint32_t>> DirectoryServiceImpl::PickShards(
    size_t n, std::vector<std::pair<uint64_t, int64_t>>* loads) {
  const uint32_t shards = std::max<uint32_t>(1, peers_ ? peers_->shards() : 1);
  loads->assign(shards, {0, 0});
  for (uint32_t i = 0; i < shards; ++i) {
    uint64_t version = 0;
    ASSIGN_OR_RETURN(auto raw, store_->GetRaw(dkeys::ShardLoad(i), &version));
    int64_t count = 0;
    if (raw.has_value() && !absl::SimpleAtoi(*raw, &count)) count = 0;
    (*loads)[i] = {version, count};
  }
  std::vector<int64_t> counts;
  for (const auto& l : *loads) counts.push_back(l.second);
  std::vector<uint32_t> out;
  for (size_t k = 0; k < n; ++k) {
    uint32_t best = 0;
    for (uint32_t i = 1; i < shards; ++i)
      if (counts[i] < counts[best]) best = i;
    ++counts[best];
    out.push_back(best);
  }
  return out;
}

absl::Status DirectoryServiceImpl::CountPlacements(const std::vector<uint32_t>& shards,
                                                   Batch* batch, int sign) {
  std::map<uint32_t, int64_t> add;
  for (uint32_t s : shards) add[s] += sign;
  for (const auto& [shard, delta] : add) {
    uint64_t version = 0;
    ASSIGN_OR_RETURN(auto raw, store_->GetRaw(dkeys::ShardLoad(shard), &version));
    int64_t count = 0;
    if (raw.has_value() && !absl::SimpleAtoi(*raw, &count)) count = 0;
    batch->ExpectVersion(dkeys::ShardLoad(shard), version)
        .PutRaw(dkeys::ShardLoad(shard), absl::StrCat(std::max<int64_t>(0, count + delta)));
  }
  return absl::OkStatus();
}

absl::StatusOr<common::v1::QuotaLimit> DirectoryServiceImpl::QuotaFor(
    const TenantCtx& t, const common::v1::QuotaLimit& requested, bool has_requested,
    const std::string& field) {
  common::v1::QuotaLimit q;
  q.mutable_messages()->set_unlimited(true);
  common::v1::Limit max;
  max.set_unlimited(true);
  if (t.has_plan) {
    max = t.plan.storage_model() == v1::STORAGE_MODEL_POOLED ? t.plan.pooled_storage_bytes()
                                                             : t.plan.storage_per_mailbox_bytes();
    if (!t.plan.has_storage_per_mailbox_bytes() && !t.plan.has_pooled_storage_bytes())
      max.set_unlimited(true);
  }
  if (!has_requested) {
    *q.mutable_bytes() = max;
    return q;
  }
  q = requested;
  if (!q.has_messages()) q.mutable_messages()->set_unlimited(true);
  const auto& b = q.bytes();
  if (!b.unlimited() && b.value() < 0)
    return InvalidField(field, "NEGATIVE", "a quota cannot be negative");
  bool above = !max.unlimited() && (b.unlimited() || b.value() > max.value());
  if (above) {
    return InvalidField(field, "ABOVE_PLAN",
                        absl::StrCat("quota ", b.unlimited() ? "unlimited" : absl::StrCat(b.value()),
                                     " bytes is above the plan's ", max.value(), " bytes"));
  }
  return q;
}

void DirectoryServiceImpl::Changed(Batch& batch, const std::string& tenant_id, const Principal& p,
                                   const std::string& action, const std::string& kind,
                                   const std::string& id, const std::string& summary,
                                   const std::string& reason) {
  AddAudit(batch, tenant_id, p, action, kind, id, summary, reason, absl::Now());
  // Changes that never write T/deptchild or T/deptmember keep the
  // department model (a rename keeps the department's id and parent).
  const bool memberships =
      !(action == "department.rename" || absl::StartsWith(action, "group.") ||
        absl::StartsWith(action, "alias.") || absl::StartsWith(action, "shared_mailbox.") ||
        absl::StartsWith(action, "domain."));
  cache_.Invalidate(tenant_id, TouchDirectory(batch, tenant_id, memberships));
}

absl::Status DirectoryServiceImpl::ProvisionAtPeers(std::vector<NewUser>& users) {
  if (users.empty()) return absl::OkStatus();
  if (peers_ != nullptr && peers_->identity_configured()) {
    identity::v1::SetInitialPasswordRequest req;
    for (const auto& u : users) {
      auto* e = req.add_entries();
      e->set_tenant_id(u.record.user().tenant_id());
      e->set_user_id(u.record.user().user_id());
      e->set_password(u.password);
      e->set_must_change(true);
    }
    absl::Status s = peers_->SetInitialPasswords(req);
    if (absl::IsInvalidArgument(s)) return s;  // the password policy said no
    if (!s.ok())
      return absl::UnavailableError(
          absl::StrCat("identityd could not take the initial password; nothing was created: ",
                       s.message()));
  } else {
    log::Warn("identityd not configured: initial passwords are not set (credential pending)",
              {{"users", users.size()}});
    for (auto& u : users) u.record.set_credential_pending(true);
  }
  if (peers_ != nullptr && peers_->mailstore_configured()) {
    // Up to 8 CreateMailbox calls in flight (an import creates thousands;
    // each is a replicated write at mailstored). Any failure: the ones made
    // are deleted again and nothing is created.
    std::vector<char> made(users.size(), 0);
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    absl::Mutex mu;
    absl::Status first_error;
    auto work = [&] {
      for (size_t i = next++; i < users.size() && !failed.load(); i = next++) {
        const v1::User& user = users[i].record.user();
        mailstore::v1::CreateMailboxRequest req;
        req.set_mailbox_id(user.mailbox_id());
        req.set_tenant_id(user.tenant_id());
        req.set_kind(common::v1::MAILBOX_KIND_USER);
        req.set_owner_id(user.user_id());
        *req.mutable_quota() = user.quota();
        absl::Status s = peers_->CreateMailbox(user.shard(), req);
        if (s.ok()) {
          made[i] = 1;
          continue;
        }
        failed = true;
        absl::MutexLock l(&mu);
        if (first_error.ok()) first_error = s;
      }
    };
    const size_t threads = std::min<size_t>(8, users.size());
    std::vector<std::thread> pool;
    for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
    if (!first_error.ok()) {
      std::vector<NewUser> created;
      for (size_t i = 0; i < users.size(); ++i)
        if (made[i]) created.push_back(users[i]);
      UnprovisionMailboxes(created);
      return absl::UnavailableError(absl::StrCat(
          "mailstored could not create the mailbox; nothing was created: ", first_error.message()));
    }
  } else {
    log::Warn("mailstored not configured: mailboxes are placed but not created (pending)",
              {{"users", users.size()}});
    for (auto& u : users) u.record.set_mailbox_pending(true);
  }
  return absl::OkStatus();
}

void DirectoryServiceImpl::UnprovisionMailboxes(const std::vector<NewUser>& users) {
  if (peers_ == nullptr || !peers_->mailstore_configured()) return;
  for (const auto& u : users) {
    if (u.record.mailbox_pending()) continue;
    absl::Status s = peers_->DeleteMailbox(u.record.user().shard(), u.record.user().mailbox_id());
    if (!s.ok())
      log::Warn("could not delete an unused mailbox (orphan at mailstored)",
                {{"mailbox", u.record.user().mailbox_id()}, {"status", s}});
  }
}

void DirectoryServiceImpl::PutNewUser(Batch& batch, const storage::UserRecord& rec) {
  const v1::User& u = rec.user();
  AddressRecord a;
  a.set_tenant_id(u.tenant_id());
  a.set_kind(AddressRecord::KIND_USER);
  a.set_target_id(u.user_id());
  a.set_address(u.address());
  const std::string key = KeyOfAddress(u.address());
  batch.ExpectAbsent(dkeys::Address(key))
      .Put(dkeys::Address(key), a)
      .ExpectAbsent(dkeys::Object(u.user_id()))
      .PutRaw(dkeys::Object(u.user_id()), u.tenant_id())
      .Put(dkeys::User(u.tenant_id(), u.user_id()), rec);
  for (const auto& d : u.department_ids())
    batch.Put(dkeys::DeptMember(u.tenant_id(), d, u.user_id()), RecipientOf(u));
  if (rec.mailbox_pending())
    batch.PutRaw(dkeys::PendingMailbox(u.tenant_id(), u.user_id()), "");
}

v1::User DirectoryServiceImpl::UserView(const Principal& p, const v1::User& u) const {
  bool full = p.HasRole(auth::kRoleService) || p.platform() ||
              p.HasRole(auth::kRoleTenantAdmin) || p.HasRole(auth::kRoleAuditor) ||
              p.subject == u.user_id();
  if (full) return u;
  v1::User r;
  r.set_user_id(u.user_id());
  r.set_address(u.address());
  r.set_display_name(u.display_name());
  *r.mutable_department_ids() = u.department_ids();
  r.set_title(u.title());
  r.set_phone(u.phone());
  r.set_state(u.state());
  return r;
}

namespace {

// The user id an address (or an alias of a user) names, read through `s`.
absl::StatusOr<std::string> UserIdAt(TenantStore& s, const std::string& address,
                                     const std::string& field) {
  ASSIGN_OR_RETURN(ParsedAddress a, ParseAddress(address, field));
  ASSIGN_OR_RETURN(auto rec, s.Read<AddressRecord>(dkeys::Address(a.key)));
  if (!rec.found()) return NotFound("user", a.address);
  const auto& r = rec.value;
  if (r.kind() == AddressRecord::KIND_USER ||
      (r.kind() == AddressRecord::KIND_ALIAS &&
       r.alias_target_kind() == v1::ALIAS_TARGET_KIND_USER)) {
    return r.target_id();
  }
  return NotFound("user", a.address);
}

// Where a read-only call's several reads go: after ONE linearizable probe
// (ReplicaFreshness::Probe: this replica has applied everything committed
// before the call began), this replica's own state, each read without a
// Raft round; the group when there is one store or the probe fails (this
// replica cut off or lagging by more than the probe's wait).
TenantStore& ProbedReads(TenantStore* group, TenantStore* local, ReplicaFreshness* freshness) {
  if (local == group || freshness == nullptr) return *group;
  if (!freshness->Probe(absl::Milliseconds(250)).ok()) return *group;
  return *local;
}

}  // namespace

absl::StatusOr<std::string> DirectoryServiceImpl::UserIdOfAddress(const std::string& address,
                                                                  const std::string& field) {
  return UserIdAt(*store_, address, field);
}

absl::StatusOr<bool> DirectoryServiceImpl::LastAdmin(const std::string& tenant_id,
                                                     const std::string& user_id) {
  ASSIGN_OR_RETURN(auto all, store_->ScanAll(dkeys::UserPrefix(tenant_id)));
  int admins = 0;
  bool is_admin = false;
  for (const auto& e : all) {
    storage::UserRecord r;
    if (!r.ParseFromString(e.value())) continue;
    const auto& u = r.user();
    bool admin = u.state() == v1::USER_STATE_ACTIVE &&
                 std::find(u.roles().begin(), u.roles().end(), common::v1::ROLE_TENANT_ADMIN) !=
                     u.roles().end();
    if (!admin) continue;
    ++admins;
    if (u.user_id() == user_id) is_admin = true;
  }
  return is_admin && admins <= 1;
}

// ---- validation of a new user (shared with ImportUsers) ----------------------

absl::StatusOr<DirectoryServiceImpl::NewUser> DirectoryServiceImpl::ValidateNewUser(
    const TenantCtx& t, const UserInput& in, const FieldNames& f, bool check_taken,
    DomainChecks* domains) {
  NewUser nu;
  v1::User& u = *nu.record.mutable_user();
  ParsedAddress a;
  if (check_taken) {
    ASSIGN_OR_RETURN(a, NewAddress(t.tenant_id, in.address, f.address));
  } else {
    ASSIGN_OR_RETURN(a, ParseAddress(in.address, f.address));
    auto known = domains != nullptr ? domains->find(a.domain) : DomainChecks::iterator();
    if (domains != nullptr && known != domains->end()) {
      RETURN_IF_ERROR(known->second);
    } else {
      absl::Status s = CheckAddressDomain(t.tenant_id, a, f.address);
      // Only answers about the domain are remembered, not a failed read.
      if (domains != nullptr && (s.ok() || absl::IsInvalidArgument(s) ||
                                 absl::IsFailedPrecondition(s)))
        (*domains)[a.domain] = s;
      RETURN_IF_ERROR(s);
    }
  }
  u.set_user_id(NewId("u-"));
  u.set_tenant_id(t.tenant_id);
  u.set_address(a.address);
  ASSIGN_OR_RETURN(*u.mutable_display_name(), ValidateName(in.display_name, f.display_name, 200));
  ASSIGN_OR_RETURN(*u.mutable_title(), ValidateOptionalText(in.title, f.title, 200));
  if (!in.phone.empty()) {
    ASSIGN_OR_RETURN(*u.mutable_phone(), NormalizePhone(in.phone, f.phone));
  }
  u.add_roles(common::v1::ROLE_USER);
  for (size_t i = 0; i < in.roles.size(); ++i) {
    common::v1::Role r = in.roles[i];
    if (r == common::v1::ROLE_USER) continue;
    if (r != common::v1::ROLE_TENANT_ADMIN && r != common::v1::ROLE_AUDITOR) {
      return InvalidField(f.Indexed(f.roles, i), "NOT_ALLOWED",
                          "a tenant user may hold user, tenant_admin and auditor only");
    }
    if (std::find(u.roles().begin(), u.roles().end(), r) == u.roles().end()) u.add_roles(r);
  }
  for (size_t i = 0; i < in.department_ids.size(); ++i) {
    const std::string& d = in.department_ids[i];
    ASSIGN_OR_RETURN(auto dept, store_->Read<v1::Department>(dkeys::Dept(t.tenant_id, d)));
    if (!dept.found())
      return InvalidField(f.Indexed(f.department_ids, i), "NOT_FOUND",
                          absl::StrCat("department ", d, " not found"));
    if (std::find(u.department_ids().begin(), u.department_ids().end(), d) ==
        u.department_ids().end())
      u.add_department_ids(d);
  }
  ASSIGN_OR_RETURN(*u.mutable_quota(), QuotaFor(t, in.quota, in.has_quota, f.quota));
  if (!in.recovery_email.empty()) {
    ASSIGN_OR_RETURN(ParsedAddress r, ParseAddress(in.recovery_email, f.recovery_email));
    if (r.key == a.key)
      return InvalidField(f.recovery_email, "OWN_MAILBOX",
                          "the recovery address must not be the user's own mailbox");
    u.set_recovery_email(r.address);
  }
  if (in.locale.size() > 35 ||
      !std::all_of(in.locale.begin(), in.locale.end(),
                   [](char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                                       c == '-' || c == '_'; })) {
    return InvalidField(f.locale, "BAD_LOCALE", "not a BCP 47 language tag (\"zh-CN\", \"en\")");
  }
  u.set_locale(in.locale);
  if (in.password.empty()) {
    nu.password = GeneratePassword();
    nu.generated = true;
  } else {
    if (in.password.size() < 8)
      return InvalidField(f.password, "TOO_SHORT", "at least 8 characters");
    if (in.password.size() > 128)
      return InvalidField(f.password, "TOO_LONG", "at most 128 characters");
    nu.password = in.password;
  }
  u.set_state(v1::USER_STATE_ACTIVE);
  u.set_mailbox_id(NewId("mb-"));
  absl::Time now = absl::Now();
  *u.mutable_created_at() = ToProto(now);
  *u.mutable_updated_at() = ToProto(now);
  return nu;
}

absl::Status DirectoryServiceImpl::MailboxLimit(const TenantCtx& t, int64_t adding,
                                                Batch* batch) {
  ASSIGN_OR_RETURN(auto usage, store_->Read<v1::TenantUsage>(keys::Usage(t.tenant_id)));
  int64_t want = usage.value.mailboxes() + adding;
  if (adding > 0 && t.has_plan && !Within(t.plan.mailboxes(), want)) {
    common::v1::LimitDetail d;
    d.set_limit("plan.mailboxes");
    *d.mutable_value() = t.plan.mailboxes();
    d.set_usage(usage.value.mailboxes());
    d.set_requested(want);
    return WithLimits(absl::StatusCode::kResourceExhausted, "PLAN_LIMIT",
                      absl::StrCat("plan \"", t.plan.name(), "\" allows ",
                                   LimitText(t.plan.mailboxes()), " mailboxes; the tenant has ",
                                   usage.value.mailboxes(), " and this would make ", want),
                      {d});
  }
  if (batch != nullptr) {
    usage.value.set_tenant_id(t.tenant_id);
    usage.value.set_plan_id(t.plan.plan_id());
    usage.value.set_mailboxes(std::max<int64_t>(0, want));
    *usage.value.mutable_computed_at() = ToProto(absl::Now());
    batch->ExpectVersion(keys::Usage(t.tenant_id), usage.version)
        .Put(keys::Usage(t.tenant_id), usage.value);
  }
  return absl::OkStatus();
}

// ---- RPCs ---------------------------------------------------------------------

grpc::Status DirectoryServiceImpl::CreateUser(Ctx* ctx, const v1::CreateUserRequest* req,
                                              v1::CreateUserResponse* resp) {
  return Serve(*auth_, ctx, "CreateUser", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeTenant(p, req->tenant_id(), {.tenant_admin = true}));
    ASSIGN_OR_RETURN(TenantCtx t, ActiveTenant(tid));
    UserInput in = UserInput::From(*req);
    ASSIGN_OR_RETURN(NewUser nu, ValidateNewUser(t, in, FieldNames::Api(), true));
    RETURN_IF_ERROR(MailboxLimit(t, 1, nullptr));
    std::vector<std::pair<uint64_t, int64_t>> loads;
    ASSIGN_OR_RETURN(auto shards, PickShards(1, &loads));
    nu.record.mutable_user()->set_shard(shards[0]);
    std::vector<NewUser> batch_users = {nu};
    RETURN_IF_ERROR(ProvisionAtPeers(batch_users));
    nu = batch_users[0];
    const v1::User& u = nu.record.user();
    absl::Status s = store_->Transact([&]() -> absl::StatusOr<Batch> {
      Batch batch;
      // Re-decided on every attempt: the address may have been taken, a
      // department deleted, or the plan filled meanwhile.
      ASSIGN_OR_RETURN(auto taken, store_->GetRaw(dkeys::Address(KeyOfAddress(u.address()))));
      if (taken.has_value()) return AddressTaken("address", u.address());
      for (int i = 0; i < u.department_ids_size(); ++i) {
        ASSIGN_OR_RETURN(auto d,
                         store_->Read<v1::Department>(dkeys::Dept(tid, u.department_ids(i))));
        if (!d.found())
          return InvalidField(absl::StrCat("department_ids[", i, "]"), "NOT_FOUND",
                              absl::StrCat("department ", u.department_ids(i), " not found"));
        batch.ExpectVersion(dkeys::Dept(tid, u.department_ids(i)), d.version);
      }
      RETURN_IF_ERROR(MailboxLimit(t, 1, &batch));
      RETURN_IF_ERROR(CountPlacements({u.shard()}, &batch, +1));
      PutNewUser(batch, nu.record);
      if (!req->skip_welcome_mail()) QueueWelcome(batch, u);
      Changed(batch, tid, p, "user.create", "user", u.user_id(),
              absl::StrCat("user ", u.address(), " created (mailbox ", u.mailbox_id(), " on shard ",
                           u.shard(), ")"));
      return batch;
    });
    if (!s.ok()) {
      UnprovisionMailboxes(batch_users);
      return s;
    }
    *resp->mutable_user() = u;
    if (nu.generated) resp->set_generated_password(nu.password);
    if (!req->skip_welcome_mail()) WelcomeNow(u);
    log::Info("user created", {{"tenant", tid},
                               {"user", u.user_id()},
                               {"shard", static_cast<int64_t>(u.shard())},
                               {"mailbox_pending", nu.record.mailbox_pending()},
                               {"credential_pending", nu.record.credential_pending()}});
    return absl::OkStatus();
  });
}

absl::StatusOr<DirectoryServiceImpl::ReadAccess> DirectoryServiceImpl::AuthorizeUserRead(
    const Principal& p, const std::string& tenant_id) {
  if (p.anonymous()) return Unauthenticated();
  if (p.HasRole(auth::kRoleService) && p.tenant_id.empty()) return ReadAccess::kFull;
  if (p.platform()) return PermissionDenied("platform staff do not read a tenant's directory");
  if (p.tenant_id != tenant_id) return absl::NotFoundError("");  // replaced by the caller
  if (p.HasRole(auth::kRoleTenantAdmin) || p.HasRole(auth::kRoleAuditor)) return ReadAccess::kFull;
  return ReadAccess::kReduced;
}

grpc::Status DirectoryServiceImpl::GetUser(Ctx* ctx, const v1::GetUserRequest* req,
                                           v1::User* resp) {
  return Serve(*auth_, ctx, "GetUser", [&](const Principal& p) -> absl::Status {
    std::string user_id = req->user_id();
    std::string shown = user_id;
    if (req->key_case() == v1::GetUserRequest::kAddress) {
      shown = req->address();
      auto id = UserIdOfAddress(req->address(), "address");
      if (!id.ok()) {
        if (absl::IsNotFound(id.status()) && p.anonymous()) return Unauthenticated();
        return id.status();
      }
      user_id = *id;
    } else if (user_id.empty()) {
      return InvalidField("user_id", "EMPTY", "give user_id or address");
    }
    auto tid = TenantOfObject(*store_, "user", user_id);
    if (!tid.ok()) {
      if (p.anonymous()) return Unauthenticated();
      return absl::IsNotFound(tid.status()) ? NotFound("user", shown) : tid.status();
    }
    auto access = AuthorizeUserRead(p, *tid);
    if (absl::IsNotFound(access.status())) return NotFound("user", shown);
    if (!access.ok()) return access.status();
    ASSIGN_OR_RETURN(auto rec, ReadUser(*store_, *tid, user_id));
    *resp = UserView(p, rec.value.user());
    return absl::OkStatus();
  });
}

namespace {
bool Matches(const v1::ListUsersRequest& req, const v1::User& u) {
  if (req.states_size() > 0 &&
      std::find(req.states().begin(), req.states().end(), u.state()) == req.states().end())
    return false;
  if (!req.department_id().empty() &&
      std::find(u.department_ids().begin(), u.department_ids().end(), req.department_id()) ==
          u.department_ids().end())
    return false;
  if (req.role() != common::v1::ROLE_UNSPECIFIED &&
      std::find(u.roles().begin(), u.roles().end(), req.role()) == u.roles().end())
    return false;
  if (!req.query().empty()) {
    std::string q = NameKey(req.query());
    if (!absl::StrContains(NameKey(u.address()), q) &&
        !absl::StrContains(NameKey(u.display_name()), q))
      return false;
  }
  return true;
}
}  // namespace

grpc::Status DirectoryServiceImpl::ListUsers(Ctx* ctx, const v1::ListUsersRequest* req,
                                             v1::ListUsersResponse* resp) {
  return Serve(*auth_, ctx, "ListUsers", [&](const Principal& p) -> absl::Status {
    std::string tid = req->tenant_id().empty() ? p.tenant_id : req->tenant_id();
    if (p.anonymous()) return Unauthenticated();
    if (tid.empty()) return InvalidField("tenant_id", "EMPTY", "must not be empty");
    auto access = AuthorizeUserRead(p, tid);
    if (absl::IsNotFound(access.status())) return NotFound("tenant", tid);
    if (!access.ok()) return access.status();
    ASSIGN_OR_RETURN(auto page, store_->Scan(dkeys::UserPrefix(tid), PageSize(req->page()),
                                             req->page().page_token()));
    for (const auto& e : page.entries) {
      storage::UserRecord r;
      if (!r.ParseFromString(e.value())) return absl::DataLossError("stored user does not parse");
      if (Matches(*req, r.user())) *resp->add_users() = UserView(p, r.user());
    }
    resp->mutable_page_info()->set_next_page_token(page.next_token);
    return absl::OkStatus();
  });
}


grpc::Status DirectoryServiceImpl::GetPrincipal(Ctx* ctx, const v1::GetPrincipalRequest* req,
                                                v1::Principal* resp) {
  return Serve(*auth_, ctx, "GetPrincipal", [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(CheckAccess(p, "", {.service = true}, PermissionDenied("service-internal")));
    // identityd asks at every login: 6+ sequential reads, each its own
    // ReadIndex round through the group, cost ~13 ms of tenantd CPU per
    // call (proof's profile); one probe, then local reads.
    TenantStore& s = ProbedReads(store_, rs_, freshness_);
    std::string user_id = req->user_id();
    std::string shown = user_id;
    if (req->key_case() == v1::GetPrincipalRequest::kAddress) {
      shown = req->address();
      ASSIGN_OR_RETURN(user_id, UserIdAt(s, req->address(), "address"));
    }
    if (user_id.empty()) return InvalidField("user_id", "EMPTY", "give user_id or address");
    auto tid = TenantOfObject(s, "user", user_id);
    if (absl::IsNotFound(tid.status())) return NotFound("user", shown);
    if (!tid.ok()) return tid.status();
    ASSIGN_OR_RETURN(auto rec, ReadUser(s, *tid, user_id));
    const v1::User& u = rec.value.user();
    if (u.state() == v1::USER_STATE_DELETED) return NotFound("user", shown);
    ASSIGN_OR_RETURN(auto tenant, ReadTenant(s, *tid));
    *resp->mutable_user() = u;
    resp->set_tenant_state(tenant.value.tenant().state());
    auto* own = resp->add_mailboxes();
    own->set_mailbox_id(u.mailbox_id());
    own->set_address(u.address());
    own->set_shard(u.shard());
    own->set_kind(common::v1::MAILBOX_KIND_USER);
    own->set_can_send_as(true);
    ASSIGN_OR_RETURN(auto seats, IdsUnder(s, dkeys::UserSeatPrefix(*tid, user_id)));
    for (const auto& shared_id : seats) {
      ASSIGN_OR_RETURN(auto shared, s.Read<storage::SharedMailboxRecord>(
                                        dkeys::Shared(*tid, shared_id)));
      ASSIGN_OR_RETURN(auto seat, s.Read<v1::Seat>(dkeys::Seat(*tid, shared_id, user_id)));
      if (!shared.found() || shared.value.mailbox().has_purge_after()) continue;
      const auto& m = shared.value.mailbox();
      auto* a = resp->add_mailboxes();
      a->set_mailbox_id(m.mailbox_id());
      a->set_address(m.address());
      a->set_shard(m.shard());
      a->set_kind(common::v1::MAILBOX_KIND_SHARED);
      a->set_can_send_as(seat.value.can_send_as());
    }
    const std::string plan_id = tenant.value.tenant().plan_id();
    if (!plan_id.empty()) {
      ASSIGN_OR_RETURN(auto plan, s.Read<v1::Plan>(keys::Plan(plan_id)));
      for (int f : plan.value.features())
        resp->add_plan_features(static_cast<v1::PlanFeature>(f));
    }
    return absl::OkStatus();
  });
}

}  // namespace mailgrid::tenant
