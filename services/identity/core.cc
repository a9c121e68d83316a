#include "services/identity/core.h"

#include <sodium.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/time_util.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "services/identity/errors.h"
#include "services/identity/totp.h"

namespace mailgrid::identity {

common::v1::Actor Caller::ToActor() const {
  common::v1::Actor a;
  a.set_tenant_id(claims.tenant_id);
  if (user()) a.set_user_id(claims.subject);
  a.set_address(claims.address);
  for (const auto& r : claims.roles) a.add_roles(RoleFromName(r));
  a.set_service(claims.service);
  a.set_ip(peer_ip);
  return a;
}

Core::Core(IdentityStore* store, Directory* directory, PasswordHasher* hasher,
           SessionManager* sessions, Throttler* throttle, redis::Client* redis,
           CommonPasswords common, const auth::TokenVerifier* verifier, CoreOptions options)
    : store_(store),
      directory_(directory),
      hasher_(hasher),
      sessions_(sessions),
      throttle_(throttle),
      redis_(redis),
      common_(std::move(common)),
      verifier_(verifier),
      options_(std::move(options)) {}

namespace {

std::string PeerIp(const grpc::ServerContext& ctx) {
  std::string peer = ctx.peer();
  for (std::string_view scheme : {"ipv4:", "ipv6:"}) {
    if (peer.rfind(scheme, 0) == 0) {
      peer.erase(0, scheme.size());
      size_t colon = peer.rfind(':');
      if (colon != std::string::npos) peer.erase(colon);
      if (!peer.empty() && peer.front() == '[') peer = peer.substr(1, peer.size() - 2);
      return peer;
    }
  }
  return "";
}

}  // namespace

absl::StatusOr<Caller> Core::Authenticate(const grpc::ServerContext& ctx) {
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    Caller c;
    c.peer_ip = PeerIp(ctx);
    return c;
  }
  std::string value(it->second.data(), it->second.size());
  if (value.rfind("Bearer ", 0) != 0) return Unauthenticated();
  return AuthenticateBearer(std::string_view(value).substr(7), PeerIp(ctx));
}

absl::StatusOr<Caller> Core::AuthenticateBearer(std::string_view token, std::string peer_ip) {
  if (verifier_ == nullptr) return Unauthenticated();
  auto claims = verifier_->Verify(token);
  if (!claims.ok()) return Unauthenticated();
  Caller c;
  c.peer_ip = std::move(peer_ip);
  c.claims = *std::move(claims);
  if (c.claims.HasRole(auth::kRoleService)) {
    c.kind = Caller::Kind::kService;
    return c;
  }
  c.kind = Caller::Kind::kUser;
  auto revoked = sessions_->Revoked(c.claims);
  if (!revoked.ok()) return revoked.status();
  if (*revoked) return Unauthenticated();
  return c;
}

common::v1::ClientInfo Core::ClientOf(const Caller& c, const common::v1::ClientInfo& given) const {
  common::v1::ClientInfo out = given;
  if (!c.service() || out.ip().empty()) out.set_ip(c.peer_ip);
  if (out.user_agent().size() > 256) out.set_user_agent(out.user_agent().substr(0, 256));
  if (out.description().size() > 256) out.set_description(out.description().substr(0, 256));
  return out;
}

bool Core::Usable(const tenant::v1::Principal& p) {
  return p.user().state() == tenant::v1::USER_STATE_ACTIVE &&
         p.tenant_state() == tenant::v1::TENANT_STATE_ACTIVE;
}

absl::StatusOr<std::optional<tenant::v1::Principal>> Core::LookupAddress(
    const std::string& address) {
  auto p = directory_->ByAddress(address);
  if (p.ok()) return std::optional<tenant::v1::Principal>(*std::move(p));
  if (absl::IsNotFound(p.status()) || absl::IsInvalidArgument(p.status())) return std::nullopt;
  return p.status();
}

bool Core::RequiresTwoFactor(const v1::PasswordPolicy& policy,
                             const tenant::v1::Principal& p) const {
  switch (policy.require_two_factor()) {
    case v1::TWO_FACTOR_REQUIREMENT_ALL:
      return true;
    case v1::TWO_FACTOR_REQUIREMENT_ADMINS:
      for (int r : p.user().roles())
        if (r == common::v1::ROLE_TENANT_ADMIN || r == common::v1::ROLE_AUDITOR) return true;
      return false;
    default:
      return false;
  }
}

