// mailctl auth ... — signing in and the user's credentials (identityd's
// AuthService and CredentialService). `auth login` walks the sign-in state
// machine in one go (password, then --totp/--recovery-code, then
// --new-password when a change is required) and prints the session; the
// printed access token is what --token takes for the other commands.
#include <fstream>
#include <iostream>
#include <ostream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "libs/base/status.h"
#include "mailgrid/identity/v1/auth.grpc.pb.h"
#include "mailgrid/identity/v1/credential.grpc.pb.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/identity_client.h"

namespace mailgrid::mailctl {
namespace {

namespace v1 = ::mailgrid::identity::v1;
using Channel = std::shared_ptr<grpc::Channel>;

std::ostream& Out(const Invocation& inv) { return *inv.out; }

void PrintSession(const Invocation& inv, const v1::Session& s) {
  Out(inv) << "session_id    " << s.session_id() << "\n"
           << "user          " << s.address() << " (" << s.user_id() << ", tenant " << s.tenant_id()
           << ")\n"
           << "scope         " << EnumWord(common::v1::TokenScope_Name(s.scope()), "TOKEN_SCOPE_")
           << "\n"
           << "access_token  " << s.access_token() << "\n"
           << "refresh_token " << (s.refresh_token().empty() ? "-" : s.refresh_token()) << "\n"
           << "expires       " << When(s.access_token_expires_at().seconds()) << "\n";
}

void PrintResult(const Invocation& inv, bool json, const google::protobuf::Message& m) {
  Out(inv) << Json(m) << "\n";
  (void)json;
}

// A call whose answer is a sentence for people and the response for --json.
void Said(const Invocation& inv, bool json, const google::protobuf::Message& resp,
          const std::string& sentence) {
  if (json)
    PrintResult(inv, true, resp);
  else
    Out(inv) << sentence;
}

common::v1::Protocol ParseProtocol(const std::string& p) {
  std::string l = absl::AsciiStrToLower(p);
  if (l == "imap") return common::v1::PROTOCOL_IMAP;
  if (l == "pop3") return common::v1::PROTOCOL_POP3;
  if (l == "smtp") return common::v1::PROTOCOL_SMTP;
  if (l == "grpc") return common::v1::PROTOCOL_GRPC;
  return common::v1::PROTOCOL_UNSPECIFIED;
}

absl::StatusOr<std::string> Secret(const Args& a, const std::string& flag) {
  if (a.Has(flag)) return a.Get(flag);
  if (a.flags.count(flag + "-stdin")) {
    std::string line;
    std::getline(std::cin, line);
    return line;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, " (or --", flag, "-stdin) is required"));
}

absl::Status WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  if (!out) return absl::InvalidArgumentError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

// ---- login and sessions -----------------------------------------------------

absl::Status Login(const Invocation& inv, const Args& a, const IdentitydClient& c) {
  v1::LoginRequest req;
  auto address = a.Positional(1, "ADDRESS");
  if (!address.ok()) return address.status();
  auto password = Secret(a, "password");
  if (!password.ok()) return password.status();
  req.set_address(*address);
  req.set_password(*password);
  req.mutable_client()->set_user_agent("mailctl");
  v1::LoginResult result;
  absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    return v1::AuthService::NewStub(ch)->Login(ctx, req, &result);
  });
  if (!s.ok()) return s;
  if (result.has_second_factor()) {
    v1::CompleteSecondFactorRequest f;
    f.set_challenge_id(result.second_factor().challenge_id());
    if (a.Has("totp"))
      f.set_totp_code(a.Get("totp"));
    else if (a.Has("recovery-code"))
      f.set_recovery_code(a.Get("recovery-code"));
    else {
      PrintResult(inv, c.json(), result);
      return absl::FailedPreconditionError(
          "a second factor is required: add --totp CODE or --recovery-code CODE");
    }
    v1::LoginResult next;
    s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::AuthService::NewStub(ch)->CompleteSecondFactor(ctx, f, &next);
    });
    if (!s.ok()) return s;
    result = next;
  }
  if (result.has_password_change_required()) {
    if (!a.Has("new-password")) {
      PrintResult(inv, c.json(), result);
      return absl::FailedPreconditionError(absl::StrCat(
          "the password must be changed (",
          EnumWord(v1::PasswordChangeReason_Name(result.password_change_required().reason()),
                   "PASSWORD_CHANGE_REASON_"),
          "): add --new-password NEW"));
    }
    v1::ChangePasswordRequest ch_req;
    ch_req.set_ticket(result.password_change_required().ticket());
    ch_req.set_new_password(a.Get("new-password"));
    v1::LoginResult next;
    s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::AuthService::NewStub(ch)->ChangePassword(ctx, ch_req, &next);
    });
    if (!s.ok()) return s;
    result = next;
  }
  if (c.json()) {
    PrintResult(inv, true, result);
  } else {
    if (result.totp_enrolment_required())
      Out(inv) << "TOTP enrolment required: use this token with `mailctl auth 2fa enable`\n";
    PrintSession(inv, result.session());
  }
  return absl::OkStatus();
}

