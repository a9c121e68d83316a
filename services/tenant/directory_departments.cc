// DirectoryService: the department tree. A department stores only its name
// and parent; path, depth and counts are computed on read, so moving or
// renaming a subtree is one write however deep it is, and group
// memberships by department (resolved at expansion time) follow by
// themselves.
#include <algorithm>
#include <deque>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "libs/base/status.h"
#include "libs/base/strings.h"
#include "services/tenant/directory_service.h"
#include "services/tenant/errors.h"
#include "services/tenant/tenant_service.h"
#include "services/tenant/validation.h"

namespace mailgrid::tenant {

namespace {

constexpr int kMaxDepth = 64;  // a guard against a corrupted (cyclic) tree

absl::StatusOr<std::string> DeptName(std::string_view input, const std::string& field) {
  ASSIGN_OR_RETURN(std::string name, ValidateName(input, field, 100));
  if (name.find('/') != std::string::npos)
    return InvalidField(field, "HAS_SLASH", "'/' separates path components; not allowed in a name");
  return name;
}

}  // namespace

absl::StatusOr<std::string> DirectoryServiceImpl::DeptPath(const std::string& tid,
                                                           const v1::Department& d, int* depth) {
  std::vector<std::string> parts = {d.name()};
  std::string parent = d.parent_id();
  while (!parent.empty()) {
    if (parts.size() > kMaxDepth) return absl::DataLossError("department tree has a cycle");
    ASSIGN_OR_RETURN(auto p, ReadDept(*store_, tid, parent));
    parts.push_back(p.value.name());
    parent = p.value.parent_id();
  }
  std::reverse(parts.begin(), parts.end());
  if (depth != nullptr) *depth = static_cast<int>(parts.size()) - 1;
  return absl::StrJoin(parts, "/");
}

absl::StatusOr<v1::Department> DirectoryServiceImpl::DeptView(const std::string& tid,
                                                              v1::Department d, bool counts) {
  int depth = 0;
  ASSIGN_OR_RETURN(*d.mutable_path(), DeptPath(tid, d, &depth));
  d.set_depth(depth);
  d.set_tenant_id(tid);
  if (counts) {
    ASSIGN_OR_RETURN(auto children,
                     store_->ScanAll(dkeys::DeptChildPrefix(tid, d.department_id()), true));
    ASSIGN_OR_RETURN(auto members,
                     store_->ScanAll(dkeys::DeptMemberPrefix(tid, d.department_id()), true));
    d.set_child_count(static_cast<int64_t>(children.size()));
    d.set_direct_member_count(static_cast<int64_t>(members.size()));
  }
  return d;
}

absl::StatusOr<std::vector<std::string>> DirectoryServiceImpl::Subtree(const std::string& tid,
                                                                       const std::string& root) {
  std::vector<std::string> out;
  std::deque<std::string> todo = {root};
  std::set<std::string> seen;
  while (!todo.empty()) {
    std::string id = todo.front();
    todo.pop_front();
    if (!seen.insert(id).second) continue;
    out.push_back(id);
    ASSIGN_OR_RETURN(auto children, store_->ScanAll(dkeys::DeptChildPrefix(tid, id)));
    for (const auto& c : children) todo.push_back(c.value());
  }
  return out;
}

absl::StatusOr<std::string> DirectoryServiceImpl::FindDeptByPath(const std::string& tid,
                                                                 const std::string& path) {
  std::string parent;
  bool any = false;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipWhitespace())) {
    any = true;
    ASSIGN_OR_RETURN(std::string name, ValidateName(ToStd(part), "path", 100));
    ASSIGN_OR_RETURN(auto id, store_->GetRaw(dkeys::DeptChild(tid, parent, NameKey(name))));
    if (!id.has_value()) return NotFound("department", path);
    parent = *id;
  }
  if (!any) return InvalidField("path", "EMPTY", "must not be empty");
  return parent;
}

