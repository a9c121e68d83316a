#include "services/identity/services.h"

#include <functional>

#include "libs/base/log.h"
#include "libs/base/status.h"
#include "services/identity/errors.h"

namespace mailgrid::identity {
namespace {

grpc::Status Serve(Core* core, grpc::ServerContext* ctx, const char* rpc,
                   const std::function<absl::Status(const Caller&)>& body) {
  auto caller = core->Authenticate(*ctx);
  absl::Status s = caller.ok() ? body(*caller) : caller.status();
  if (!s.ok() &&
      (absl::IsInternal(s) || absl::IsUnavailable(s) || absl::IsDataLoss(s) || absl::IsUnknown(s)))
    log::Warn("rpc failed", {{"rpc", rpc}, {"status", s}});
  return ToGrpcStatus(s);
}

#define MG_RPC(Rpc, Req, Resp)                                                              \
  grpc::Status Rpc(grpc::ServerContext* ctx, const v1::Req* req, v1::Resp* resp) override { \
    return Serve(core_, ctx, #Rpc, [&](const Caller& c) -> absl::Status {                   \
      ASSIGN_OR_RETURN(*resp, core_->Rpc(c, *req));                                         \
      return absl::OkStatus();                                                              \
    });                                                                                     \
  }

class AuthServiceImpl final : public v1::AuthService::Service {
 public:
  explicit AuthServiceImpl(Core* core) : core_(core) {}
  MG_RPC(Login, LoginRequest, LoginResult)
  MG_RPC(CompleteSecondFactor, CompleteSecondFactorRequest, LoginResult)
  MG_RPC(ChangePassword, ChangePasswordRequest, LoginResult)
  MG_RPC(RefreshToken, RefreshTokenRequest, Session)
  MG_RPC(Logout, LogoutRequest, LogoutResponse)
  MG_RPC(LogoutEverywhere, LogoutEverywhereRequest, LogoutEverywhereResponse)
  MG_RPC(ListSessions, ListSessionsRequest, ListSessionsResponse)
  MG_RPC(RevokeSession, RevokeSessionRequest, RevokeSessionResponse)
  MG_RPC(CheckSasl, CheckSaslRequest, CheckSaslResponse)
  MG_RPC(GetPublicKeys, GetPublicKeysRequest, GetPublicKeysResponse)
  MG_RPC(CreateQrLoginTicket, CreateQrLoginTicketRequest, QrLoginTicket)
  MG_RPC(GetQrLoginTicket, GetQrLoginTicketRequest, QrLoginTicketInfo)
  MG_RPC(ApproveQrLoginTicket, ApproveQrLoginTicketRequest, ApproveQrLoginTicketResponse)
  MG_RPC(RequestPasswordReset, RequestPasswordResetRequest, RequestPasswordResetResponse)
  MG_RPC(GetPasswordResetRequirements, GetPasswordResetRequirementsRequest,
         PasswordResetRequirements)
  MG_RPC(ResetPassword, ResetPasswordRequest, ResetPasswordResponse)
  MG_RPC(ListAuthEvents, ListAuthEventsRequest, ListAuthEventsResponse)

  // Streams the ticket's state on every change until a final state (or
  // once with `poll`).
  grpc::Status RedeemQrLoginTicket(
      grpc::ServerContext* ctx, const v1::RedeemQrLoginTicketRequest* req,
      grpc::ServerWriter<v1::RedeemQrLoginTicketResponse>* writer) override {
    return Serve(core_, ctx, "RedeemQrLoginTicket", [&](const Caller& c) -> absl::Status {
      v1::QrTicketState last = v1::QR_TICKET_STATE_UNSPECIFIED;
      for (;;) {
        ASSIGN_OR_RETURN(auto resp, core_->RedeemQrLoginTicketOnce(c, *req));
        bool final_state = resp.state() != v1::QR_TICKET_STATE_PENDING;
        if (resp.state() != last || final_state) {
          if (!writer->Write(resp)) return absl::CancelledError("client went away");
          last = resp.state();
        }
        if (final_state || req->poll()) return absl::OkStatus();
        if (ctx->IsCancelled()) return absl::CancelledError("client went away");
        absl::SleepFor(absl::Milliseconds(250));
      }
    });
  }