absl::Status Passwd(const Invocation& inv, const Args& a, const IdentitydClient& c) {
  v1::ChangePasswordRequest req;
  auto current = Secret(a, "current");
  if (!current.ok()) return current.status();
  auto next = a.Required("new");
  if (!next.ok()) return next.status();
  req.set_current_password(*current);
  req.set_new_password(*next);
  v1::LoginResult result;
  absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    return v1::AuthService::NewStub(ch)->ChangePassword(ctx, req, &result);
  });
  if (!s.ok()) return s;
  if (c.json())
    PrintResult(inv, true, result);
  else {
    Out(inv) << "password changed; other sessions ended\n";
    PrintSession(inv, result.session());
  }
  return absl::OkStatus();
}

// ---- TOTP -------------------------------------------------------------------

void SetReauth(const Args& a, v1::Reauth* r) {
  if (a.Has("password"))
    r->set_current_password(a.Get("password"));
  else if (a.Has("totp"))
    r->set_totp_code(a.Get("totp"));
}

absl::Status TwoFactor(const Invocation& inv, const Args& a, const IdentitydClient& c) {
  auto what = a.Positional(1, "enable|disable|recovery-codes");
  if (!what.ok()) return what.status();
  if (*what == "enable" && !a.Has("code")) {
    v1::BeginTotpEnrolmentRequest req;
    SetReauth(a, req.mutable_reauth());
    v1::BeginTotpEnrolmentResponse resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::CredentialService::NewStub(ch)->BeginTotpEnrolment(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    if (a.Has("qr-png")) {
      absl::Status w = WriteFile(a.Get("qr-png"), resp.qr_png());
      if (!w.ok()) return w;
    }
    if (c.json()) {
      v1::BeginTotpEnrolmentResponse shown = resp;
      shown.clear_qr_png();
      PrintResult(inv, true, shown);
    } else {
      Out(inv) << "enrolment " << resp.enrolment_id() << "\nsecret    " << resp.secret_base32()
               << "\nuri       " << resp.otpauth_uri()
               << "\nthen: mailctl auth 2fa enable --enrolment " << resp.enrolment_id()
               << " --code CODE\n";
    }
    return absl::OkStatus();
  }
  if (*what == "enable") {
    v1::ConfirmTotpEnrolmentRequest req;
    auto id = a.Required("enrolment");
    if (!id.ok()) return id.status();
    req.set_enrolment_id(*id);
    req.set_code(a.Get("code"));
    v1::ConfirmTotpEnrolmentResponse resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::CredentialService::NewStub(ch)->ConfirmTotpEnrolment(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    if (c.json())
      PrintResult(inv, true, resp);
    else {
      Out(inv) << "TOTP enabled. Recovery codes (shown once):\n";
      for (const auto& code : resp.recovery_codes()) Out(inv) << "  " << code << "\n";
      if (resp.has_session()) PrintSession(inv, resp.session());
    }
    return absl::OkStatus();
  }
  if (*what == "disable") {
    v1::DisableTotpRequest req;
    if (a.positional.size() > 2) req.set_user_id(a.positional[2]);
    SetReauth(a, req.mutable_reauth());
    req.set_reason(a.Get("reason"));
    v1::DisableTotpResponse resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::CredentialService::NewStub(ch)->DisableTotp(ctx, req, &resp);
    });
    if (s.ok()) Said(inv, c.json(), resp, "TOTP disabled\n");
    return s;
  }
  if (*what == "recovery-codes") {
    v1::RegenerateRecoveryCodesRequest req;
    SetReauth(a, req.mutable_reauth());
    v1::RegenerateRecoveryCodesResponse resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::CredentialService::NewStub(ch)->RegenerateRecoveryCodes(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    if (c.json())
      PrintResult(inv, true, resp);
    else
      for (const auto& code : resp.recovery_codes()) Out(inv) << code << "\n";
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError("auth 2fa enable|disable|recovery-codes");
}

// ---- app passwords ------------------------------------------------------------

absl::Status AppPassword(const Invocation& inv, const Args& a, const IdentitydClient& c) {
  auto what = a.Positional(1, "create|list|revoke");
  if (!what.ok()) return what.status();
  if (*what == "create") {
    v1::CreateAppPasswordRequest req;
    auto name = a.Positional(2, "NAME");
    if (!name.ok()) return name.status();
    req.set_name(*name);
    for (absl::string_view p : absl::StrSplit(a.Get("protocols"), ',', absl::SkipEmpty()))
      req.add_protocols(ParseProtocol(std::string(p)));
    v1::CreateAppPasswordResponse resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::CredentialService::NewStub(ch)->CreateAppPassword(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    if (c.json())
      PrintResult(inv, true, resp);
    else
      Out(inv) << resp.app_password().app_password_id() << "  " << resp.password()
               << "  (shown once)\n";
    return absl::OkStatus();
  }
  if (*what == "list") {
    v1::ListAppPasswordsRequest req;
    if (a.positional.size() > 2) req.set_user_id(a.positional[2]);
    v1::ListAppPasswordsResponse resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::CredentialService::NewStub(ch)->ListAppPasswords(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    if (c.json())
      PrintResult(inv, true, resp);
    else
      for (const auto& ap : resp.app_passwords())
        Out(inv) << ap.app_password_id() << "  " << ap.name() << "  created "
                 << When(ap.created_at().seconds()) << "  last used "
                 << When(ap.last_used_at().seconds()) << "\n";
    return absl::OkStatus();
  }
  if (*what == "revoke") {
    v1::RevokeAppPasswordRequest req;
    auto id = a.Positional(2, "APP_PASSWORD_ID");
    if (!id.ok()) return id.status();
    req.set_app_password_id(*id);
    v1::RevokeAppPasswordResponse resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::CredentialService::NewStub(ch)->RevokeAppPassword(ctx, req, &resp);
    });
    if (s.ok()) Said(inv, c.json(), resp, absl::StrCat("revoked ", *id, "\n"));
    return s;
  }
  return absl::InvalidArgumentError("auth app-password create|list|revoke");
}

// ---- reset, unlock, events --------------------------------------------------------

absl::Status ResetPassword(const Invocation& inv, const Args& a, const IdentitydClient& c) {
  auto what = a.Positional(1, "request|complete|admin");
  if (!what.ok()) return what.status();
  if (*what == "request") {
    v1::RequestPasswordResetRequest req;
    auto address = a.Positional(2, "ADDRESS");
    if (!address.ok()) return address.status();
    req.set_address(*address);
    v1::RequestPasswordResetResponse resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::AuthService::NewStub(ch)->RequestPasswordReset(ctx, req, &resp);
    });
    if (s.ok())
      Said(inv, c.json(), resp, "if the address exists, a reset token is on its way\n");
    return s;
  }
  if (*what == "complete") {
    v1::ResetPasswordRequest req;
    auto address = a.Positional(2, "ADDRESS");
    if (!address.ok()) return address.status();
    auto np = a.Required("new-password");
    if (!np.ok()) return np.status();
    req.set_address(*address);
    req.set_reset_token(a.Get("reset-token"));
    req.set_totp_code(a.Get("totp"));
    req.set_recovery_code(a.Get("recovery-code"));
    for (absl::string_view ans : absl::StrSplit(a.Get("answers"), '|', absl::SkipEmpty()))
      req.add_security_answers(std::string(ans));
    req.set_new_password(*np);
    v1::ResetPasswordResponse resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::AuthService::NewStub(ch)->ResetPassword(ctx, req, &resp);
    });
    if (s.ok()) Said(inv, c.json(), resp, "password reset; every session ended\n");
    return s;
  }
  if (*what == "admin") {
    v1::AdminResetPasswordRequest req;
    auto uid = a.Positional(2, "USER_ID");
    if (!uid.ok()) return uid.status();
    req.set_user_id(*uid);
    req.set_new_password(a.Get("new-password"));
    req.set_reason(a.Get("reason"));
    v1::AdminResetPasswordResponse resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::CredentialService::NewStub(ch)->AdminResetPassword(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    if (c.json())
      PrintResult(inv, true, resp);
    else
      Out(inv) << "reset; " << resp.sessions_ended() << " sessions ended"
               << (resp.generated_password().empty()
                       ? ""
                       : absl::StrCat("; password ", resp.generated_password(), " (shown once)"))
               << "; it must be changed at next login\n";
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError("auth reset-password request|complete|admin");
}

absl::Status Unlock(const Invocation& inv, const Args& a, const IdentitydClient& c) {
  v1::UnlockAccountRequest req;
  auto uid = a.Positional(1, "USER_ID");
  if (!uid.ok()) return uid.status();
  req.set_user_id(*uid);
  req.set_reason(a.Get("reason"));
  v1::UnlockAccountResponse resp;
  absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    return v1::CredentialService::NewStub(ch)->UnlockAccount(ctx, req, &resp);
  });
  if (s.ok()) Said(inv, c.json(), resp, absl::StrCat("unlocked ", *uid, "\n"));
  return s;
}

