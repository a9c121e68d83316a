// The logic of identityd's three gRPC services (AuthService,
// CredentialService, SsoService), one method per RPC, over its parts:
// the durable store (credentials, policy, SSO, events), the directory
// (tenantd), the password hasher, sessions and the throttle (Redis).
// services.cc adapts these methods to gRPC; tests call them directly.
//
// SECURITY (auth.proto "uniform failure"): every credential failure is the
// same InvalidCredentials() after the same work (an argon2id verify is
// done for unknown users too), throttling is by address string and IP
// before any password is checked, and nothing tells whether an address
// exists. The caller's identity comes only from the bearer token (Caller).
//
// Implementation files by topic: core.cc (helpers, the sign-in steps),
// login.cc, sasl.cc, credentials.cc, totp_rpcs.cc, reset.cc, qr_login.cc,
// sso.cc.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/server_context.h"
#include "libs/auth/token.h"
#include "mailgrid/identity/v1/auth.pb.h"
#include "mailgrid/identity/v1/credential.pb.h"
#include "mailgrid/identity/v1/sso.pb.h"
#include "services/identity/directory.h"
#include "services/identity/notices.h"
#include "services/identity/oidc.h"
#include "services/identity/password.h"
#include "services/identity/policy.h"
#include "services/identity/sessions.h"
#include "services/identity/store.h"
#include "services/identity/throttle.h"

namespace mailgrid::identity {

struct Caller {
  enum class Kind { kAnonymous, kUser, kService };
  Kind kind = Kind::kAnonymous;
  auth::Claims claims;
  std::string peer_ip;

  bool anonymous() const { return kind == Kind::kAnonymous; }
  bool service() const { return kind == Kind::kService; }
  bool user() const { return kind == Kind::kUser; }
  // A user token of TOKEN_SCOPE_FULL.
  bool full_user() const { return user() && (claims.scope.empty() || claims.scope == kScopeFull); }
  bool HasRole(std::string_view role) const { return claims.HasRole(role); }
  bool platform_operator() const { return user() && HasRole(auth::kRolePlatformOperator); }
  common::v1::Actor ToActor() const;
};

struct PublicKeyInfo {
  std::string key_id, pem;
};

struct CoreOptions {
  std::string issuer = "mailgrid";
  // The name authenticator apps show, and the host in QR login URIs.
  std::string totp_issuer = "mailgrid";
  std::string qr_host = "mailgrid";
  absl::Duration challenge_ttl = absl::Minutes(5);
  absl::Duration change_ticket_ttl = absl::Minutes(10);
  absl::Duration enrolment_ttl = absl::Minutes(10);
  absl::Duration reset_ttl = absl::Minutes(30);
  absl::Duration qr_ttl = absl::Minutes(2);
  absl::Duration sso_state_ttl = absl::Minutes(10);
  // Delivery of reset tokens to the user's recovery email and of security
  // notices (through relayd); null: not configured, the token is only
  // logged as issued (never its value) and no notice is sent.
  // MAILGRID_TEST_HOOKS builds may also set a sink tests read.
  Notices* notices = nullptr;
  std::function<void(const std::string& address, const std::string& token)> reset_token_sink;
  std::vector<PublicKeyInfo> public_keys;
};

class Core {
 public:
  Core(IdentityStore* store, Directory* directory, PasswordHasher* hasher, SessionManager* sessions,
       Throttler* throttle, redis::Client* redis, CommonPasswords common,
       const auth::TokenVerifier* verifier, CoreOptions options);

  // Anonymous without authorization metadata; UNAUTHENTICATED for a bad,
  // expired or revoked token.
  absl::StatusOr<Caller> Authenticate(const grpc::ServerContext& ctx);
  absl::StatusOr<Caller> AuthenticateBearer(std::string_view token, std::string peer_ip);