absl::StatusOr<v1::Session> Core::FullSession(const tenant::v1::Principal& p,
                                              std::vector<std::string> amr,
                                              const common::v1::ClientInfo& client,
                                              std::string scope) {
  SessionSpec spec;
  spec.tenant_id = p.user().tenant_id();
  spec.user_id = p.user().user_id();
  spec.address = p.user().address();
  spec.roles = RoleNames(p.user().roles());
  spec.mailboxes.assign(p.mailboxes().begin(), p.mailboxes().end());
  if (spec.mailboxes.empty() && !p.user().mailbox_id().empty()) {
    common::v1::MailboxAccess own;
    own.set_mailbox_id(p.user().mailbox_id());
    own.set_address(p.user().address());
    own.set_shard(p.user().shard());
    own.set_kind(common::v1::MAILBOX_KIND_USER);
    spec.mailboxes.push_back(own);
  }
  spec.scope = std::move(scope);
  spec.amr = std::move(amr);
  spec.client = client;
  return sessions_->Create(spec);
}

absl::StatusOr<v1::LoginResult> Core::Continue(const tenant::v1::Principal& p,
                                               const storage::Credential& cred,
                                               std::vector<std::string> amr,
                                               const common::v1::ClientInfo& client, Step from) {
  const std::string& tid = p.user().tenant_id();
  const std::string& uid = p.user().user_id();
  v1::LoginResult result;
  absl::Time now = absl::Now();
  storage::PendingLogin pending;
  pending.set_tenant_id(tid);
  pending.set_user_id(uid);
  pending.set_address(p.user().address());
  for (const auto& a : amr) pending.add_amr(a);
  pending.set_client(client.SerializeAsString());
  bool by_password = std::find(amr.begin(), amr.end(), "pwd") != amr.end();

  if (from <= Step::kSecondFactor && by_password && !cred.totp_secret().empty()) {
    std::string id = RandomToken(24);
    RETURN_IF_ERROR(PutPending(absl::StrCat("mg:id:ch:", id), pending, options_.challenge_ttl));
    auto* ch = result.mutable_second_factor();
    ch->set_challenge_id(id);
    ch->add_allowed(v1::SECOND_FACTOR_KIND_TOTP);
    ch->add_allowed(v1::SECOND_FACTOR_KIND_RECOVERY_CODE);
    ch->mutable_expires_at()->set_seconds(absl::ToUnixSeconds(now + options_.challenge_ttl));
    return result;
  }
  ASSIGN_OR_RETURN(auto policy, store_->GetPolicy(tid));
  if (from <= Step::kPasswordChange && by_password) {
    v1::PasswordChangeReason reason = v1::PASSWORD_CHANGE_REASON_UNSPECIFIED;
    if (cred.must_change()) {
      reason = cred.change_reason() == 0
                   ? v1::PASSWORD_CHANGE_REASON_INITIAL
                   : static_cast<v1::PasswordChangeReason>(cred.change_reason());
    } else if (policy.first.max_password_age_days() > 0 &&
               absl::FromUnixSeconds(cred.password_changed_at()) +
                       absl::Hours(24) * policy.first.max_password_age_days() <
                   now) {
      reason = v1::PASSWORD_CHANGE_REASON_EXPIRED;
    }
    if (reason != v1::PASSWORD_CHANGE_REASON_UNSPECIFIED) {
      std::string ticket = RandomToken(24);
      pending.set_reason(reason);
      RETURN_IF_ERROR(
          PutPending(absl::StrCat("mg:id:pt:", ticket), pending, options_.change_ticket_ttl));
      auto* pc = result.mutable_password_change_required();
      pc->set_ticket(ticket);
      pc->mutable_expires_at()->set_seconds(absl::ToUnixSeconds(now + options_.change_ticket_ttl));
      pc->set_reason(reason);
      pc->set_min_length(EffectiveMinLength(policy.first));
      return result;
    }
  }
  if (from <= Step::kEnrolment && cred.totp_secret().empty() &&
      RequiresTwoFactor(policy.first, p)) {
    ASSIGN_OR_RETURN(*result.mutable_session(), FullSession(p, amr, client, kScopeEnrolment));
    result.set_totp_enrolment_required(true);
    return result;
  }
  ASSIGN_OR_RETURN(*result.mutable_session(), FullSession(p, amr, client));
  return result;
}

absl::Status Core::RequireTenantRole(const Caller& c, const std::string& tenant_id, bool admin,
                                     bool auditor) {
  if (c.service() || c.platform_operator()) return absl::OkStatus();
  if (!c.full_user())
    return c.user() ? PermissionDenied("token scope does not allow this") : Unauthenticated();
  if (c.claims.tenant_id != tenant_id) return NotFound("tenant");
  if ((admin && c.HasRole(auth::kRoleTenantAdmin)) || (auditor && c.HasRole(auth::kRoleAuditor)))
    return absl::OkStatus();
  return PermissionDenied("requires the tenant admin role");
}