absl::Status Lockouts(const Invocation& inv, const Args& a, const IdentitydClient& c) {
  v1::ListLockoutsRequest req;
  if (a.positional.size() > 1) req.set_tenant_id(a.positional[1]);
  ASSIGN_OR_RETURN(const auto resp, ListAll(c, req, &v1::CredentialService::Stub::ListLockouts));
  if (c.json())
    PrintResult(inv, true, resp);
  else
    for (const auto& l : resp.lockouts())
      Out(inv) << l.user_id() << "  " << l.address() << "  failures " << l.failures() << "  last "
               << l.last_failure_ip() << "  locked until " << When(l.locked_until().seconds())
               << "\n";
  return absl::OkStatus();
}

absl::Status Events(const Invocation& inv, const Args& a, const IdentitydClient& c) {
  v1::ListAuthEventsRequest req;
  req.set_tenant_id(a.Get("tenant"));
  req.set_user_id(a.Get("user"));
  for (absl::string_view k : absl::StrSplit(a.Get("kind"), ',', absl::SkipEmpty())) {
    v1::AuthEventKind kind;
    if (!v1::AuthEventKind_Parse(absl::StrCat("AUTH_EVENT_KIND_", absl::AsciiStrToUpper(k)), &kind))
      return absl::InvalidArgumentError(absl::StrCat("--kind: unknown ", k));
    req.add_kinds(kind);
  }
  int limit = 50;
  if (a.Has("limit") && !absl::SimpleAtoi(a.Get("limit"), &limit))
    return absl::InvalidArgumentError("--limit: a number");
  req.mutable_page()->set_page_size(limit);
  v1::ListAuthEventsResponse resp;
  absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    return v1::AuthService::NewStub(ch)->ListAuthEvents(ctx, req, &resp);
  });
  if (!s.ok()) return s;
  if (c.json())
    PrintResult(inv, true, resp);
  else
    for (const auto& e : resp.events())
      Out(inv) << When(e.at().seconds()) << "  "
               << EnumWord(v1::AuthEventKind_Name(e.kind()), "AUTH_EVENT_KIND_") << "  "
               << EnumWord(v1::AuthOutcome_Name(e.outcome()), "AUTH_OUTCOME_") << "  "
               << (e.address().empty() ? e.user_id() : e.address()) << "  " << e.method() << "  "
               << e.client().ip() << "  " << e.detail() << "\n";
  return absl::OkStatus();
}

