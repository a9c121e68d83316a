// mailctl user create|import|list|show|disable|enable|delete|rename
// DirectoryService users (protos/mailgrid/tenant/v1/directory.proto).
#include <fstream>
#include <ostream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/directory_client.h"

namespace mailgrid::mailctl {
namespace {

absl::Status Create(const TenantdClient& c, const Args& a, std::ostream& out) {
  auto address = a.Positional(0, "ADDRESS");
  if (!address.ok()) return address.status();
  dirv1::CreateUserRequest req;
  req.set_tenant_id(a.Get("tenant"));
  req.set_address(*address);
  req.set_display_name(a.Get("name"));
  req.set_title(a.Get("title"));
  req.set_phone(a.Get("phone"));
  req.set_initial_password(a.Get("password"));
  req.set_recovery_email(a.Get("recovery-email"));
  req.set_skip_welcome_mail(a.Has("no-welcome"));
  // --user-role, not --role: --role is the role of the token mailctl mints
  // with --token-key (usually tenant_admin), and reading it here made every
  // user created that way a tenant admin.
  for (absl::string_view r : absl::StrSplit(a.Get("user-role"), ',', absl::SkipEmpty())) {
    common::v1::Role role;
    if (!common::v1::Role_Parse("ROLE_" + absl::AsciiStrToUpper(r), &role))
      return absl::InvalidArgumentError(absl::StrCat("--user-role: unknown role ", r));
    req.add_roles(role);
  }
  for (absl::string_view d : absl::StrSplit(a.Get("dept"), ',', absl::SkipEmpty())) {
    auto id = DeptIdOf(c, std::string(d), req.tenant_id());
    if (!id.ok()) return id.status();
    req.add_department_ids(*id);
  }
  if (a.Has("quota-mb")) {
    int64_t mb = 0;
    if (!absl::SimpleAtoi(a.Get("quota-mb"), &mb)) return absl::InvalidArgumentError("--quota-mb");
    req.mutable_quota()->mutable_bytes()->set_value(mb << 20);
    req.mutable_quota()->mutable_messages()->set_unlimited(true);
  }
  dirv1::CreateUserResponse resp;
  auto s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) {
    return d.CreateUser(ctx, req, &resp);
  });
  if (!s.ok()) return s;
  if (c.json()) {
    out << Json(resp) << "\n";
    return absl::OkStatus();
  }
  PrintUser(out, resp.user());
  if (!resp.generated_password().empty())
    out << "password    " << resp.generated_password() << "  (shown once; must be changed)\n";
  return absl::OkStatus();
}

absl::Status Import(const TenantdClient& c, const Args& a, std::ostream& out) {
  auto file = a.Positional(0, "FILE.csv");
  if (!file.ok()) return file.status();
  std::ifstream in(*file, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", *file));
  std::stringstream ss;
  ss << in.rdbuf();
  dirv1::ImportUsersRequest req;
  req.set_tenant_id(a.Get("tenant"));
  req.set_csv(ss.str());
  req.set_dry_run(a.Has("dry-run"));
  req.set_skip_welcome_mail(a.Has("no-welcome"));
  dirv1::ImportUsersResponse resp;
  auto s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) {
    return d.ImportUsers(ctx, req, &resp);
  });
  if (!s.ok()) return s;
  if (c.json()) {
    out << Json(resp) << "\n";
  } else if (resp.errors_size() > 0) {
    out << resp.errors_size() << " bad row(s) of " << resp.rows() << "; nothing was created\n";
    out << "LINE\tCOLUMN\tREASON\tMESSAGE\n";
    for (const auto& e : resp.errors())
      out << e.line() << "\t" << (e.column().empty() ? "-" : e.column()) << "\t" << e.reason()
          << "\t" << e.message() << "\n";
  } else if (req.dry_run()) {
    out << resp.rows() << " row(s) valid; nothing created (--dry-run)\n";
  } else {
    out << "created " << resp.created_size() << " user(s), " << resp.departments_created_size()
        << " department(s)\n";
    out << "LINE\tADDRESS\tSHARD\tINITIAL PASSWORD\n";
    for (const auto& u : resp.created())
      out << u.line() << "\t" << u.user().address() << "\t" << u.user().shard() << "\t"
          << u.initial_password() << "\n";
  }
  if (resp.errors_size() > 0)
    return absl::FailedPreconditionError(
        absl::StrCat(resp.errors_size(), " bad row(s): nothing was created"));
  return absl::OkStatus();
}

