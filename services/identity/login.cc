// AuthService: sign-in (Login, CompleteSecondFactor, ChangePassword) and
// sessions (RefreshToken, Logout, LogoutEverywhere, ListSessions,
// RevokeSession), GetPublicKeys and the auth event log.
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "libs/auth/base64url.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "nlohmann/json.hpp"
#include "services/identity/core.h"
#include "services/identity/errors.h"
#include "services/identity/totp.h"

namespace mailgrid::identity {
namespace {

// RFC 8037 OKP JWK of an Ed25519 SubjectPublicKeyInfo PEM ("" if not one).
std::string Ed25519Jwk(const std::string& kid, const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  unsigned char raw[32];
  size_t len = sizeof(raw);
  bool ok = key != nullptr && EVP_PKEY_get_raw_public_key(key, raw, &len) == 1 && len == 32;
  EVP_PKEY_free(key);
  if (!ok) return "";
  return nlohmann::json{
      {"kty", "OKP"},
      {"crv", "Ed25519"},
      {"alg", "EdDSA"},
      {"use", "sig"},
      {"kid", kid},
      {"x", auth::Base64UrlEncode(std::string_view(reinterpret_cast<char*>(raw), len))}}
      .dump();
}

}  // namespace

absl::StatusOr<v1::LoginResult> Core::Login(const Caller& c, const v1::LoginRequest& r) {
  common::v1::ClientInfo client = ClientOf(c, r.client());
  if (r.address().size() > kMaxAddressBytes)
    return InvalidField("address", "TOO_LONG", "at most 320 bytes");
  RETURN_IF_ERROR(CheckPresentedPassword(r.password(), "password"));
  const std::string& address = r.address();
  RETURN_IF_ERROR(throttle_->Check(address, client.ip()));

  ASSIGN_OR_RETURN(auto principal, LookupAddress(address));
  std::optional<storage::Credential> cred;
  uint64_t seen = 0;  // the state the credential read saw; the policy read below is as fresh
  if (principal.has_value()) {
    auto got =
        store_->GetCredential(principal->user().tenant_id(), principal->user().user_id(), &seen);
    if (got.ok())
      cred = *std::move(got);
    else if (!absl::IsNotFound(got.status()))
      return got.status();
  }
  // The same argon2id work whether or not the account exists.
  bool password_ok = cred.has_value() && !cred->password_phc().empty()
                         ? hasher_->Verify(cred->password_phc(), r.password())
                         : (hasher_->EqualWork(r.password()), false);
  std::string tid = principal ? principal->user().tenant_id() : "";
  std::string uid = principal ? principal->user().user_id() : "";
  if (!password_ok || !Usable(*principal)) {
    ASSIGN_OR_RETURN(bool locked, throttle_->RecordFailure(address, client.ip(), tid, uid));
    std::string why = !principal ? "unknown address" : !password_ok ? "bad password" : "not active";
    Event(tid, uid, address, v1::AUTH_EVENT_KIND_LOGIN, v1::AUTH_OUTCOME_FAILURE, "pwd", client,
          why);
    if (locked)
      Event(tid, uid, address, v1::AUTH_EVENT_KIND_LOCKOUT, v1::AUTH_OUTCOME_THROTTLED, "pwd",
            client, "too many failures");
    return InvalidCredentials();
  }
  (void)throttle_->RecordSuccess(address, tid, uid);
  if (hasher_->NeedsRehash(cred->password_phc())) {
    // Parameters were raised since this hash was made: upgrade it now,
    // while we know the password.
    auto phc = hasher_->Hash(r.password());
    if (phc.ok()) {
      absl::Status s = store_->Mutate(tid, uid, [&](storage::Credential& cr, bool) {
        cr.set_password_phc(*phc);
        return absl::OkStatus();
      });
      if (s.ok())
        cred->set_password_phc(*phc);
      else
        log::Warn("password rehash not stored", {{"status", s}});
    }
  }
  ASSIGN_OR_RETURN(auto policy, store_->GetPolicy(tid, seen));
  if (policy.first.sso_mandatory())
    return Precondition("SSO_REQUIRED", "this organisation signs in with single sign-on");
  Event(tid, uid, address, v1::AUTH_EVENT_KIND_LOGIN, v1::AUTH_OUTCOME_SUCCESS, "pwd", client, "");
  return Continue(*principal, *cred, {"pwd"}, client, Step::kSecondFactor);
}

absl::StatusOr<v1::LoginResult> Core::CompleteSecondFactor(
    const Caller& c, const v1::CompleteSecondFactorRequest& r) {
  common::v1::ClientInfo client = ClientOf(c, r.client());
  if (r.factor_case() == v1::CompleteSecondFactorRequest::kTotpCode && !IsSixDigits(r.totp_code()))
    return InvalidField("totp_code", "NOT_SIX_DIGITS", "six digits");
  if (r.challenge_id().empty() || r.challenge_id().size() > 128) return InvalidCredentials();
  const std::string key = absl::StrCat("mg:id:ch:", r.challenge_id());
  storage::PendingLogin pending;
  ASSIGN_OR_RETURN(bool found, GetPending(key, &pending));
  if (!found) return InvalidCredentials();
  bool ok = false;
  std::string method;
  if (r.factor_case() == v1::CompleteSecondFactorRequest::kTotpCode) {
    method = "otp";
    ASSIGN_OR_RETURN(ok, UseTotp(pending.tenant_id(), pending.user_id(), r.totp_code(), client));
  } else if (r.factor_case() == v1::CompleteSecondFactorRequest::kRecoveryCode) {
    method = "recovery";
    ASSIGN_OR_RETURN(ok,
                     UseRecoveryCode(pending.tenant_id(), pending.user_id(), r.recovery_code()));
    if (ok)
      Event(pending.tenant_id(), pending.user_id(), pending.address(),
            v1::AUTH_EVENT_KIND_RECOVERY_CODE_USED, v1::AUTH_OUTCOME_SUCCESS, method, client, "");
  }
  if (!ok) {
    pending.set_failures(pending.failures() + 1);
    // After 5 bad codes the challenge is void.
    if (pending.failures() >= 5) {
      (void)redis_->Del(key);
    } else {
      (void)redis_->Command({"SET", key, pending.SerializeAsString(), "KEEPTTL", "XX"});
    }
    Event(pending.tenant_id(), pending.user_id(), pending.address(),
          v1::AUTH_EVENT_KIND_SECOND_FACTOR, v1::AUTH_OUTCOME_FAILURE, method, client, "bad code");
    return InvalidCredentials();
  }
  // Single use: only the caller that deletes the challenge continues.
  ASSIGN_OR_RETURN(bool deleted, redis_->Del(key));
  if (!deleted) return InvalidCredentials();
  Event(pending.tenant_id(), pending.user_id(), pending.address(),
        v1::AUTH_EVENT_KIND_SECOND_FACTOR, v1::AUTH_OUTCOME_SUCCESS, method, client, "");
  auto principal = directory_->ByUserId(pending.user_id());
  if (!principal.ok() || !Usable(*principal)) return InvalidCredentials();
  ASSIGN_OR_RETURN(auto cred, store_->GetCredential(pending.tenant_id(), pending.user_id()));
  std::vector<std::string> amr(pending.amr().begin(), pending.amr().end());
  amr.push_back("otp");
  return Continue(*principal, cred, amr, client, Step::kPasswordChange);
}

absl::StatusOr<v1::LoginResult> Core::ChangePassword(const Caller& c,
                                                     const v1::ChangePasswordRequest& r) {
  common::v1::ClientInfo client = ClientOf(c, r.client());
  if (r.auth_case() == v1::ChangePasswordRequest::kTicket) {
    if (r.ticket().empty() || r.ticket().size() > 128) return InvalidCredentials();
    const std::string key = absl::StrCat("mg:id:pt:", r.ticket());
    storage::PendingLogin pending;
    ASSIGN_OR_RETURN(bool found, GetPending(key, &pending));
    if (!found) return InvalidCredentials();
    ASSIGN_OR_RETURN(auto cred, store_->GetCredential(pending.tenant_id(), pending.user_id()));
    ASSIGN_OR_RETURN(auto policy, store_->GetPolicy(pending.tenant_id()));
    RETURN_IF_ERROR(CheckNewPassword(policy.first, r.new_password(), common_, "new_password"));
    RETURN_IF_ERROR(CheckAgainstHistory(cred, policy.first, r.new_password(), "new_password"));
    ASSIGN_OR_RETURN(bool deleted, redis_->Del(key));
    if (!deleted) return InvalidCredentials();
    ASSIGN_OR_RETURN(std::string phc, hasher_->Hash(r.new_password()));
    RETURN_IF_ERROR(StorePassword(pending.tenant_id(), pending.user_id(), phc, false,
                                  v1::PASSWORD_CHANGE_REASON_UNSPECIFIED,
                                  policy.first.history_count()));
    // Sessions from before (an expired password's) end like at any change;
    // the session this sign-in gets is made after.
    ASSIGN_OR_RETURN(int64_t ended, sessions_->EndAll(pending.user_id()));
    Event(pending.tenant_id(), pending.user_id(), pending.address(),
          v1::AUTH_EVENT_KIND_PASSWORD_CHANGE, v1::AUTH_OUTCOME_SUCCESS, "pwd", client,
          absl::StrCat("required change; ", ended, " sessions ended"));
    // The first sign-in's change replaces the password an admin handed out
    // (the welcome mail announced the account): no notice for it.
    if (!(cred.must_change() && cred.change_reason() == v1::PASSWORD_CHANGE_REASON_INITIAL))
      NotifyUser(SecurityEvent::kRequiredPasswordChanged, pending.tenant_id(), pending.user_id(),
                 client);
    auto principal = directory_->ByUserId(pending.user_id());
    if (!principal.ok() || !Usable(*principal)) return InvalidCredentials();
    ASSIGN_OR_RETURN(cred, store_->GetCredential(pending.tenant_id(), pending.user_id()));
    return Continue(*principal, cred, {pending.amr().begin(), pending.amr().end()}, client,
                    Step::kEnrolment);
  }
  // The signed-in user, with the current password.
  if (!c.full_user())
    return c.user() ? PermissionDenied("token scope does not allow this") : Unauthenticated();
  const std::string& tid = c.claims.tenant_id;
  const std::string& uid = c.claims.subject;
  RETURN_IF_ERROR(CheckPresentedPassword(r.current_password(), "current_password"));
  RETURN_IF_ERROR(throttle_->Check(c.claims.address, client.ip()));
  ASSIGN_OR_RETURN(auto cred, store_->GetCredential(tid, uid));
  if (cred.password_phc().empty() || !hasher_->Verify(cred.password_phc(), r.current_password())) {
    (void)throttle_->RecordFailure(c.claims.address, client.ip(), tid, uid);
    Event(tid, uid, c.claims.address, v1::AUTH_EVENT_KIND_PASSWORD_CHANGE, v1::AUTH_OUTCOME_FAILURE,
          "pwd", client, "wrong current password");
    return InvalidCredentials();
  }
  ASSIGN_OR_RETURN(auto policy, store_->GetPolicy(tid));
  RETURN_IF_ERROR(CheckNewPassword(policy.first, r.new_password(), common_, "new_password"));
  RETURN_IF_ERROR(CheckAgainstHistory(cred, policy.first, r.new_password(), "new_password"));
  ASSIGN_OR_RETURN(std::string phc, hasher_->Hash(r.new_password()));
  RETURN_IF_ERROR(StorePassword(tid, uid, phc, false, v1::PASSWORD_CHANGE_REASON_UNSPECIFIED,
                                policy.first.history_count()));
  ASSIGN_OR_RETURN(int64_t ended, sessions_->EndAll(uid));
  Event(tid, uid, c.claims.address, v1::AUTH_EVENT_KIND_PASSWORD_CHANGE, v1::AUTH_OUTCOME_SUCCESS,
        "pwd", client, absl::StrCat(ended, " sessions ended"));
  NotifyUser(SecurityEvent::kPasswordChanged, tid, uid, client);
  auto principal = directory_->ByUserId(uid);
  if (!principal.ok()) return principal.status();
  v1::LoginResult result;
  ASSIGN_OR_RETURN(*result.mutable_session(),
                   FullSession(*principal, c.claims.auth_methods, client));
  return result;
}

absl::StatusOr<v1::Session> Core::RefreshToken(const Caller& c, const v1::RefreshTokenRequest& r) {
  common::v1::ClientInfo client = ClientOf(c, r.client());
  ASSIGN_OR_RETURN(v1::Session s, sessions_->Refresh(r.refresh_token(), client));
  // The user may have been disabled since: no new tokens then.
  auto principal = directory_->ByUserId(s.user_id());
  if (principal.ok() && !Usable(*principal)) {
    (void)sessions_->End(s.session_id());
    return InvalidCredentials();
  }
  return s;
}

absl::StatusOr<v1::LogoutResponse> Core::Logout(const Caller& c, const v1::LogoutRequest& r) {
  std::string sid;
  if (!r.refresh_token().empty()) {
    auto found = sessions_->SessionOfRefreshToken(r.refresh_token());
    if (found.ok()) sid = *found;
  }
  if (sid.empty() && c.user()) sid = c.claims.session_id;
  if (sid.empty()) return Unauthenticated();
  ASSIGN_OR_RETURN(auto record, sessions_->Get(sid));
  ASSIGN_OR_RETURN(bool ended, sessions_->End(sid));
  (void)ended;
  Event(record.tenant_id(), record.user_id(), record.address(), v1::AUTH_EVENT_KIND_LOGOUT,
        v1::AUTH_OUTCOME_SUCCESS, "", ClientOf(c, {}), "");
  return v1::LogoutResponse();
}

absl::StatusOr<v1::LogoutEverywhereResponse> Core::LogoutEverywhere(
    const Caller& c, const v1::LogoutEverywhereRequest& r) {
  ASSIGN_OR_RETURN(Target t, ResolveTarget(c, r.user_id(), true, true, false));
  ASSIGN_OR_RETURN(int64_t ended, sessions_->EndAll(t.user_id));
  Event(t.tenant_id, t.user_id, "", v1::AUTH_EVENT_KIND_SESSIONS_REVOKED, v1::AUTH_OUTCOME_SUCCESS,
        "", ClientOf(c, {}), r.reason().substr(0, 200), &c);
  v1::LogoutEverywhereResponse out;
  out.set_sessions_ended(ended);
  return out;
}

absl::StatusOr<v1::ListSessionsResponse> Core::ListSessions(const Caller& c,
                                                            const v1::ListSessionsRequest&) {
  if (!c.user()) return Unauthenticated();
  ASSIGN_OR_RETURN(auto records, sessions_->List(c.claims.subject));
  v1::ListSessionsResponse out;
  for (const auto& rec : records) {
    auto* s = out.add_sessions();
    s->set_session_id(rec.session_id());
    s->mutable_created_at()->set_seconds(rec.created_at());
    s->mutable_last_used_at()->set_seconds(rec.last_used_at());
    s->mutable_client()->ParseFromString(rec.client());
    for (const auto& a : rec.amr()) s->add_auth_methods(a);
    s->set_current(rec.session_id() == c.claims.session_id);
  }
  out.mutable_page_info()->set_total_size(out.sessions_size());
  return out;
}

absl::StatusOr<v1::RevokeSessionResponse> Core::RevokeSession(const Caller& c,
                                                              const v1::RevokeSessionRequest& r) {
  if (c.anonymous()) return Unauthenticated();
  auto record = sessions_->Get(r.session_id());
  if (!record.ok()) return NotFound("session");
  bool own = c.user() && record->user_id() == c.claims.subject;
  if (!own) {
    absl::Status s = RequireTenantRole(c, record->tenant_id(), true, false);
    if (!s.ok()) return absl::IsPermissionDenied(s) ? s : NotFound("session");
  }
  ASSIGN_OR_RETURN(bool ended, sessions_->End(r.session_id()));
  (void)ended;
  Event(record->tenant_id(), record->user_id(), record->address(),
        v1::AUTH_EVENT_KIND_SESSIONS_REVOKED, v1::AUTH_OUTCOME_SUCCESS, "", ClientOf(c, {}),
        "one session", &c);
  return v1::RevokeSessionResponse();
}

absl::StatusOr<v1::GetPublicKeysResponse> Core::GetPublicKeys(const Caller&,
                                                              const v1::GetPublicKeysRequest&) {
  v1::GetPublicKeysResponse out;
  out.set_issuer(options_.issuer);
  out.set_cache_ttl_seconds(300);
  for (const auto& k : options_.public_keys) {
    auto* pk = out.add_keys();
    pk->set_key_id(k.key_id);
    pk->set_algorithm("EdDSA");
    pk->set_public_key_pem(k.pem);
    pk->set_jwk_json(Ed25519Jwk(k.key_id, k.pem));
  }
  return out;
}

absl::StatusOr<v1::ListAuthEventsResponse> Core::ListAuthEvents(
    const Caller& c, const v1::ListAuthEventsRequest& r) {
  if (c.anonymous()) return Unauthenticated();
  std::string tenant_id = r.tenant_id().empty() ? c.claims.tenant_id : r.tenant_id();
  bool own_only = false;
  absl::Status allowed = RequireTenantRole(c, tenant_id, true, true);
  if (!allowed.ok()) {
    // A plain user may read their own events.
    if (c.full_user() && c.claims.tenant_id == tenant_id && r.user_id() == c.claims.subject) {
      own_only = true;
    } else {
      return allowed;
    }
  }
  int64_t since = r.has_since() ? r.since().seconds() : 0;
  int64_t until = r.has_until() ? r.until().seconds() : 0;
  auto keep = [&](const v1::AuthEvent& e) {
    if ((own_only || !r.user_id().empty()) && e.user_id() != r.user_id()) return false;
    if (r.kinds_size() > 0 &&
        std::find(r.kinds().begin(), r.kinds().end(), e.kind()) == r.kinds().end())
      return false;
    if (r.outcome() != v1::AUTH_OUTCOME_UNSPECIFIED && e.outcome() != r.outcome()) return false;
    if (!r.client_ip().empty() && e.client().ip() != r.client_ip()) return false;
    if (since > 0 && e.at().seconds() < since) return false;
    if (until > 0 && e.at().seconds() >= until) return false;
    return true;
  };
  ASSIGN_OR_RETURN(
      auto page, store_->ListEvents(tenant_id, r.page().page_size(), r.page().page_token(), keep));
  v1::ListAuthEventsResponse out;
  for (auto& e : page.events) *out.add_events() = std::move(e);
  out.mutable_page_info()->set_next_page_token(page.next_page_token);
  out.mutable_page_info()->set_total_size(-1);
  return out;
}

}  // namespace mailgrid::identity