absl::StatusOr<Core::Target> Core::ResolveTarget(const Caller& c, const std::string& user_id,
                                                 bool allow_self, bool allow_admin,
                                                 bool allow_auditor) {
  if (c.anonymous()) return Unauthenticated();
  Target t;
  if (user_id.empty() || (c.user() && user_id == c.claims.subject)) {
    if (c.user() && allow_self) {
      if (!c.full_user()) return PermissionDenied("token scope does not allow this");
      t.tenant_id = c.claims.tenant_id;
      t.user_id = c.claims.subject;
      t.self = true;
      return t;
    }
    if (user_id.empty()) return InvalidField("user_id", "EMPTY", "required");
    // The user naming themselves in an admin-only call: the role check
    // below answers PERMISSION_DENIED.
  }
  auto tenant = store_->TenantOfUser(user_id);
  if (!tenant.ok()) {
    if (absl::IsNotFound(tenant.status())) return NotFound("user");
    return tenant.status();
  }
  t.tenant_id = *tenant;
  t.user_id = user_id;
  if (!allow_admin && !allow_auditor && !c.service()) return NotFound("user");
  absl::Status s = RequireTenantRole(c, t.tenant_id, allow_admin, allow_auditor);
  if (absl::IsNotFound(s)) return NotFound("user");
  RETURN_IF_ERROR(s);
  return t;
}

absl::Status Core::CheckAgainstHistory(const storage::Credential& cred,
                                       const v1::PasswordPolicy& policy,
                                       const std::string& password, std::string_view field) {
  if (!cred.password_phc().empty() && hasher_->Verify(cred.password_phc(), password))
    return InvalidField(field, "SAME_AS_OLD", "the same as the current password");
  int n = 0;
  for (const auto& old : cred.history_phc()) {
    if (n++ >= static_cast<int>(policy.history_count())) break;
    if (hasher_->Verify(old, password))
      return InvalidField(field, "REUSED", "used recently; choose another");
  }
  return absl::OkStatus();
}

absl::Status Core::StorePassword(const std::string& tenant_id, const std::string& user_id,
                                 const std::string& phc, bool must_change,
                                 v1::PasswordChangeReason reason, uint32_t history_count) {
  return store_->Mutate(tenant_id, user_id, [&](storage::Credential& cred, bool) {
    if (!cred.password_phc().empty() && history_count > 0) {
      cred.mutable_history_phc()->Add(std::string(cred.password_phc()));
      // Newest first, at most history_count kept.
      auto* h = cred.mutable_history_phc();
      std::rotate(h->begin(), h->end() - 1, h->end());
      while (h->size() > static_cast<int>(history_count)) h->RemoveLast();
    }
    cred.set_password_phc(phc);
    cred.set_must_change(must_change);
    cred.set_change_reason(must_change ? reason : 0);
    cred.set_password_changed_at(absl::ToUnixSeconds(absl::Now()));
    return absl::OkStatus();
  });
}

absl::Status Core::CheckReauth(const storage::Credential& cred, const v1::Reauth& reauth) {
  switch (reauth.proof_case()) {
    case v1::Reauth::kCurrentPassword:
      if (reauth.current_password().size() <= kMaxPasswordBytes && !cred.password_phc().empty() &&
          hasher_->Verify(cred.password_phc(), reauth.current_password()))
        return absl::OkStatus();
      return InvalidCredentials();
    case v1::Reauth::kTotpCode: {
      if (cred.totp_secret().empty()) return InvalidCredentials();
      ASSIGN_OR_RETURN(bool ok, UseTotp(cred.tenant_id(), cred.user_id(), reauth.totp_code(), {}));
      return ok ? absl::OkStatus() : InvalidCredentials();
    }
    default:
      return InvalidCredentials();
  }
}

absl::StatusOr<bool> Core::UseTotp(const std::string& tenant_id, const std::string& user_id,
                                   const std::string& code, const common::v1::ClientInfo& client) {
  bool matched = false, replay = false;
  absl::Status s = store_->Mutate(tenant_id, user_id, [&](storage::Credential& cred, bool exists) {
    if (!exists || cred.totp_secret().empty()) return absl::CancelledError("no totp");
    auto step = MatchTotp(cred.totp_secret(), code, absl::Now(), cred.totp_last_step());
    if (!step) {
      replay = IsReplay(cred.totp_secret(), code, absl::Now(), cred.totp_last_step());
      return absl::CancelledError("no match");  // nothing to write
    }
    matched = true;
    cred.set_totp_last_step(*step);
    return absl::OkStatus();
  });
  if (!s.ok() && !absl::IsCancelled(s)) return s;
  if (replay)
    Event(tenant_id, user_id, "", v1::AUTH_EVENT_KIND_TOTP_REPLAY, v1::AUTH_OUTCOME_FAILURE, "otp",
          client, "replayed code");
  return matched;
}

