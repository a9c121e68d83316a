// CredentialService TOTP: enrolment (secret, otpauth URI, QR PNG; active
// only after one valid code), disabling, recovery codes.
#include <sodium.h>

#include "absl/strings/str_cat.h"
#include "libs/base/status.h"
#include "services/identity/core.h"
#include "services/identity/errors.h"
#include "services/identity/qr_png.h"
#include "services/identity/totp.h"

namespace mailgrid::identity {

absl::StatusOr<v1::BeginTotpEnrolmentResponse> Core::BeginTotpEnrolment(
    const Caller& c, const v1::BeginTotpEnrolmentRequest& r) {
  if (!c.user()) return Unauthenticated();
  bool enrolment_scope = c.claims.scope == kScopeEnrolment;
  if (!enrolment_scope && !c.full_user())
    return PermissionDenied("token scope does not allow this");
  const std::string& tid = c.claims.tenant_id;
  const std::string& uid = c.claims.subject;
  ASSIGN_OR_RETURN(auto cred, store_->GetCredential(tid, uid));
  if (!cred.totp_secret().empty())
    return Precondition("ALREADY_ENROLLED", "TOTP is already enabled; disable it first");
  if (!enrolment_scope) RETURN_IF_ERROR(CheckReauth(cred, r.reauth()));
  std::string secret(kTotpSecretBytes, '\0');
  randombytes_buf(secret.data(), secret.size());
  std::string id = absl::StrCat("en-", RandomToken(12));
  absl::Time expires = absl::Now() + options_.enrolment_ttl;
  RETURN_IF_ERROR(store_->Mutate(tid, uid, [&](storage::Credential& cr, bool) {
    cr.set_pending_enrolment_id(id);
    cr.set_pending_totp_secret(secret);
    cr.set_pending_expires_at(absl::ToUnixSeconds(expires));
    return absl::OkStatus();
  }));
  v1::BeginTotpEnrolmentResponse out;
  out.set_enrolment_id(id);
  out.set_secret_base32(Base32Encode(secret));
  out.set_otpauth_uri(OtpauthUri(options_.totp_issuer, c.claims.address, out.secret_base32()));
  ASSIGN_OR_RETURN(*out.mutable_qr_png(), QrPng(out.otpauth_uri()));
  out.mutable_expires_at()->set_seconds(absl::ToUnixSeconds(expires));
  return out;
}

absl::StatusOr<v1::ConfirmTotpEnrolmentResponse> Core::ConfirmTotpEnrolment(
    const Caller& c, const v1::ConfirmTotpEnrolmentRequest& r) {
  if (!c.user()) return Unauthenticated();
  bool enrolment_scope = c.claims.scope == kScopeEnrolment;
  if (!enrolment_scope && !c.full_user())
    return PermissionDenied("token scope does not allow this");
  if (!IsSixDigits(r.code())) return InvalidField("code", "NOT_SIX_DIGITS", "six digits");
  const std::string& tid = c.claims.tenant_id;
  const std::string& uid = c.claims.subject;
  bool unknown = false, wrong = false;
  std::vector<std::string> codes;
  absl::Status s = store_->Mutate(tid, uid, [&](storage::Credential& cred, bool exists) {
    if (!exists || cred.pending_enrolment_id().empty() ||
        cred.pending_enrolment_id() != r.enrolment_id() ||
        absl::FromUnixSeconds(cred.pending_expires_at()) < absl::Now()) {
      unknown = true;
      return absl::CancelledError("unknown enrolment");
    }
    auto step = MatchTotp(cred.pending_totp_secret(), r.code(), absl::Now(), 0);
    if (!step) {
      wrong = true;
      return absl::CancelledError("wrong code");
    }
    cred.set_totp_secret(cred.pending_totp_secret());
    cred.set_totp_last_step(*step);
    cred.clear_pending_enrolment_id();
    cred.clear_pending_totp_secret();
    cred.clear_pending_expires_at();
    codes = NewRecoveryCodes(cred);
    return absl::OkStatus();
  });
  if (!s.ok() && !absl::IsCancelled(s)) return s;
  if (unknown) return NotFound("enrolment");
  if (wrong) return InvalidCredentials();
  common::v1::ClientInfo client = ClientOf(c, {});
  Event(tid, uid, c.claims.address, v1::AUTH_EVENT_KIND_TOTP_ENABLED, v1::AUTH_OUTCOME_SUCCESS,
        "otp", client, "");
  NotifyUser(SecurityEvent::kTotpEnabled, tid, uid, client);
  v1::ConfirmTotpEnrolmentResponse out;
  for (auto& code : codes) out.add_recovery_codes(code);
  if (enrolment_scope) {
    // The login was waiting for this: the enrolment session ends and the
    // full one begins.
    (void)sessions_->End(c.claims.session_id);
    auto principal = directory_->ByUserId(uid);
    if (!principal.ok()) return principal.status();
    std::vector<std::string> amr = c.claims.auth_methods;
    amr.push_back("otp");
    ASSIGN_OR_RETURN(*out.mutable_session(), FullSession(*principal, amr, client));
  } else {
    (void)sessions_->EndOthers(uid, c.claims.session_id);
  }
  return out;
}

absl::StatusOr<v1::DisableTotpResponse> Core::DisableTotp(const Caller& c,
                                                          const v1::DisableTotpRequest& r) {
  ASSIGN_OR_RETURN(Target t, ResolveTarget(c, r.user_id(), true, true, false));
  ASSIGN_OR_RETURN(auto cred, store_->GetCredential(t.tenant_id, t.user_id));
  if (cred.totp_secret().empty()) return Precondition("NOT_ENROLLED", "TOTP is not enabled");
  if (t.self) {
    RETURN_IF_ERROR(CheckReauth(cred, r.reauth()));
    ASSIGN_OR_RETURN(auto policy, store_->GetPolicy(t.tenant_id));
    auto principal = directory_->ByUserId(t.user_id);
    if (principal.ok() && RequiresTwoFactor(policy.first, *principal))
      return Precondition("REQUIRED_BY_POLICY", "your organisation requires two-factor sign-in");
  }
  RETURN_IF_ERROR(store_->Mutate(t.tenant_id, t.user_id, [&](storage::Credential& cr, bool) {
    cr.clear_totp_secret();
    cr.clear_totp_last_step();
    cr.clear_recovery_codes();
    cr.clear_recovery_salt();
    return absl::OkStatus();
  }));
  (void)sessions_->EndOthers(t.user_id, t.self ? c.claims.session_id : "");
  Event(t.tenant_id, t.user_id, "", v1::AUTH_EVENT_KIND_TOTP_DISABLED, v1::AUTH_OUTCOME_SUCCESS, "",
        ClientOf(c, {}), r.reason().substr(0, 200), t.self ? nullptr : &c);
  NotifyUser(SecurityEvent::kTotpDisabled, t.tenant_id, t.user_id, ClientOf(c, {}), !t.self);
  return v1::DisableTotpResponse();
}

absl::StatusOr<v1::RegenerateRecoveryCodesResponse> Core::RegenerateRecoveryCodes(
    const Caller& c, const v1::RegenerateRecoveryCodesRequest& r) {
  ASSIGN_OR_RETURN(Target t, ResolveTarget(c, "", true, false, false));
  ASSIGN_OR_RETURN(auto cred, store_->GetCredential(t.tenant_id, t.user_id));
  if (cred.totp_secret().empty()) return Precondition("NOT_ENROLLED", "TOTP is not enabled");
  RETURN_IF_ERROR(CheckReauth(cred, r.reauth()));
  std::vector<std::string> codes;
  RETURN_IF_ERROR(store_->Mutate(t.tenant_id, t.user_id, [&](storage::Credential& cr, bool) {
    codes = NewRecoveryCodes(cr);
    return absl::OkStatus();
  }));
  // Like every factor change: the user's other sessions end.
  (void)sessions_->EndOthers(t.user_id, c.claims.session_id);
  Event(t.tenant_id, t.user_id, c.claims.address, v1::AUTH_EVENT_KIND_RECOVERY_CODES_REGENERATED,
        v1::AUTH_OUTCOME_SUCCESS, "", ClientOf(c, {}), "");
  NotifyUser(SecurityEvent::kRecoveryCodesRegenerated, t.tenant_id, t.user_id, ClientOf(c, {}));
  v1::RegenerateRecoveryCodesResponse out;
  for (auto& code : codes) out.add_recovery_codes(code);
  return out;
}

}  // namespace mailgrid::identity