grpc::Status DirectoryServiceImpl::CreateDepartment(Ctx* ctx,
                                                    const v1::CreateDepartmentRequest* req,
                                                    v1::Department* resp) {
  return Serve(*auth_, ctx, "CreateDepartment", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid, AuthorizeTenant(p, req->tenant_id(), {.tenant_admin = true}));
    RETURN_IF_ERROR(ActiveTenant(tid).status());
    ASSIGN_OR_RETURN(std::string name, DeptName(req->name(), "name"));
    v1::Department d;
    d.set_department_id(NewId("d-"));
    d.set_tenant_id(tid);
    d.set_name(name);
    d.set_parent_id(req->parent_id());
    *d.mutable_created_at() = ToProto(absl::Now());
    RETURN_IF_ERROR(store_->Transact([&]() -> absl::StatusOr<Batch> {
      Batch batch;
      if (!d.parent_id().empty()) {
        ASSIGN_OR_RETURN(auto parent, ReadDept(*store_, tid, d.parent_id()));
        batch.ExpectVersion(dkeys::Dept(tid, d.parent_id()), parent.version);
      }
      const std::string sibling = dkeys::DeptChild(tid, d.parent_id(), NameKey(name));
      ASSIGN_OR_RETURN(auto taken, store_->GetRaw(sibling));
      if (taken.has_value())
        return AlreadyExists("name", "ALREADY_EXISTS",
                             absl::StrCat("a department named \"", name, "\" exists there already"));
      batch.ExpectAbsent(sibling)
          .PutRaw(sibling, d.department_id())
          .Put(dkeys::Dept(tid, d.department_id()), d)
          .PutRaw(dkeys::Object(d.department_id()), tid);
      Changed(batch, tid, p, "department.create", "department", d.department_id(),
              absl::StrCat("department \"", name, "\" created"));
      return batch;
    }));
    ASSIGN_OR_RETURN(*resp, DeptView(tid, d));
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::GetDepartment(Ctx* ctx, const v1::GetDepartmentRequest* req,
                                                 v1::Department* resp) {
  return Serve(*auth_, ctx, "GetDepartment", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid, AuthorizeObject(p, "department", req->department_id(),
                                                      {.any_authenticated = true}));
    if (!p.HasRole(auth::kRoleService) && p.tenant_id != tid)
      return NotFound("department", req->department_id());
    ASSIGN_OR_RETURN(auto d, ReadDept(*store_, tid, req->department_id()));
    ASSIGN_OR_RETURN(*resp, DeptView(tid, d.value));
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::RenameDepartment(Ctx* ctx,
                                                    const v1::RenameDepartmentRequest* req,
                                                    v1::Department* resp) {
  return Serve(*auth_, ctx, "RenameDepartment", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid, AuthorizeObject(p, "department", req->department_id(),
                                                      {.tenant_admin = true}));
    ASSIGN_OR_RETURN(std::string name, DeptName(req->new_name(), "new_name"));
    v1::Department out;
    RETURN_IF_ERROR(store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto d, ReadDept(*store_, tid, req->department_id()));
      const std::string old_key = dkeys::DeptChild(tid, d.value.parent_id(), NameKey(d.value.name()));
      const std::string new_key = dkeys::DeptChild(tid, d.value.parent_id(), NameKey(name));
      Batch batch;
      if (new_key != old_key) {
        ASSIGN_OR_RETURN(auto taken, store_->GetRaw(new_key));
        if (taken.has_value())
          return AlreadyExists("new_name", "ALREADY_EXISTS",
                               absl::StrCat("a sibling is named \"", name, "\" already"));
        batch.ExpectAbsent(new_key).Delete(old_key).PutRaw(new_key, d.value.department_id());
      }
      const std::string old_name = d.value.name();
      d.value.set_name(name);
      batch.ExpectVersion(dkeys::Dept(tid, req->department_id()), d.version)
          .Put(dkeys::Dept(tid, req->department_id()), d.value);
      Changed(batch, tid, p, "department.rename", "department", req->department_id(),
              absl::StrCat("department \"", old_name, "\" renamed to \"", name, "\""));
      out = d.value;
      return batch;
    }));
    ASSIGN_OR_RETURN(*resp, DeptView(tid, out));
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::MoveDepartment(Ctx* ctx, const v1::MoveDepartmentRequest* req,
                                                  v1::Department* resp) {
  return Serve(*auth_, ctx, "MoveDepartment", [&](const Principal& p) -> absl::Status {
    const std::string& id = req->department_id();
    ASSIGN_OR_RETURN(std::string tid, AuthorizeObject(p, "department", id, {.tenant_admin = true}));
    const std::string& to = req->new_parent_id();
    v1::Department out;
    RETURN_IF_ERROR(store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto d, ReadDept(*store_, tid, id));
      Batch batch;
      if (!to.empty()) {
        // Walk up from the new parent: meeting the department itself means
        // the new parent is the department or one of its descendants. Each
        // ancestor read is pinned so a concurrent move cannot slip a cycle in.
        std::string cur = to;
        int steps = 0;
        while (!cur.empty()) {
          if (cur == id)
            return InvalidField("new_parent_id", "CYCLE",
                                to == id ? "a department cannot be its own parent"
                                         : "the new parent is inside the department's own subtree");
          if (++steps > kMaxDepth) return absl::DataLossError("department tree has a cycle");
          auto anc = ReadDept(*store_, tid, cur);
          if (absl::IsNotFound(anc.status()) && cur == to) return NotFound("department", to);
          if (!anc.ok()) return anc.status();
          batch.ExpectVersion(dkeys::Dept(tid, cur), anc->version);
          cur = anc->value.parent_id();
        }
      }
      if (d.value.parent_id() == to) {
        out = d.value;
        return Batch();  // already there
      }
      const std::string key = NameKey(d.value.name());
      const std::string new_key = dkeys::DeptChild(tid, to, key);
      ASSIGN_OR_RETURN(auto taken, store_->GetRaw(new_key));
      if (taken.has_value())
        return AlreadyExists("new_parent_id", "ALREADY_EXISTS",
                             absl::StrCat("the new parent has a department named \"",
                                          d.value.name(), "\" already"));
      const std::string from = d.value.parent_id();
      d.value.set_parent_id(to);
      batch.ExpectVersion(dkeys::Dept(tid, id), d.version)
          .Delete(dkeys::DeptChild(tid, from, key))
          .ExpectAbsent(new_key)
          .PutRaw(new_key, id)
          .Put(dkeys::Dept(tid, id), d.value);
      Changed(batch, tid, p, "department.move", "department", id,
              absl::StrCat("department \"", d.value.name(), "\" moved from ",
                           from.empty() ? "the top" : from, " to ", to.empty() ? "the top" : to));
      out = d.value;
      return batch;
    }));
    ASSIGN_OR_RETURN(*resp, DeptView(tid, out));
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::DeleteDepartment(Ctx* ctx,
                                                    const v1::DeleteDepartmentRequest* req,
                                                    v1::DeleteDepartmentResponse* resp) {
  return Serve(*auth_, ctx, "DeleteDepartment", [&](const Principal& p) -> absl::Status {
    const std::string& id = req->department_id();
    ASSIGN_OR_RETURN(std::string tid, AuthorizeObject(p, "department", id, {.tenant_admin = true}));
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto root, ReadDept(*store_, tid, id));
      ASSIGN_OR_RETURN(auto subtree, Subtree(tid, id));
      Batch batch;
      int64_t detached = 0;
      std::set<std::string> users;
      for (const auto& d : subtree) {
        ASSIGN_OR_RETURN(auto dept, ReadDept(*store_, tid, d));
        ASSIGN_OR_RETURN(auto members, IdsUnder(*store_, dkeys::DeptMemberPrefix(tid, d)));
        if (!req->recursive() && (subtree.size() > 1 || !members.empty())) {
          return Precondition(
              "NOT_EMPTY",
              absl::StrCat("department \"", root.value.name(), "\" has ", subtree.size() - 1,
                           " sub-department(s) and ", members.size(),
                           " member(s): move them or delete with recursive"));
        }
        batch.ExpectVersion(dkeys::Dept(tid, d), dept.version)
            .Delete(dkeys::Dept(tid, d))
            .Delete(dkeys::Object(d))
            .Delete(dkeys::DeptChild(tid, dept.value.parent_id(), NameKey(dept.value.name())))
            .DeletePrefix(dkeys::DeptMemberPrefix(tid, d));
        for (const auto& u : members) users.insert(u);
        detached += static_cast<int64_t>(members.size());
        // Groups naming the department lose that member.
        ASSIGN_OR_RETURN(auto groups, IdsUnder(*store_, dkeys::MemberOfPrefix(tid, d)));
        for (const auto& g : groups) {
          ASSIGN_OR_RETURN(auto group, ReadGroup(*store_, tid, g));
          auto* m = group.value.mutable_members();
          m->erase(std::remove_if(m->begin(), m->end(),
                                  [&](const v1::GroupMember& x) { return x.id() == d; }),
                   m->end());
          batch.ExpectVersion(dkeys::Group(tid, g), group.version)
              .Put(dkeys::Group(tid, g), group.value)
              .Delete(dkeys::MemberOf(tid, d, g));
        }
      }
      std::set<std::string> gone(subtree.begin(), subtree.end());
      for (const auto& u : users) {
        ASSIGN_OR_RETURN(auto rec, ReadUser(*store_, tid, u));
        auto* ids = rec.value.mutable_user()->mutable_department_ids();
        ids->erase(std::remove_if(ids->begin(), ids->end(),
                                  [&](const std::string& x) { return gone.count(x) > 0; }),
                   ids->end());
        batch.ExpectVersion(dkeys::User(tid, u), rec.version).Put(dkeys::User(tid, u), rec.value);
      }
      Changed(batch, tid, p, "department.delete", "department", id,
              absl::StrCat("department \"", root.value.name(), "\" deleted (", subtree.size(),
                           " department(s), ", detached, " membership(s) removed)"));
      resp->set_departments_deleted(static_cast<int64_t>(subtree.size()));
      resp->set_members_detached(detached);
      return batch;
    });
  });
}