namespace {
std::string NormaliseRecoveryCode(std::string_view code) {
  std::string out;
  for (char ch : code) {
    if (ch == ' ' || ch == '-') continue;
    out.push_back(absl::ascii_tolower(static_cast<unsigned char>(ch)));
  }
  return out;
}
}  // namespace

absl::StatusOr<bool> Core::UseRecoveryCode(const std::string& tenant_id, const std::string& user_id,
                                           const std::string& code) {
  if (code.size() > 64) return false;
  std::string normal = NormaliseRecoveryCode(code);
  bool matched = false;
  absl::Status s = store_->Mutate(tenant_id, user_id, [&](storage::Credential& cred, bool exists) {
    if (!exists) return absl::CancelledError("none");
    std::string hash = Sha256(cred.recovery_salt() + normal);
    for (auto& rc : *cred.mutable_recovery_codes()) {
      if (!rc.used() && rc.hash() == hash) {
        rc.set_used(true);
        matched = true;
        return absl::OkStatus();
      }
    }
    return absl::CancelledError("no match");
  });
  if (absl::IsUnavailable(s)) return s;
  return matched;
}

std::vector<std::string> Core::NewRecoveryCodes(storage::Credential& cred) {
  // Ten codes of 10 base32 characters (50 bits), shown as xxxxx-xxxxx.
  std::string salt(16, '\0');
  randombytes_buf(salt.data(), salt.size());
  cred.set_recovery_salt(salt);
  cred.clear_recovery_codes();
  std::vector<std::string> shown;
  for (int i = 0; i < 10; ++i) {
    std::string raw(7, '\0');
    randombytes_buf(raw.data(), raw.size());
    std::string code = absl::AsciiStrToLower(Base32Encode(raw).substr(0, 10));
    cred.add_recovery_codes()->set_hash(Sha256(salt + code));
    shown.push_back(absl::StrCat(code.substr(0, 5), "-", code.substr(5)));
  }
  return shown;
}

void Core::Event(const std::string& tenant_id, const std::string& user_id,
                 const std::string& address, v1::AuthEventKind kind, v1::AuthOutcome outcome,
                 const std::string& method, const common::v1::ClientInfo& client,
                 const std::string& detail, const Caller* actor) {
  if (tenant_id.empty()) return;  // an address of no tenant: nowhere to record it
  v1::AuthEvent e;
  e.set_event_id(RandomToken(9));
  *e.mutable_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
  e.set_tenant_id(tenant_id);
  e.set_user_id(user_id);
  e.set_address(address.substr(0, 320));
  e.set_kind(kind);
  e.set_outcome(outcome);
  e.set_method(method);
  *e.mutable_client() = client;
  if (actor != nullptr) *e.mutable_actor() = actor->ToActor();
  e.set_detail(detail);
  absl::Status s = store_->AppendEvent(e);
  if (!s.ok())
    log::Warn("auth event not recorded", {{"status", s}, {"kind", v1::AuthEventKind_Name(kind)}});
}

void Core::NotifyUser(SecurityEvent event, const std::string& tenant_id, const std::string& user_id,
                      const common::v1::ClientInfo& client, bool by_admin,
                      const std::string& detail) {
  if (options_.notices == nullptr) return;  // no relayd: README "Known gaps"
  SecurityNotice n;
  n.event = event;
  n.tenant_id = tenant_id;
  n.user_id = user_id;
  n.at = absl::Now();
  n.client = client;
  n.by_admin = by_admin;
  n.detail = detail;
  n.id = RandomToken(12);
  (void)QueueNotice(std::move(n));
}

absl::Status Core::QueueNotice(SecurityNotice n) {
  const std::string kind(SecurityEventName(n.event)), user_id = n.user_id;
  absl::Status s = options_.notices->SendSecurityNotice(std::move(n));
  if (!s.ok())
    log::Warn("security notice not queued",
              {{"kind", kind}, {"user_id", user_id}, {"error", s.ToString()}});
  return s;
}

absl::Status Core::PutPending(const std::string& key, const google::protobuf::Message& m,
                              absl::Duration ttl) {
  ASSIGN_OR_RETURN(bool ok, redis_->Set(key, m.SerializeAsString(), {.ttl = ttl}));
  (void)ok;
  return absl::OkStatus();
}

absl::StatusOr<bool> Core::GetPending(const std::string& key, google::protobuf::Message* m) {
  ASSIGN_OR_RETURN(auto raw, redis_->Get(key));
  if (!raw.has_value()) return false;
  return m->ParseFromString(*raw);
}

}  // namespace mailgrid::identity