// ---- service-internal and diagnostics ---------------------------------------------

absl::Status InitialPassword(const Invocation& inv, const Args& a, const IdentitydClient& c) {
  v1::SetInitialPasswordRequest req;
  auto* e = req.add_entries();
  auto t = a.Positional(1, "TENANT_ID");
  auto u = a.Positional(2, "USER_ID");
  auto p = a.Positional(3, "PASSWORD");
  if (!t.ok() || !u.ok() || !p.ok())
    return absl::InvalidArgumentError("auth initial-password TENANT USER PASSWORD");
  e->set_tenant_id(*t);
  e->set_user_id(*u);
  e->set_password(*p);
  e->set_must_change(a.flags.count("must-change") > 0);
  v1::SetInitialPasswordResponse resp;
  absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    return v1::CredentialService::NewStub(ch)->SetInitialPassword(ctx, req, &resp);
  });
  if (s.ok()) Said(inv, c.json(), resp, "initial password set\n");
  return s;
}

absl::Status Sasl(const Invocation& inv, const Args& a, const IdentitydClient& c) {
  v1::CheckSaslRequest req;
  auto mech = a.Positional(1, "PLAIN|LOGIN|XOAUTH2|OAUTHBEARER");
  if (!mech.ok()) return mech.status();
  v1::SaslMechanism m = v1::SASL_MECHANISM_UNSPECIFIED;
  v1::SaslMechanism_Parse(absl::StrCat("SASL_MECHANISM_", absl::AsciiStrToUpper(*mech)), &m);
  req.set_mechanism(m);
  req.set_authcid(a.Get("authcid"));
  req.set_authzid(a.Get("authzid"));
  req.set_password(a.Get("password"));
  req.set_bearer_token(a.Get("bearer"));
  req.set_protocol(ParseProtocol(a.Get("protocol", "imap")));
  req.mutable_client()->set_ip(a.Get("client-ip", "127.0.0.1"));
  req.set_issue_session(a.flags.count("issue-session") > 0);
  v1::CheckSaslResponse resp;
  absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    return v1::AuthService::NewStub(ch)->CheckSasl(ctx, req, &resp);
  });
  if (!s.ok()) return s;
  PrintResult(inv, true, resp);
  return absl::OkStatus();
}