grpc::Status DirectoryServiceImpl::ListDepartments(Ctx* ctx, const v1::ListDepartmentsRequest* req,
                                                   v1::ListDepartmentsResponse* resp) {
  return Serve(*auth_, ctx, "ListDepartments", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeTenant(p, req->tenant_id(), {.any_authenticated = true}));
    if (!p.HasRole(auth::kRoleService) && p.tenant_id != tid) return NotFound("tenant", tid);
    ASSIGN_OR_RETURN(auto page, store_->Scan(dkeys::DeptChildPrefix(tid, req->parent_id()),
                                             PageSize(req->page()), req->page().page_token()));
    for (const auto& e : page.entries) {
      ASSIGN_OR_RETURN(auto d, ReadDept(*store_, tid, e.value()));
      ASSIGN_OR_RETURN(*resp->add_departments(), DeptView(tid, d.value));
    }
    resp->mutable_page_info()->set_next_page_token(page.next_token);
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::ResolveDepartmentPath(
    Ctx* ctx, const v1::ResolveDepartmentPathRequest* req, v1::Department* resp) {
  return Serve(*auth_, ctx, "ResolveDepartmentPath", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeTenant(p, req->tenant_id(), {.any_authenticated = true}));
    if (!p.HasRole(auth::kRoleService) && p.tenant_id != tid) return NotFound("tenant", tid);
    ASSIGN_OR_RETURN(std::string id, FindDeptByPath(tid, req->path()));
    ASSIGN_OR_RETURN(auto d, ReadDept(*store_, tid, id));
    ASSIGN_OR_RETURN(*resp, DeptView(tid, d.value));
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::ListDepartmentMembers(
    Ctx* ctx, const v1::ListDepartmentMembersRequest* req,
    v1::ListDepartmentMembersResponse* resp) {
  return Serve(*auth_, ctx, "ListDepartmentMembers", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid, AuthorizeObject(p, "department", req->department_id(),
                                                      {.any_authenticated = true}));
    auto access = AuthorizeUserRead(p, tid);
    if (absl::IsNotFound(access.status())) return NotFound("department", req->department_id());
    if (!access.ok()) return access.status();
    std::vector<std::string> depts = {req->department_id()};
    if (req->recursive()) {
      ASSIGN_OR_RETURN(depts, Subtree(tid, req->department_id()));
    }
    // Bounded by the tenant's size; pages are cut from the merged list.
    std::set<std::string> users;
    for (const auto& d : depts) {
      ASSIGN_OR_RETURN(auto ids, IdsUnder(*store_, dkeys::DeptMemberPrefix(tid, d)));
      users.insert(ids.begin(), ids.end());
    }
    const uint32_t size = PageSize(req->page());
    auto it = req->page().page_token().empty() ? users.begin()
                                               : users.upper_bound(req->page().page_token());
    for (uint32_t n = 0; it != users.end() && n < size; ++it, ++n) {
      ASSIGN_OR_RETURN(auto rec, ReadUser(*store_, tid, *it));
      *resp->add_users() = UserView(p, rec.value.user());
    }
    if (it != users.end() && resp->users_size() > 0)
      resp->mutable_page_info()->set_next_page_token(resp->users(resp->users_size() - 1).user_id());
    resp->mutable_page_info()->set_total_size(static_cast<int64_t>(users.size()));
    return absl::OkStatus();
  });
}

}  // namespace mailgrid::tenant