 private:
  Core* core_;
};

class CredentialServiceImpl final : public v1::CredentialService::Service {
 public:
  explicit CredentialServiceImpl(Core* core) : core_(core) {}
  MG_RPC(SetInitialPassword, SetInitialPasswordRequest, SetInitialPasswordResponse)
  MG_RPC(DeleteCredentials, DeleteCredentialsRequest, DeleteCredentialsResponse)
  MG_RPC(NotifyRecoveryEmailChanged, NotifyRecoveryEmailChangedRequest,
         NotifyRecoveryEmailChangedResponse)
  MG_RPC(AdminResetPassword, AdminResetPasswordRequest, AdminResetPasswordResponse)
  MG_RPC(GetCredentialStatus, GetCredentialStatusRequest, CredentialStatus)
  MG_RPC(GetPasswordPolicy, GetPasswordPolicyRequest, PasswordPolicy)
  MG_RPC(SetPasswordPolicy, SetPasswordPolicyRequest, PasswordPolicy)
  MG_RPC(BeginTotpEnrolment, BeginTotpEnrolmentRequest, BeginTotpEnrolmentResponse)
  MG_RPC(ConfirmTotpEnrolment, ConfirmTotpEnrolmentRequest, ConfirmTotpEnrolmentResponse)
  MG_RPC(DisableTotp, DisableTotpRequest, DisableTotpResponse)
  MG_RPC(RegenerateRecoveryCodes, RegenerateRecoveryCodesRequest, RegenerateRecoveryCodesResponse)
  MG_RPC(SetSecurityQuestions, SetSecurityQuestionsRequest, SetSecurityQuestionsResponse)
  MG_RPC(GetSecurityQuestions, GetSecurityQuestionsRequest, GetSecurityQuestionsResponse)
  MG_RPC(CreateAppPassword, CreateAppPasswordRequest, CreateAppPasswordResponse)
  MG_RPC(ListAppPasswords, ListAppPasswordsRequest, ListAppPasswordsResponse)
  MG_RPC(RevokeAppPassword, RevokeAppPasswordRequest, RevokeAppPasswordResponse)
  MG_RPC(UnlockAccount, UnlockAccountRequest, UnlockAccountResponse)
  MG_RPC(ListLockouts, ListLockoutsRequest, ListLockoutsResponse)

 private:
  Core* core_;
};

class SsoServiceImpl final : public v1::SsoService::Service {
 public:
  explicit SsoServiceImpl(Core* core) : core_(core) {}
  MG_RPC(SetOidcConfig, SetOidcConfigRequest, OidcConfig)
  MG_RPC(GetOidcConfig, GetOidcConfigRequest, OidcConfig)
  MG_RPC(DeleteOidcConfig, DeleteOidcConfigRequest, DeleteOidcConfigResponse)
  MG_RPC(BeginSsoLogin, BeginSsoLoginRequest, BeginSsoLoginResponse)
  MG_RPC(CompleteSsoLogin, CompleteSsoLoginRequest, LoginResult)

 private:
  Core* core_;
};

#undef MG_RPC

}  // namespace

std::unique_ptr<v1::AuthService::Service> MakeAuthService(Core* core) {
  return std::make_unique<AuthServiceImpl>(core);
}
std::unique_ptr<v1::CredentialService::Service> MakeCredentialService(Core* core) {
  return std::make_unique<CredentialServiceImpl>(core);
}
std::unique_ptr<v1::SsoService::Service> MakeSsoService(Core* core) {
  return std::make_unique<SsoServiceImpl>(core);
}

}  // namespace mailgrid::identity