absl::Status Qr(const Invocation& inv, const Args& a, const IdentitydClient& c) {
  auto what = a.Positional(1, "create|approve|redeem");
  if (!what.ok()) return what.status();
  if (*what == "create") {
    v1::CreateQrLoginTicketRequest req;
    req.mutable_client()->set_user_agent("mailctl");
    v1::QrLoginTicket resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::AuthService::NewStub(ch)->CreateQrLoginTicket(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    if (a.Has("png")) {
      absl::Status w = WriteFile(a.Get("png"), resp.qr_png());
      if (!w.ok()) return w;
    }
    resp.clear_qr_png();
    PrintResult(inv, true, resp);
    return absl::OkStatus();
  }
  if (*what == "approve") {
    v1::ApproveQrLoginTicketRequest req;
    auto id = a.Positional(2, "TICKET_ID");
    if (!id.ok()) return id.status();
    req.set_ticket_id(*id);
    req.set_decision(a.flags.count("deny") ? v1::QR_DECISION_DENY : v1::QR_DECISION_APPROVE);
    v1::ApproveQrLoginTicketResponse resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::AuthService::NewStub(ch)->ApproveQrLoginTicket(ctx, req, &resp);
    });
    if (s.ok())
      Said(inv, c.json(), resp, req.decision() == v1::QR_DECISION_DENY ? "denied\n" : "approved\n");
    return s;
  }
  if (*what == "redeem") {
    v1::RedeemQrLoginTicketRequest req;
    auto id = a.Positional(2, "TICKET_ID");
    if (!id.ok()) return id.status();
    auto secret = a.Required("secret");
    if (!secret.ok()) return secret.status();
    req.set_ticket_id(*id);
    req.set_redeem_secret(*secret);
    req.set_poll(a.flags.count("poll") > 0);
    return c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      auto reader = v1::AuthService::NewStub(ch)->RedeemQrLoginTicket(ctx, req);
      v1::RedeemQrLoginTicketResponse resp;
      while (reader->Read(&resp)) Out(inv) << Json(resp) << "\n";
      return reader->Finish();
    });
  }
  return absl::InvalidArgumentError("auth qr create|approve|redeem");
}

