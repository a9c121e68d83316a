#include "tools/mailctl/directory_client.h"

#include <ostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace mailgrid::mailctl {

absl::Status CallDir(const TenantdClient& c,
                     const std::function<grpc::Status(DirStub&, grpc::ClientContext*)>& call) {
  return c.Run([&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext* ctx) {
    auto stub = dirv1::DirectoryService::NewStub(ch);
    return call(*stub, ctx);
  });
}

absl::StatusOr<std::string> UserIdOf(const TenantdClient& c, const std::string& ref) {
  if (!absl::StrContains(ref, "@")) return ref;
  dirv1::GetUserRequest req;
  req.set_address(ref);
  dirv1::User u;
  absl::Status s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) {
    return d.GetUser(ctx, req, &u);
  });
  if (!s.ok()) return s;
  return u.user_id();
}

absl::StatusOr<std::string> DeptIdOf(const TenantdClient& c, const std::string& ref,
                                     const std::string& tenant) {
  if (absl::StartsWith(ref, "d-") && !absl::StrContains(ref, "/")) return ref;
  dirv1::ResolveDepartmentPathRequest req;
  req.set_tenant_id(tenant);
  req.set_path(ref);
  dirv1::Department d;
  absl::Status s = CallDir(c, [&](DirStub& st, grpc::ClientContext* ctx) {
    return st.ResolveDepartmentPath(ctx, req, &d);
  });
  if (!s.ok()) return s;
  return d.department_id();
}

absl::StatusOr<std::string> GroupIdOf(const TenantdClient& c, const std::string& ref) {
  if (!absl::StrContains(ref, "@")) return ref;
  dirv1::GetGroupRequest req;
  req.set_address(ref);
  dirv1::Group g;
  absl::Status s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) {
    return d.GetGroup(ctx, req, &g);
  });
  if (!s.ok()) return s;
  return g.group_id();
}

absl::StatusOr<std::string> SharedIdOf(const TenantdClient& c, const std::string& ref,
                                       const std::string& tenant) {
  if (!absl::StrContains(ref, "@")) return ref;
  dirv1::ListSharedMailboxesRequest req;
  req.set_tenant_id(tenant);
  ASSIGN_OR_RETURN(const auto resp, ListAll(c, req, &DirStub::ListSharedMailboxes));
  for (const auto& m : resp.shared_mailboxes()) {
    if (absl::EqualsIgnoreCase(m.address(), ref)) return m.shared_mailbox_id();
  }
  return absl::NotFoundError(absl::StrCat("shared mailbox ", ref, " not found"));
}

absl::StatusOr<dirv1::GroupMember> MemberOf(const TenantdClient& c, const std::string& spec,
                                            const std::string& tenant) {
  dirv1::GroupMember m;
  size_t colon = spec.find(':');
  std::string kind = colon == std::string::npos ? "" : absl::AsciiStrToLower(spec.substr(0, colon));
  std::string ref = colon == std::string::npos ? spec : spec.substr(colon + 1);
  absl::StatusOr<std::string> id;
  if (kind == "user") {
    m.set_kind(dirv1::MEMBER_KIND_USER);
    id = UserIdOf(c, ref);
  } else if (kind == "group") {
    m.set_kind(dirv1::MEMBER_KIND_GROUP);
    id = GroupIdOf(c, ref);
  } else if (kind == "shared") {
    m.set_kind(dirv1::MEMBER_KIND_SHARED_MAILBOX);
    id = SharedIdOf(c, ref, tenant);
  } else if (kind == "dept" || kind == "dept-direct") {
    m.set_kind(dirv1::MEMBER_KIND_DEPARTMENT);
    m.set_direct_only(kind == "dept-direct");
    id = DeptIdOf(c, ref, tenant);
  } else if (kind.empty()) {
    m.set_kind(dirv1::MEMBER_KIND_USER);
    id = UserIdOf(c, ref);
    if (absl::IsNotFound(id.status())) {
      m.set_kind(dirv1::MEMBER_KIND_GROUP);
      id = GroupIdOf(c, ref);
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("member \"", spec, "\": use user:, group:, shared:, dept: or dept-direct:"));
  }
  if (!id.ok()) return id.status();
  m.set_id(*id);
  return m;
}

std::string UserStateWord(dirv1::UserState s) {
  return EnumWord(dirv1::UserState_Name(s), "USER_STATE_");
}

void PrintUser(std::ostream& out, const dirv1::User& u) {
  std::vector<std::string> roles;
  for (int r : u.roles())
    roles.push_back(absl::AsciiStrToLower(
        EnumWord(common::v1::Role_Name(static_cast<common::v1::Role>(r)), "ROLE_")));
  out << "user        " << u.user_id() << "\n"
      << "address     " << u.address() << "\n"
      << "name        " << u.display_name() << "\n"
      << "state       " << UserStateWord(u.state()) << "\n"
      << "roles       " << absl::StrJoin(roles, ",") << "\n"
      << "mailbox     " << u.mailbox_id() << " (shard " << u.shard() << ")\n";
  if (!u.department_ids().empty())
    out << "departments " << absl::StrJoin(u.department_ids(), ",") << "\n";
  if (!u.title().empty()) out << "title       " << u.title() << "\n";
  if (!u.phone().empty()) out << "phone       " << u.phone() << "\n";
  if (!u.aliases().empty()) out << "aliases     " << absl::StrJoin(u.aliases(), ",") << "\n";
  if (u.has_purge_after()) out << "purge after " << When(u.purge_after().seconds()) << "\n";
}

}  // namespace mailgrid::mailctl
