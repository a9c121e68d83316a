// AuthService.CheckSasl: what relayd (submission) and accessd (IMAP/POP3)
// ask after decoding a SASL exchange. PLAIN/LOGIN carry a password or an
// app password; XOAUTH2/OAUTHBEARER carry one of our access tokens.
//
// App passwords are checked first and cheaply (SHA-256 of 75 random bits:
// no slow hash is needed, so a mail client polling every minute costs
// microseconds); the account password is accepted only for users without
// TOTP, outside mandatory SSO, and not waiting for a password change.
// Every failure is the uniform UNAUTHENTICATED, counted by the throttle.
#include <openssl/crypto.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "services/identity/core.h"
#include "services/identity/errors.h"

namespace mailgrid::identity {

std::string AppPasswordHash(const std::string& user_id, std::string_view password) {
  std::string normal;
  for (char ch : password)
    if (ch != ' ') normal.push_back(absl::ascii_tolower(static_cast<unsigned char>(ch)));
  return Sha256(absl::StrCat(user_id, std::string(1, '\0'), normal));
}

namespace {

bool ProtocolAllowed(const storage::AppPasswordRecord& ap, common::v1::Protocol protocol) {
  if (ap.protocols_size() == 0) return true;
  for (int p : ap.protocols())
    if (p == protocol) return true;
  return false;
}

bool SameBytes(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

absl::StatusOr<v1::CheckSaslResponse> Core::CheckSasl(const Caller& c,
                                                      const v1::CheckSaslRequest& r) {
  if (!c.service()) return c.anonymous() ? Unauthenticated() : PermissionDenied("service-internal");
  common::v1::ClientInfo client = ClientOf(c, r.client());
  if (client.protocol() == common::v1::PROTOCOL_UNSPECIFIED) client.set_protocol(r.protocol());
  v1::CheckSaslResponse out;
  tenant::v1::Principal principal;
  std::vector<std::string> amr;
  std::string method;

  switch (r.mechanism()) {
    case v1::SASL_MECHANISM_PLAIN:
    case v1::SASL_MECHANISM_LOGIN: {
      if (r.authcid().size() > kMaxAddressBytes)
        return InvalidField("authcid", "TOO_LONG", "at most 320 bytes");
      RETURN_IF_ERROR(CheckPresentedPassword(r.password(), "password"));
      const std::string& address = r.authcid();
      RETURN_IF_ERROR(throttle_->Check(address, client.ip()));
      ASSIGN_OR_RETURN(auto found, LookupAddress(address));
      std::optional<storage::Credential> cred;
      uint64_t seen = 0;  // the state the credential read saw; the policy read is as fresh
      if (found) {
        auto got = store_->GetCredential(found->user().tenant_id(), found->user().user_id(), &seen);
        if (got.ok())
          cred = *std::move(got);
        else if (!absl::IsNotFound(got.status()))
          return got.status();
      }
      std::string tid = found ? found->user().tenant_id() : "";
      std::string uid = found ? found->user().user_id() : "";
      bool ok = false;
      const storage::AppPasswordRecord* app = nullptr;
      v1::PasswordPolicy policy;
      if (cred) {
        ASSIGN_OR_RETURN(auto p, store_->GetPolicy(tid, seen));
        policy = p.first;
        std::string hash = AppPasswordHash(uid, r.password());
        for (const auto& ap : cred->app_passwords())
          if (SameBytes(ap.hash(), hash) && ProtocolAllowed(ap, r.protocol())) app = &ap;
        if (app != nullptr) {
          ok = !policy.sso_mandatory() || policy.allow_app_passwords_under_sso();
        } else {
          bool password_allowed = cred->totp_secret().empty() && !policy.sso_mandatory() &&
                                  !cred->must_change() && !cred->password_phc().empty();
          ok = hasher_->Verify(cred->password_phc(), r.password()) && password_allowed;
        }
      } else {
        hasher_->EqualWork(r.password());
      }
      if (ok && !r.authzid().empty() &&
          absl::AsciiStrToLower(r.authzid()) != absl::AsciiStrToLower(address) &&
          absl::AsciiStrToLower(r.authzid()) != absl::AsciiStrToLower(found->user().address()))
        ok = false;  // no proxy authorization in v1
      if (!ok || !Usable(*found)) {
        ASSIGN_OR_RETURN(bool locked, throttle_->RecordFailure(address, client.ip(), tid, uid));
        Event(tid, uid, address, v1::AUTH_EVENT_KIND_LOGIN, v1::AUTH_OUTCOME_FAILURE,
              app ? "app" : "pwd", client, "sasl failed");
        if (locked)
          Event(tid, uid, address, v1::AUTH_EVENT_KIND_LOCKOUT, v1::AUTH_OUTCOME_THROTTLED, "pwd",
                client, "too many failures");
        return InvalidCredentials();
      }
      (void)throttle_->RecordSuccess(address, tid, uid);
      principal = *found;
      if (app != nullptr) {
        out.set_credential(v1::CREDENTIAL_KIND_APP_PASSWORD);
        out.set_app_password_id(app->id());
        method = "app";
        // last_used is informational: written at most once a minute, so a
        // client polling IMAP does not turn into a replicated write each time.
        int64_t now = absl::ToUnixSeconds(absl::Now());
        if (now - app->last_used_at() >= 60) {
          std::string id = app->id(), ip = client.ip();
          (void)store_->Mutate(tid, uid, [&](storage::Credential& cr, bool) {
            for (auto& ap : *cr.mutable_app_passwords())
              if (ap.id() == id) {
                ap.set_last_used_at(now);
                ap.set_last_used_ip(ip);
              }
            return absl::OkStatus();
          });
        }
      } else {
        out.set_credential(v1::CREDENTIAL_KIND_PASSWORD);
        method = "pwd";
      }
      break;
    }
    case v1::SASL_MECHANISM_XOAUTH2:
    case v1::SASL_MECHANISM_OAUTHBEARER: {
      auto bearer = AuthenticateBearer(r.bearer_token(), client.ip());
      if (!bearer.ok() || !bearer->user() ||
          (bearer->claims.scope != kScopeFull && bearer->claims.scope != kScopeMail &&
           !bearer->claims.scope.empty()))
        return InvalidCredentials();
      const auth::Claims& claims = bearer->claims;
      for (const std::string* id : {&r.authcid(), &r.authzid()})
        if (!id->empty() && absl::AsciiStrToLower(*id) != absl::AsciiStrToLower(claims.address))
          return InvalidCredentials();
      auto found = directory_->ByUserId(claims.subject);
      if (!found.ok() && !absl::IsNotFound(found.status())) return found.status();
      if (!found.ok() || !Usable(*found)) return InvalidCredentials();
      principal = *found;
      out.set_credential(v1::CREDENTIAL_KIND_BEARER_TOKEN);
      method = "bearer";
      break;
    }
    default:
      return InvalidField("mechanism", "UNSUPPORTED", "PLAIN, LOGIN, XOAUTH2 or OAUTHBEARER");
  }
  out.set_tenant_id(principal.user().tenant_id());
  out.set_user_id(principal.user().user_id());
  out.set_address(principal.user().address());
  for (int role : principal.user().roles()) out.add_roles(static_cast<common::v1::Role>(role));
  *out.mutable_mailboxes() = principal.mailboxes();
  if (r.issue_session()) {
    ASSIGN_OR_RETURN(*out.mutable_session(), FullSession(principal, {method}, client, kScopeMail));
  }
  Event(out.tenant_id(), out.user_id(), r.authcid(), v1::AUTH_EVENT_KIND_LOGIN,
        v1::AUTH_OUTCOME_SUCCESS, method, client, "sasl");
  return out;
}

}  // namespace mailgrid::identity