absl::Status Policy(const Invocation& inv, const Args& a, const IdentitydClient& c) {
  auto what = a.Positional(1, "show|set");
  if (!what.ok()) return what.status();
  std::string tenant = a.positional.size() > 2 ? a.positional[2] : "";
  v1::PasswordPolicy policy;
  absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    v1::GetPasswordPolicyRequest req;
    req.set_tenant_id(tenant);
    return v1::CredentialService::NewStub(ch)->GetPasswordPolicy(ctx, req, &policy);
  });
  if (!s.ok()) return s;
  if (*what == "set") {
    v1::SetPasswordPolicyRequest req;
    *req.mutable_policy() = policy;
    auto num = [&](const char* flag, auto setter) -> absl::Status {
      if (!a.Has(flag)) return absl::OkStatus();
      uint32_t v = 0;
      if (!absl::SimpleAtoi(a.Get(flag), &v))
        return absl::InvalidArgumentError(absl::StrCat("--", flag, ": a number"));
      setter(v);
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(
        num("min-length", [&](uint32_t v) { req.mutable_policy()->set_min_length(v); }));
    RETURN_IF_ERROR(
        num("history", [&](uint32_t v) { req.mutable_policy()->set_history_count(v); }));
    RETURN_IF_ERROR(num("max-age-days",
                        [&](uint32_t v) { req.mutable_policy()->set_max_password_age_days(v); }));
    if (a.Has("require-2fa")) {
      std::string v = absl::AsciiStrToLower(a.Get("require-2fa"));
      req.mutable_policy()->set_require_two_factor(v == "all" ? v1::TWO_FACTOR_REQUIREMENT_ALL
                                                   : v == "admins"
                                                       ? v1::TWO_FACTOR_REQUIREMENT_ADMINS
                                                       : v1::TWO_FACTOR_REQUIREMENT_NONE);
    }
    if (a.Has("allow-common"))
      req.mutable_policy()->set_allow_common_passwords(a.Get("allow-common") == "true");
    if (a.Has("security-questions"))
      req.mutable_policy()->set_security_questions_enabled(a.Get("security-questions") == "true");
    if (a.Has("app-passwords-under-sso"))
      req.mutable_policy()->set_allow_app_passwords_under_sso(a.Get("app-passwords-under-sso") ==
                                                              "true");
    req.set_expected_version(policy.version());
    s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::CredentialService::NewStub(ch)->SetPasswordPolicy(ctx, req, &policy);
    });
    if (!s.ok()) return s;
  }
  PrintResult(inv, true, policy);
  return absl::OkStatus();
}