  // ---- AuthService ----
  absl::StatusOr<v1::LoginResult> Login(const Caller& c, const v1::LoginRequest& r);
  absl::StatusOr<v1::LoginResult> CompleteSecondFactor(const Caller& c,
                                                       const v1::CompleteSecondFactorRequest& r);
  absl::StatusOr<v1::LoginResult> ChangePassword(const Caller& c,
                                                 const v1::ChangePasswordRequest& r);
  absl::StatusOr<v1::Session> RefreshToken(const Caller& c, const v1::RefreshTokenRequest& r);
  absl::StatusOr<v1::LogoutResponse> Logout(const Caller& c, const v1::LogoutRequest& r);
  absl::StatusOr<v1::LogoutEverywhereResponse> LogoutEverywhere(
      const Caller& c, const v1::LogoutEverywhereRequest& r);
  absl::StatusOr<v1::ListSessionsResponse> ListSessions(const Caller& c,
                                                        const v1::ListSessionsRequest& r);
  absl::StatusOr<v1::RevokeSessionResponse> RevokeSession(const Caller& c,
                                                          const v1::RevokeSessionRequest& r);
  absl::StatusOr<v1::CheckSaslResponse> CheckSasl(const Caller& c, const v1::CheckSaslRequest& r);
  absl::StatusOr<v1::GetPublicKeysResponse> GetPublicKeys(const Caller& c,
                                                          const v1::GetPublicKeysRequest& r);
  absl::StatusOr<v1::QrLoginTicket> CreateQrLoginTicket(const Caller& c,
                                                        const v1::CreateQrLoginTicketRequest& r);
  absl::StatusOr<v1::QrLoginTicketInfo> GetQrLoginTicket(const Caller& c,
                                                         const v1::GetQrLoginTicketRequest& r);
  absl::StatusOr<v1::ApproveQrLoginTicketResponse> ApproveQrLoginTicket(
      const Caller& c, const v1::ApproveQrLoginTicketRequest& r);
  // One look at the ticket (the stream repeats it until a final state).
  absl::StatusOr<v1::RedeemQrLoginTicketResponse> RedeemQrLoginTicketOnce(
      const Caller& c, const v1::RedeemQrLoginTicketRequest& r);
  absl::StatusOr<v1::RequestPasswordResetResponse> RequestPasswordReset(
      const Caller& c, const v1::RequestPasswordResetRequest& r);
  absl::StatusOr<v1::PasswordResetRequirements> GetPasswordResetRequirements(
      const Caller& c, const v1::GetPasswordResetRequirementsRequest& r);
  absl::StatusOr<v1::ResetPasswordResponse> ResetPassword(const Caller& c,
                                                          const v1::ResetPasswordRequest& r);
  absl::StatusOr<v1::ListAuthEventsResponse> ListAuthEvents(const Caller& c,
                                                            const v1::ListAuthEventsRequest& r);

  // ---- CredentialService ----
  absl::StatusOr<v1::SetInitialPasswordResponse> SetInitialPassword(
      const Caller& c, const v1::SetInitialPasswordRequest& r);
  absl::StatusOr<v1::DeleteCredentialsResponse> DeleteCredentials(
      const Caller& c, const v1::DeleteCredentialsRequest& r);
  absl::StatusOr<v1::NotifyRecoveryEmailChangedResponse> NotifyRecoveryEmailChanged(
      const Caller& c, const v1::NotifyRecoveryEmailChangedRequest& r);
  absl::StatusOr<v1::AdminResetPasswordResponse> AdminResetPassword(
      const Caller& c, const v1::AdminResetPasswordRequest& r);
  absl::StatusOr<v1::CredentialStatus> GetCredentialStatus(const Caller& c,
                                                           const v1::GetCredentialStatusRequest& r);
  absl::StatusOr<v1::PasswordPolicy> GetPasswordPolicy(const Caller& c,
                                                       const v1::GetPasswordPolicyRequest& r);
  absl::StatusOr<v1::PasswordPolicy> SetPasswordPolicy(const Caller& c,
                                                       const v1::SetPasswordPolicyRequest& r);
  absl::StatusOr<v1::BeginTotpEnrolmentResponse> BeginTotpEnrolment(
      const Caller& c, const v1::BeginTotpEnrolmentRequest& r);
  absl::StatusOr<v1::ConfirmTotpEnrolmentResponse> ConfirmTotpEnrolment(
      const Caller& c, const v1::ConfirmTotpEnrolmentRequest& r);
  absl::StatusOr<v1::DisableTotpResponse> DisableTotp(const Caller& c,
                                                      const v1::DisableTotpRequest& r);
  absl::StatusOr<v1::RegenerateRecoveryCodesResponse> RegenerateRecoveryCodes(
      const Caller& c, const v1::RegenerateRecoveryCodesRequest& r);
  absl::StatusOr<v1::SetSecurityQuestionsResponse> SetSecurityQuestions(
      const Caller& c, const v1::SetSecurityQuestionsRequest& r);
  absl::StatusOr<v1::GetSecurityQuestionsResponse> GetSecurityQuestions(
      const Caller& c, const v1::GetSecurityQuestionsRequest& r);
  absl::StatusOr<v1::CreateAppPasswordResponse> CreateAppPassword(
      const Caller& c, const v1::CreateAppPasswordRequest& r);
  absl::StatusOr<v1::ListAppPasswordsResponse> ListAppPasswords(
      const Caller& c, const v1::ListAppPasswordsRequest& r);
  absl::StatusOr<v1::RevokeAppPasswordResponse> RevokeAppPassword(
      const Caller& c, const v1::RevokeAppPasswordRequest& r);
  absl::StatusOr<v1::UnlockAccountResponse> UnlockAccount(const Caller& c,
                                                          const v1::UnlockAccountRequest& r);
  absl::StatusOr<v1::ListLockoutsResponse> ListLockouts(const Caller& c,
                                                        const v1::ListLockoutsRequest& r);

  // ---- SsoService ----
  absl::StatusOr<v1::OidcConfig> SetOidcConfig(const Caller& c, const v1::SetOidcConfigRequest& r);
  absl::StatusOr<v1::OidcConfig> GetOidcConfig(const Caller& c, const v1::GetOidcConfigRequest& r);
  absl::StatusOr<v1::DeleteOidcConfigResponse> DeleteOidcConfig(
      const Caller& c, const v1::DeleteOidcConfigRequest& r);
  absl::StatusOr<v1::BeginSsoLoginResponse> BeginSsoLogin(const Caller& c,
                                                          const v1::BeginSsoLoginRequest& r);
  absl::StatusOr<v1::LoginResult> CompleteSsoLogin(const Caller& c,
                                                   const v1::CompleteSsoLoginRequest& r);

