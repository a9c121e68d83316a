// AuthService password reset ("forgot password"): a single-use 256-bit
// token, valid 30 minutes, for the user's recovery email; then a new
// password with two factors (auth.proto ResetPassword). Answers are the
// same for unknown addresses.
//
// Delivery: the token is mailed to the user's recovery email through
// relayd (notices.h); MAILGRID_TEST_HOOKS builds may also hand it to
// CoreOptions::reset_token_sink for tests. Logs never carry the token.
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "services/identity/core.h"
#include "services/identity/errors.h"
#include "services/identity/totp.h"

namespace mailgrid::identity {

bool SecurityAnswersMatch(PasswordHasher* hasher, const storage::Credential& cred,
                          const google::protobuf::RepeatedPtrField<std::string>& answers);

namespace {
std::string ResetKey(const std::string& token) {
  return absl::StrCat("mg:id:rst:", absl::BytesToHexString(Sha256(token)));
}
}  // namespace

absl::StatusOr<v1::RequestPasswordResetResponse> Core::RequestPasswordReset(
    const Caller& c, const v1::RequestPasswordResetRequest& r) {
  common::v1::ClientInfo client = ClientOf(c, r.client());
  if (r.address().size() > kMaxAddressBytes)
    return InvalidField("address", "TOO_LONG", "at most 320 bytes");
  RETURN_IF_ERROR(throttle_->Check(r.address(), client.ip()));
  // At most 5 reset mails per address per hour (counted for unknown ones too).
  ASSIGN_OR_RETURN(
      int64_t n,
      redis_->IncrWithTtl(absl::StrCat("mg:id:rr:", ThrottleKeyOf(r.address())), absl::Hours(1)));
  if (n > 5) return Throttled(absl::Now() + absl::Hours(1));
  ASSIGN_OR_RETURN(auto principal, LookupAddress(r.address()));
  if (!principal || !Usable(*principal)) return v1::RequestPasswordResetResponse();
  const auto& u = principal->user();
  auto cred = store_->GetCredential(u.tenant_id(), u.user_id());
  if (!cred.ok()) return v1::RequestPasswordResetResponse();
  std::string token = RandomToken(32);  // 256 bits
  storage::ResetTicket ticket;
  ticket.set_tenant_id(u.tenant_id());
  ticket.set_user_id(u.user_id());
  ticket.set_address(u.address());
  RETURN_IF_ERROR(PutPending(ResetKey(token), ticket, options_.reset_ttl));
  if (options_.reset_token_sink) options_.reset_token_sink(u.address(), token);
  if (options_.notices == nullptr || u.recovery_email().empty()) {
    log::Warn("password reset token issued but not mailed (no relayd or no recovery email)",
              {{"user_id", u.user_id()}});
  } else if (absl::Status sent = options_.notices->SendPasswordReset(u, token, options_.reset_ttl);
             !sent.ok()) {
    // Same answer to the caller either way: delivery problems reveal nothing.
    log::Warn("password reset mail not sent", {{"user_id", u.user_id()}, {"error", sent.ToString()}});
  }
  Event(u.tenant_id(), u.user_id(), r.address(), v1::AUTH_EVENT_KIND_PASSWORD_RESET_REQUESTED,
        v1::AUTH_OUTCOME_SUCCESS, "", client, "");
  return v1::RequestPasswordResetResponse();
}

absl::StatusOr<v1::PasswordResetRequirements> Core::GetPasswordResetRequirements(
    const Caller&, const v1::GetPasswordResetRequirementsRequest& r) {
  v1::PasswordResetRequirements out;
  if (r.address().size() > kMaxAddressBytes)
    return InvalidField("address", "TOO_LONG", "at most 320 bytes");
  ASSIGN_OR_RETURN(auto principal, LookupAddress(r.address()));
  std::optional<storage::Credential> cred;
  if (principal) {
    auto got = store_->GetCredential(principal->user().tenant_id(), principal->user().user_id());
    if (got.ok()) cred = *std::move(got);
  }
  if (!cred) {
    // Plausible and stable for an address, so it tells nothing.
    out.set_second_factor_required((Sha256(ThrottleKeyOf(r.address()))[0] & 3) == 0);
    return out;
  }
  ASSIGN_OR_RETURN(auto policy, store_->GetPolicy(cred->tenant_id()));
  if (policy.first.security_questions_enabled())
    for (const auto& a : cred->security_answers()) out.add_security_questions(a.question());
  out.set_second_factor_required(!cred->totp_secret().empty());
  return out;
}

absl::StatusOr<v1::ResetPasswordResponse> Core::ResetPassword(const Caller& c,
                                                              const v1::ResetPasswordRequest& r) {
  common::v1::ClientInfo client = ClientOf(c, r.client());
  if (r.address().size() > kMaxAddressBytes)
    return InvalidField("address", "TOO_LONG", "at most 320 bytes");
  if (!r.totp_code().empty() && !IsSixDigits(r.totp_code()))
    return InvalidField("totp_code", "NOT_SIX_DIGITS", "six digits");
  RETURN_IF_ERROR(throttle_->Check(r.address(), client.ip()));
  ASSIGN_OR_RETURN(auto principal, LookupAddress(r.address()));
  std::optional<storage::Credential> cred;
  if (principal && Usable(*principal)) {
    auto got = store_->GetCredential(principal->user().tenant_id(), principal->user().user_id());
    if (got.ok()) cred = *std::move(got);
  }
  auto fail = [&](const std::string& why) -> absl::Status {
    std::string tid = cred ? cred->tenant_id() : "", uid = cred ? cred->user_id() : "";
    auto locked = throttle_->RecordFailure(r.address(), client.ip(), tid, uid);
    (void)locked;
    Event(tid, uid, r.address(), v1::AUTH_EVENT_KIND_PASSWORD_RESET, v1::AUTH_OUTCOME_FAILURE, "",
          client, why);
    return InvalidCredentials();
  };
  // The new password is checked first, for unknown users too (against
  // the default policy), so the order of answers reveals nothing.
  std::pair<v1::PasswordPolicy, uint64_t> policy;
  if (cred) {
    ASSIGN_OR_RETURN(policy, store_->GetPolicy(cred->tenant_id()));
  }
  RETURN_IF_ERROR(CheckNewPassword(policy.first, r.new_password(), common_, "new_password"));
  if (!cred) {
    hasher_->EqualWork(r.new_password());
    return fail("unknown or inactive user");
  }
  const std::string tid = cred->tenant_id(), uid = cred->user_id();

  // The factors.
  bool token_ok = false;
  std::string token_key;
  if (!r.reset_token().empty() && r.reset_token().size() <= 128) {
    token_key = ResetKey(r.reset_token());
    storage::ResetTicket ticket;
    ASSIGN_OR_RETURN(bool found, GetPending(token_key, &ticket));
    token_ok = found && ticket.user_id() == uid;
  }
  bool otp_ok = false;
  if (!cred->totp_secret().empty()) {
    if (!r.totp_code().empty()) {
      ASSIGN_OR_RETURN(otp_ok, UseTotp(tid, uid, r.totp_code(), client));
    } else if (!r.recovery_code().empty()) {
      ASSIGN_OR_RETURN(otp_ok, UseRecoveryCode(tid, uid, r.recovery_code()));
    }
  }
  bool answers_ok = policy.first.security_questions_enabled() && r.security_answers_size() > 0 &&
                    SecurityAnswersMatch(hasher_, *cred, r.security_answers());
  bool has_totp = !cred->totp_secret().empty();
  // Token (+ second factor when TOTP is on), or answers + one more factor.
  // Security answers alone never suffice.
  bool allowed = (token_ok && (!has_totp || otp_ok)) || (answers_ok && (token_ok || otp_ok));
  if (!allowed) return fail("factors did not check out");
  // Only now (the factors checked out) may the answer reveal history.
  RETURN_IF_ERROR(CheckAgainstHistory(*cred, policy.first, r.new_password(), "new_password"));
  if (token_ok) {
    // Single use: only the caller that deletes the token goes on.
    ASSIGN_OR_RETURN(bool deleted, redis_->Del(token_key));
    if (!deleted) return fail("token already used");
  }
  ASSIGN_OR_RETURN(std::string phc, hasher_->Hash(r.new_password()));
  RETURN_IF_ERROR(StorePassword(tid, uid, phc, false, v1::PASSWORD_CHANGE_REASON_UNSPECIFIED,
                                policy.first.history_count()));
  ASSIGN_OR_RETURN(int64_t ended, sessions_->EndAll(uid));
  (void)throttle_->Unlock(r.address(), tid, uid);
  Event(tid, uid, r.address(), v1::AUTH_EVENT_KIND_PASSWORD_RESET, v1::AUTH_OUTCOME_SUCCESS,
        token_ok ? "token" : "questions", client, absl::StrCat(ended, " sessions ended"));
  NotifyUser(SecurityEvent::kPasswordReset, tid, uid, client, false,
             token_ok ? "reset token" : "security questions");
  return v1::ResetPasswordResponse();
}

}  // namespace mailgrid::identity