absl::Status List(const TenantdClient& c, const Args& a, std::ostream& out) {
  dirv1::ListUsersRequest req;
  req.set_tenant_id(a.Get("tenant"));
  req.set_query(a.Get("query"));
  if (a.Has("dept")) {
    auto id = DeptIdOf(c, a.Get("dept"), req.tenant_id());
    if (!id.ok()) return id.status();
    req.set_department_id(*id);
  }
  if (a.Has("state")) {
    dirv1::UserState st;
    if (!dirv1::UserState_Parse("USER_STATE_" + absl::AsciiStrToUpper(a.Get("state")), &st))
      return absl::InvalidArgumentError("--state: active, disabled or deleted");
    req.add_states(st);
  }
  req.mutable_page()->set_page_size(1000);
  std::vector<dirv1::User> users;
  do {
    dirv1::ListUsersResponse resp;
    auto s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) {
      return d.ListUsers(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    for (const auto& u : resp.users()) users.push_back(u);
    req.mutable_page()->set_page_token(resp.page_info().next_page_token());
  } while (!req.page().page_token().empty());
  if (c.json()) {
    for (const auto& u : users) out << Json(u) << "\n";
    return absl::OkStatus();
  }
  out << "ADDRESS\tNAME\tSTATE\tSHARD\tUSER\n";
  for (const auto& u : users)
    out << u.address() << "\t" << u.display_name() << "\t" << UserStateWord(u.state()) << "\t"
        << u.shard() << "\t" << u.user_id() << "\n";
  return absl::OkStatus();
}

// The fields given as flags, named in the update mask; the others stay.
absl::StatusOr<dirv1::UpdateUserRequest> UpdateRequest(const std::string& user_id, const Args& a) {
  dirv1::UpdateUserRequest req;
  dirv1::User* u = req.mutable_user();
  u->set_user_id(user_id);
  auto field = [&](const char* flag, const char* path, std::string* target) {
    if (!a.Has(flag)) return;
    *target = a.Get(flag);
    req.mutable_update_mask()->add_paths(path);
  };
  field("name", "display_name", u->mutable_display_name());
  field("title", "title", u->mutable_title());
  field("phone", "phone", u->mutable_phone());
  field("recovery-email", "recovery_email", u->mutable_recovery_email());
  field("locale", "locale", u->mutable_locale());
  if (a.Has("quota-mb")) {
    int64_t mb = 0;
    if (!absl::SimpleAtoi(a.Get("quota-mb"), &mb) || mb < 0)
      return absl::InvalidArgumentError("--quota-mb: a whole number of MiB");
    u->mutable_quota()->mutable_bytes()->set_value(mb << 20);
    u->mutable_quota()->mutable_messages()->set_unlimited(true);
    req.mutable_update_mask()->add_paths("quota");
  }
  if (req.update_mask().paths().empty())
    return absl::InvalidArgumentError(
        "user update: give at least one of --name --title --phone --recovery-email --locale "
        "--quota-mb");
  return req;
}

absl::Status RunUser(const Invocation& inv) {
  ASSIGN_OR_RETURN(const Subcommand sub, ParseSubcommand(inv, {"dry-run", "no-welcome", "drop-old"}));
  const std::string& verb = sub.verb;
  const Args& a = sub.args;
  ASSIGN_OR_RETURN(const TenantdClient c, TenantdClient::Connect(inv, a));
  std::ostream& out = *inv.out;
  if (verb == "create") return Create(c, a, out);
  if (verb == "import") return Import(c, a, out);
  if (verb == "list") return List(c, a, out);
  auto ref = a.Positional(0, "ADDRESS or USER_ID");
  if (!ref.ok()) return ref.status();
  auto id = UserIdOf(c, *ref);
  if (!id.ok()) return id.status();
  dirv1::User u;
  absl::Status s;
  if (verb == "show") {
    dirv1::GetUserRequest req;
    req.set_user_id(*id);
    s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.GetUser(ctx, req, &u); });
  } else if (verb == "disable") {
    dirv1::DisableUserRequest req;
    req.set_user_id(*id);
    req.set_reason(a.Get("reason"));
    s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.DisableUser(ctx, req, &u); });
  } else if (verb == "enable") {
    dirv1::EnableUserRequest req;
    req.set_user_id(*id);
    req.set_reason(a.Get("reason"));
    s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.EnableUser(ctx, req, &u); });
  } else if (verb == "delete") {
    dirv1::DeleteUserRequest req;
    req.set_user_id(*id);
    req.set_reason(a.Get("reason"));
    s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.DeleteUser(ctx, req, &u); });
  } else if (verb == "update") {
    auto req = UpdateRequest(*id, a);
    if (!req.ok()) return req.status();
    s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.UpdateUser(ctx, *req, &u); });
  } else if (verb == "rename") {
    auto next = a.Positional(1, "NEW_ADDRESS");
    if (!next.ok()) return next.status();
    dirv1::RenameUserRequest req;
    req.set_user_id(*id);
    req.set_new_address(*next);
    req.set_drop_old_address(a.Has("drop-old"));
    s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.RenameUser(ctx, req, &u); });
  } else {
    return UnknownSubcommand(verb);
  }
  if (!s.ok()) return s;
  if (c.json()) {
    out << Json(u) << "\n";
  } else {
    PrintUser(out, u);
  }
  return absl::OkStatus();
}

const bool kRegistered = RegisterCommand(
    {"user", "a tenant's users and their mailboxes (tenantd directory)",
     "mailctl user create ADDRESS --name NAME [--dept PATH[,PATH]] [--title T] [--phone +E164]\n"
     "                  [--user-role tenant_admin,auditor] [--password P] [--quota-mb N] [--tenant T]\n"
     "      mailctl user import FILE.csv [--dry-run]   (address,name,department,phone,password,...)\n"
     "      mailctl user list [--query Q] [--dept PATH] [--state active|disabled|deleted]\n"
     "      mailctl user show|disable|enable|delete ADDRESS [--reason R]\n"
     "      mailctl user rename ADDRESS NEW_ADDRESS [--drop-old]\n"
     "      mailctl user update ADDRESS [--name N] [--title T] [--phone P] [--recovery-email E]\n"
     "                  [--locale L] [--quota-mb N]",
     RunUser});

}  // namespace
}  // namespace mailgrid::mailctl