  const CoreOptions& options() const { return options_; }

 private:
  // The sign-in steps after the credential step (auth.proto file comment).
  enum class Step { kSecondFactor = 2, kPasswordChange = 3, kEnrolment = 4 };
  absl::StatusOr<v1::LoginResult> Continue(const tenant::v1::Principal& p,
                                           const storage::Credential& cred,
                                           std::vector<std::string> amr,
                                           const common::v1::ClientInfo& client, Step from);
  absl::StatusOr<v1::Session> FullSession(const tenant::v1::Principal& p,
                                          std::vector<std::string> amr,
                                          const common::v1::ClientInfo& client,
                                          std::string scope = kScopeFull);
  // The principal, if it may sign in now (ACTIVE user of an ACTIVE tenant).
  static bool Usable(const tenant::v1::Principal& p);

  // The end client: the request's ClientInfo from service callers (front
  // ends), otherwise the peer address we see.
  common::v1::ClientInfo ClientOf(const Caller& c, const common::v1::ClientInfo& given) const;

  // The tenant of `user_id` (empty: the caller) if the caller may act on
  // it: itself (allow_self), a tenant admin/auditor of its tenant, or a
  // service. NOT_FOUND for other tenants' users.
  struct Target {
    std::string tenant_id, user_id;
    bool self = false;
  };
  absl::StatusOr<Target> ResolveTarget(const Caller& c, const std::string& user_id, bool allow_self,
                                       bool allow_admin, bool allow_auditor);
  absl::Status RequireTenantRole(const Caller& c, const std::string& tenant_id, bool admin,
                                 bool auditor);

  // Sets a new password after the policy, same-as-old and history checks.
  absl::Status CheckAgainstHistory(const storage::Credential& cred,
                                   const v1::PasswordPolicy& policy, const std::string& password,
                                   std::string_view field);
  absl::Status StorePassword(const std::string& tenant_id, const std::string& user_id,
                             const std::string& phc, bool must_change,
                             v1::PasswordChangeReason reason, uint32_t history_count);
  // Reauth for self-service factor changes.
  absl::Status CheckReauth(const storage::Credential& cred, const v1::Reauth& reauth);
  // TOTP / recovery code against the stored credential, consuming it.
  absl::StatusOr<bool> UseTotp(const std::string& tenant_id, const std::string& user_id,
                               const std::string& code, const common::v1::ClientInfo& client);
  absl::StatusOr<bool> UseRecoveryCode(const std::string& tenant_id, const std::string& user_id,
                                       const std::string& code);
  std::vector<std::string> NewRecoveryCodes(storage::Credential& cred);

  absl::StatusOr<std::optional<tenant::v1::Principal>> LookupAddress(const std::string& address);
  bool RequiresTwoFactor(const v1::PasswordPolicy& policy, const tenant::v1::Principal& p) const;

  // Tells the user that a factor changed (notices.h): queued for the
  // notices worker, so the RPC never waits; a refusal is logged, never
  // returned. `by_admin`: an administrator made the change, not the user.
  void NotifyUser(SecurityEvent event, const std::string& tenant_id, const std::string& user_id,
                  const common::v1::ClientInfo& client, bool by_admin = false,
                  const std::string& detail = "");
  // Queues a prepared notice (NotifyUser's last step); the queue's refusal
  // is returned (and logged).
  absl::Status QueueNotice(SecurityNotice notice);
  // Records an auth event (best effort: a failed write is logged).
  void Event(const std::string& tenant_id, const std::string& user_id, const std::string& address,
             v1::AuthEventKind kind, v1::AuthOutcome outcome, const std::string& method,
             const common::v1::ClientInfo& client, const std::string& detail,
             const Caller* actor = nullptr);
  // Redis one-time records.
  absl::Status PutPending(const std::string& key, const google::protobuf::Message& m,
                          absl::Duration ttl);
  absl::StatusOr<bool> GetPending(const std::string& key, google::protobuf::Message* m);

  // The tenant's provider keys: inline, or fetched (discovery) and cached.
  absl::StatusOr<Jwks> JwksFor(const v1::OidcConfig& config, bool refetch);
  // Fetches discovery (filling endpoints) and the JWKS it names.
  absl::StatusOr<std::string> FetchJwks(v1::OidcConfig& config);

  IdentityStore* store_;
  Directory* directory_;
  PasswordHasher* hasher_;
  SessionManager* sessions_;
  Throttler* throttle_;
  redis::Client* redis_;
  CommonPasswords common_;
  const auth::TokenVerifier* verifier_;
  CoreOptions options_;
  absl::Mutex jwks_mu_;
  std::map<std::string, std::string> jwks_cache_ ABSL_GUARDED_BY(jwks_mu_);  // tenant -> JWKS JSON
};

}  // namespace mailgrid::identity
