// mailctl recovery ... — what a user sets up to get back into an account
// without the recovery email, and what a reset will ask for (identityd's
// CredentialService security questions and AuthService
// GetPasswordResetRequirements). The reset itself is
// `mailctl auth reset-password complete ADDRESS --answers 'A1|A2'
// --recovery-code C --new-password NEW`.
//
// Security questions exist only where the tenant enabled them
// (`mailctl auth policy set --security-questions true`); answers are sent
// once and stored hashed by identityd, never shown again.
#include <ostream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "mailgrid/identity/v1/auth.grpc.pb.h"
#include "mailgrid/identity/v1/credential.grpc.pb.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/identity_client.h"

namespace mailgrid::mailctl {
namespace {

namespace v1 = ::mailgrid::identity::v1;
using Channel = std::shared_ptr<grpc::Channel>;

std::vector<std::string> SplitBars(const std::string& list) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(list, '|', absl::SkipEmpty()))
    out.emplace_back(part);
  return out;
}

// --questions 'Q1|Q2' --answers 'A1|A2', paired in order; the count and
// lengths are identityd's to judge (2-5 questions, answers of 3+ characters).
absl::Status SetQuestions(const Invocation& inv, const Args& a, const IdentitydClient& c) {
  auto questions = a.Required("questions");
  if (!questions.ok()) return questions.status();
  auto answers = a.Required("answers");
  if (!answers.ok()) return answers.status();
  std::vector<std::string> q = SplitBars(*questions), an = SplitBars(*answers);
  if (q.size() != an.size())
    return absl::InvalidArgumentError(absl::StrCat("--questions has ", q.size(), " and --answers ",
                                                   an.size(), " entries; they pair up in order"));
  v1::SetSecurityQuestionsRequest req;
  for (size_t i = 0; i < q.size(); ++i) {
    v1::SecurityQuestion* sq = req.add_questions();
    sq->set_question(q[i]);
    sq->set_answer(an[i]);
  }
  // Changing a recovery factor needs the password or a TOTP code again.
  if (a.Has("password"))
    req.mutable_reauth()->set_current_password(a.Get("password"));
  else if (a.Has("totp"))
    req.mutable_reauth()->set_totp_code(a.Get("totp"));
  else
    return absl::InvalidArgumentError("--password P or --totp CODE is required (re-authentication)");
  v1::SetSecurityQuestionsResponse resp;
  absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    return v1::CredentialService::NewStub(ch)->SetSecurityQuestions(ctx, req, &resp);
  });
  if (!s.ok()) return s;
  if (c.json())
    *inv.out << Json(resp) << "\n";
  else
    *inv.out << q.size() << " security questions set; your other sessions ended\n";
  return absl::OkStatus();
}

absl::Status ShowQuestions(const Invocation& inv, const Args& a, const IdentitydClient& c) {
  v1::GetSecurityQuestionsRequest req;
  if (a.positional.size() > 2) req.set_user_id(a.positional[2]);
  v1::GetSecurityQuestionsResponse resp;
  absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    return v1::CredentialService::NewStub(ch)->GetSecurityQuestions(ctx, req, &resp);
  });
  if (!s.ok()) return s;
  if (c.json())
    *inv.out << Json(resp) << "\n";
  else
    for (const auto& q : resp.questions()) *inv.out << q << "\n";
  return absl::OkStatus();
}

absl::Status Requirements(const Invocation& inv, const Args& a, const IdentitydClient& c) {
  auto address = a.Positional(1, "ADDRESS");
  if (!address.ok()) return address.status();
  v1::GetPasswordResetRequirementsRequest req;
  req.set_address(*address);
  v1::PasswordResetRequirements resp;
  absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    return v1::AuthService::NewStub(ch)->GetPasswordResetRequirements(ctx, req, &resp);
  });
  if (!s.ok()) return s;
  if (c.json()) {
    *inv.out << Json(resp) << "\n";
    return absl::OkStatus();
  }
  *inv.out << "second factor " << (resp.second_factor_required() ? "TOTP or recovery code" : "none")
           << "\n";
  for (const auto& q : resp.security_questions()) *inv.out << "question      " << q << "\n";
  return absl::OkStatus();
}

absl::Status RunRecovery(const Invocation& inv) {
  auto args = ParseArgs(inv.args);
  if (!args.ok()) return args.status();
  auto cmd = args->Positional(0, "questions|requirements");
  if (!cmd.ok()) return cmd.status();
  auto client = IdentitydClient::Connect(inv, *args);
  if (!client.ok()) return client.status();
  if (*cmd == "requirements") return Requirements(inv, *args, *client);
  if (*cmd == "questions") {
    auto what = args->Positional(1, "set|show");
    if (!what.ok()) return what.status();
    if (*what == "set") return SetQuestions(inv, *args, *client);
    if (*what == "show") return ShowQuestions(inv, *args, *client);
  }
  return absl::InvalidArgumentError("recovery questions set|show | requirements ADDRESS");
}

const bool kRegistered = RegisterCommand(
    {"recovery", "security questions and what a password reset asks for (identityd)",
     "mailctl recovery questions set --questions 'Q1|Q2' --answers 'A1|A2' (--password P|--totp "
     "C)   (with --token)\n"
     "      mailctl recovery questions show [USER_ID]\n"
     "      mailctl recovery requirements ADDRESS\n"
     "      then: mailctl auth reset-password complete ADDRESS --answers 'A1|A2' --recovery-code C "
     "--new-password NEW",
     RunRecovery});

}  // namespace
}  // namespace mailgrid::mailctl