absl::Status Simple(const Invocation& inv, const Args& a, const IdentitydClient& c,
                    const std::string& cmd) {
  if (cmd == "refresh") {
    v1::RefreshTokenRequest req;
    auto t = a.Positional(1, "REFRESH_TOKEN");
    if (!t.ok()) return t.status();
    req.set_refresh_token(*t);
    v1::Session resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::AuthService::NewStub(ch)->RefreshToken(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    if (c.json())
      PrintResult(inv, true, resp);
    else
      PrintSession(inv, resp);
    return absl::OkStatus();
  }
  if (cmd == "logout") {
    v1::LogoutRequest req;
    req.set_refresh_token(a.Get("refresh-token"));
    v1::LogoutResponse resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::AuthService::NewStub(ch)->Logout(ctx, req, &resp);
    });
    if (s.ok()) Said(inv, c.json(), resp, "signed out\n");
    return s;
  }
  if (cmd == "logout-everywhere") {
    v1::LogoutEverywhereRequest req;
    if (a.positional.size() > 1) req.set_user_id(a.positional[1]);
    req.set_reason(a.Get("reason"));
    v1::LogoutEverywhereResponse resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::AuthService::NewStub(ch)->LogoutEverywhere(ctx, req, &resp);
    });
    if (s.ok()) Said(inv, c.json(), resp, absl::StrCat(resp.sessions_ended(), " sessions ended\n"));
    return s;
  }
  if (cmd == "sessions") {
    v1::ListSessionsRequest req;
    ASSIGN_OR_RETURN(const auto resp, ListAll(c, req, &v1::AuthService::Stub::ListSessions));
    PrintResult(inv, true, resp);
    return absl::OkStatus();
  }
  if (cmd == "status") {
    v1::GetCredentialStatusRequest req;
    if (a.positional.size() > 1) req.set_user_id(a.positional[1]);
    v1::CredentialStatus resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::CredentialService::NewStub(ch)->GetCredentialStatus(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    PrintResult(inv, true, resp);
    return absl::OkStatus();
  }
  if (cmd == "keys") {
    v1::GetPublicKeysRequest req;
    v1::GetPublicKeysResponse resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::AuthService::NewStub(ch)->GetPublicKeys(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    PrintResult(inv, true, resp);
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown: auth ", cmd, " (see mailctl help)"));
}

absl::Status RunAuth(const Invocation& inv) {
  auto args =
      ParseArgs(inv.args, {"password-stdin", "must-change", "issue-session", "deny", "poll"});
  if (!args.ok()) return args.status();
  auto cmd = args->Positional(0, "a sub-command");
  if (!cmd.ok()) return cmd.status();
  auto client = IdentitydClient::Connect(inv, *args);
  if (!client.ok()) return client.status();
  const std::string& c = *cmd;
  if (c == "login") return Login(inv, *args, *client);
  if (c == "passwd") return Passwd(inv, *args, *client);
  if (c == "2fa") return TwoFactor(inv, *args, *client);
  if (c == "app-password") return AppPassword(inv, *args, *client);
  if (c == "reset-password") return ResetPassword(inv, *args, *client);
  if (c == "unlock") return Unlock(inv, *args, *client);
  if (c == "lockouts") return Lockouts(inv, *args, *client);
  if (c == "events") return Events(inv, *args, *client);
  if (c == "initial-password") return InitialPassword(inv, *args, *client);
  if (c == "sasl") return Sasl(inv, *args, *client);
  if (c == "qr") return Qr(inv, *args, *client);
  if (c == "policy") return Policy(inv, *args, *client);
  return Simple(inv, *args, *client, c);
}

const bool kRegistered = RegisterCommand(
    {"auth", "sign-in, passwords, 2FA, app passwords, sessions, lockouts (identityd)",
     "mailctl auth login ADDRESS --password P [--totp CODE|--recovery-code C] [--new-password "
     "NEW]\n"
     "      mailctl auth passwd --current P --new NEW            (with --token)\n"
     "      mailctl auth refresh REFRESH_TOKEN | logout [--refresh-token T] | logout-everywhere "
     "[USER_ID]\n"
     "      mailctl auth sessions | status [USER_ID] | keys\n"
     "      mailctl auth 2fa enable [--password P] [--qr-png FILE]; 2fa enable --enrolment ID "
     "--code C\n"
     "      mailctl auth 2fa disable [USER_ID] [--password P|--totp C] | 2fa recovery-codes "
     "--password P\n"
     "      mailctl auth app-password create NAME [--protocols imap,pop3,smtp] | list [USER_ID] | "
     "revoke ID\n"
     "      mailctl auth reset-password request ADDRESS\n"
     "      mailctl auth reset-password complete ADDRESS (--reset-token T|--answers 'A1|A2') "
     "--new-password NEW\n"
     "                  [--totp C|--recovery-code C]   (questions: mailctl recovery)\n"
     "      mailctl auth reset-password admin USER_ID [--new-password P] [--reason R]\n"
     "      mailctl auth unlock USER_ID | lockouts [TENANT] | events [--tenant T] [--user U] "
     "[--kind login,...]\n"
     "      mailctl auth policy show|set [TENANT] [--min-length N] [--history N] [--max-age-days "
     "N]\n"
     "                  [--require-2fa none|admins|all] [--security-questions true|false]\n"
     "      mailctl auth qr create [--png FILE] | qr approve TICKET [--deny] | qr redeem TICKET "
     "--secret S [--poll]\n"
     "      mailctl auth initial-password TENANT USER PASSWORD [--must-change]   (service token: "
     "--token-key)\n"
     "      mailctl auth sasl PLAIN|XOAUTH2 --authcid A (--password P|--bearer T) [--protocol "
     "imap] (service token)",
     RunAuth});

}  // namespace
}  // namespace mailgrid::mailctl
