// mailctl dept create|list|show|rename|move|delete|members
// DirectoryService departments (a tree; PATH like "Sales/East/Shanghai").
#include <ostream>

#include "absl/strings/str_cat.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/directory_client.h"

namespace mailgrid::mailctl {
namespace {

void Print(std::ostream& out, const dirv1::Department& d) {
  out << d.path() << "\t" << d.department_id() << "\t" << d.child_count() << " sub, "
      << d.direct_member_count() << " member(s)\n";
}

absl::Status RunDept(const Invocation& inv) {
  ASSIGN_OR_RETURN(const Subcommand sub, ParseSubcommand(inv, {"recursive"}));
  const std::string& verb = sub.verb;
  const Args& a = sub.args;
  ASSIGN_OR_RETURN(const TenantdClient c, TenantdClient::Connect(inv, a));
  std::ostream& out = *inv.out;
  const std::string tenant = a.Get("tenant");
  if (verb == "list") {
    dirv1::ListDepartmentsRequest req;
    req.set_tenant_id(tenant);
    if (!a.positional.empty()) {
      auto id = DeptIdOf(c, a.positional[0], tenant);
      if (!id.ok()) return id.status();
      req.set_parent_id(*id);
    }
    ASSIGN_OR_RETURN(const auto resp, ListAll(c, req, &DirStub::ListDepartments));
    if (c.json()) {
      out << Json(resp) << "\n";
      return absl::OkStatus();
    }
    for (const auto& d : resp.departments()) Print(out, d);
    return absl::OkStatus();
  }
  if (verb == "create") {
    auto name = a.Positional(0, "NAME");
    if (!name.ok()) return name.status();
    dirv1::CreateDepartmentRequest req;
    req.set_tenant_id(tenant);
    req.set_name(*name);
    if (a.Has("parent")) {
      auto id = DeptIdOf(c, a.Get("parent"), tenant);
      if (!id.ok()) return id.status();
      req.set_parent_id(*id);
    }
    dirv1::Department d;
    auto s = CallDir(c, [&](DirStub& st, grpc::ClientContext* ctx) {
      return st.CreateDepartment(ctx, req, &d);
    });
    if (!s.ok()) return s;
    if (c.json()) {
      out << Json(d) << "\n";
    } else {
      Print(out, d);
    }
    return absl::OkStatus();
  }
  auto ref = a.Positional(0, "PATH");
  if (!ref.ok()) return ref.status();
  auto id = DeptIdOf(c, *ref, tenant);
  if (!id.ok()) return id.status();
  dirv1::Department d;
  absl::Status s;
  if (verb == "show") {
    dirv1::GetDepartmentRequest req;
    req.set_department_id(*id);
    s = CallDir(c, [&](DirStub& st, grpc::ClientContext* ctx) {
      return st.GetDepartment(ctx, req, &d);
    });
  } else if (verb == "rename") {
    auto name = a.Positional(1, "NEW_NAME");
    if (!name.ok()) return name.status();
    dirv1::RenameDepartmentRequest req;
    req.set_department_id(*id);
    req.set_new_name(*name);
    s = CallDir(c, [&](DirStub& st, grpc::ClientContext* ctx) {
      return st.RenameDepartment(ctx, req, &d);
    });
  } else if (verb == "move") {
    auto to = a.Required("to");
    if (!to.ok()) return to.status();
    dirv1::MoveDepartmentRequest req;
    req.set_department_id(*id);
    if (*to != "/") {
      auto parent = DeptIdOf(c, *to, tenant);
      if (!parent.ok()) return parent.status();
      req.set_new_parent_id(*parent);
    }
    s = CallDir(c, [&](DirStub& st, grpc::ClientContext* ctx) {
      return st.MoveDepartment(ctx, req, &d);
    });
  } else if (verb == "delete") {
    dirv1::DeleteDepartmentRequest req;
    req.set_department_id(*id);
    req.set_recursive(a.Has("recursive"));
    dirv1::DeleteDepartmentResponse resp;
    s = CallDir(c, [&](DirStub& st, grpc::ClientContext* ctx) {
      return st.DeleteDepartment(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    out << "deleted " << resp.departments_deleted() << " department(s); "
        << resp.members_detached() << " membership(s) removed\n";
    return absl::OkStatus();
  } else if (verb == "members") {
    dirv1::ListDepartmentMembersRequest req;
    req.set_department_id(*id);
    req.set_recursive(a.Has("recursive"));
    req.mutable_page()->set_page_size(1000);
    do {
      dirv1::ListDepartmentMembersResponse resp;
      s = CallDir(c, [&](DirStub& st, grpc::ClientContext* ctx) {
        return st.ListDepartmentMembers(ctx, req, &resp);
      });
      if (!s.ok()) return s;
      for (const auto& u : resp.users()) {
        if (c.json()) {
          out << Json(u) << "\n";
        } else {
          out << u.address() << "\t" << u.display_name() << "\t" << UserStateWord(u.state()) << "\n";
        }
      }
      req.mutable_page()->set_page_token(resp.page_info().next_page_token());
    } while (!req.page().page_token().empty());
    return absl::OkStatus();
  } else {
    return UnknownSubcommand(verb);
  }
  if (!s.ok()) return s;
  if (c.json()) {
    out << Json(d) << "\n";
  } else {
    Print(out, d);
  }
  return absl::OkStatus();
}

const bool kRegistered = RegisterCommand(
    {"dept", "the department tree (tenantd directory)",
     "mailctl dept create NAME [--parent PATH] | list [PATH] | show PATH\n"
     "      mailctl dept rename PATH NEW_NAME | move PATH --to PATH|/\n"
     "      mailctl dept delete PATH [--recursive] | members PATH [--recursive]",
     RunDept});

}  // namespace
}  // namespace mailgrid::mailctl
