// DirectoryService: groups (group mail). A group's direct members are kept
// in its record; T/memberof/<member>/<group> indexes them backwards, for
// cycle checks and for clean-up when a member goes. Department members are
// stored by id and expanded at resolve time, so they follow moves.
#include <algorithm>
#include <deque>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/base/status.h"
#include "services/tenant/directory_service.h"
#include "services/tenant/errors.h"
#include "services/tenant/tenant_service.h"
#include "services/tenant/validation.h"

namespace mailgrid::tenant {

using storage::AddressRecord;

namespace {

v1::Group GroupView(const storage::GroupRecord& r) {
  v1::Group g = r.group();
  g.set_member_count(r.members_size());
  return g;
}

bool SameMember(const v1::GroupMember& a, v1::MemberKind kind, const std::string& id) {
  return a.kind() == kind && a.id() == id;
}

absl::Status CheckPolicy(v1::PostingPolicy policy, int moderators) {
  if (!v1::PostingPolicy_IsValid(policy))
    return InvalidField("posting_policy", "UNKNOWN", "not a posting policy");
  if (policy == v1::POSTING_POLICY_MODERATED && moderators == 0)
    return InvalidField("moderator_user_ids", "EMPTY", "a MODERATED group needs moderators");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::GroupMember> DirectoryServiceImpl::CheckMember(const std::string& t,
                                                                  const v1::GroupMember& in,
                                                                  const std::string& field) {
  v1::GroupMember m;
  m.set_kind(in.kind());
  m.set_id(in.id());
  m.set_direct_only(in.direct_only());
  if (in.id().empty()) return InvalidField(field + ".id", "EMPTY", "must not be empty");
  switch (in.kind()) {
    case v1::MEMBER_KIND_USER: {
      ASSIGN_OR_RETURN(auto u, ReadUser(*store_, t, in.id()));
      m.set_display(u.value.user().address());
      break;
    }
    case v1::MEMBER_KIND_SHARED_MAILBOX: {
      ASSIGN_OR_RETURN(auto s, ReadShared(*store_, t, in.id()));
      m.set_display(s.value.mailbox().address());
      break;
    }
    case v1::MEMBER_KIND_GROUP: {
      ASSIGN_OR_RETURN(auto g, ReadGroup(*store_, t, in.id()));
      m.set_display(g.value.group().addresses(0));
      break;
    }
    case v1::MEMBER_KIND_DEPARTMENT: {
      ASSIGN_OR_RETURN(auto d, ReadDept(*store_, t, in.id()));
      ASSIGN_OR_RETURN(*m.mutable_display(), DeptPath(t, d.value, nullptr));
      break;
    }
    default:
      return InvalidField(field + ".kind", "UNKNOWN", "user, shared mailbox, group or department");
  }
  return m;
}

absl::StatusOr<bool> DirectoryServiceImpl::Reaches(const std::string& t, const std::string& from,
                                                   const std::string& target, Batch* pin) {
  std::deque<std::string> todo = {from};
  std::set<std::string> seen;
  while (!todo.empty()) {
    std::string g = todo.front();
    todo.pop_front();
    if (g == target) return true;
    if (!seen.insert(g).second) continue;
    ASSIGN_OR_RETURN(auto rec, store_->Read<storage::GroupRecord>(dkeys::Group(t, g)));
    if (!rec.found()) continue;
    // Pinned: a concurrent AddGroupMember on any group of the path makes
    // this write fail and re-check, so two racing adds cannot close a loop.
    if (pin != nullptr) pin->ExpectVersion(dkeys::Group(t, g), rec.version);
    for (const auto& m : rec.value.members())
      if (m.kind() == v1::MEMBER_KIND_GROUP) todo.push_back(m.id());
  }
  return false;
}

grpc::Status DirectoryServiceImpl::CreateGroup(Ctx* ctx, const v1::CreateGroupRequest* req,
                                               v1::Group* resp) {
  return Serve(*auth_, ctx, "CreateGroup", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid, AuthorizeTenant(p, req->tenant_id(), {.tenant_admin = true}));
    RETURN_IF_ERROR(ActiveTenant(tid).status());
    storage::GroupRecord rec;
    v1::Group& g = *rec.mutable_group();
    g.set_group_id(NewId("g-"));
    g.set_tenant_id(tid);
    ASSIGN_OR_RETURN(*g.mutable_name(), ValidateName(req->name(), "name", 200));
    ASSIGN_OR_RETURN(*g.mutable_description(),
                     ValidateOptionalText(req->description(), "description", 2000));
    ASSIGN_OR_RETURN(ParsedAddress a, NewAddress(tid, req->address(), "address"));
    g.add_addresses(a.address);
    RETURN_IF_ERROR(CheckPolicy(req->posting_policy(), 0));
    g.set_posting_policy(req->posting_policy() == v1::POSTING_POLICY_UNSPECIFIED
                             ? v1::POSTING_POLICY_INTERNAL
                             : req->posting_policy());
    if (g.posting_policy() == v1::POSTING_POLICY_MODERATED)
      return InvalidField("posting_policy", "NEEDS_MODERATORS",
                          "create the group, then SetGroupPolicy MODERATED with its moderators");
    g.set_members_can_send_as(req->members_can_send_as());
    *g.mutable_created_at() = ToProto(absl::Now());
    for (int i = 0; i < req->members_size(); ++i) {
      ASSIGN_OR_RETURN(auto m, CheckMember(tid, req->members(i), absl::StrCat("members[", i, "]")));
      bool dup = false;
      for (const auto& x : rec.members()) dup |= SameMember(x, m.kind(), m.id());
      if (!dup) *rec.add_members() = m;
    }
    RETURN_IF_ERROR(store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto taken, store_->GetRaw(dkeys::Address(a.key)));
      if (taken.has_value()) return AddressTaken("address", a.address);
      AddressRecord ar;
      ar.set_tenant_id(tid);
      ar.set_kind(AddressRecord::KIND_GROUP);
      ar.set_target_id(g.group_id());
      ar.set_address(a.address);
      Batch batch;
      batch.ExpectAbsent(dkeys::Address(a.key))
          .Put(dkeys::Address(a.key), ar)
          .PutRaw(dkeys::Object(g.group_id()), tid)
          .Put(dkeys::Group(tid, g.group_id()), rec);
      for (const auto& m : rec.members())
        batch.PutRaw(dkeys::MemberOf(tid, m.id(), g.group_id()), "");
      Changed(batch, tid, p, "group.create", "group", g.group_id(),
              absl::StrCat("group ", a.address, " created with ", rec.members_size(), " member(s)"));
      return batch;
    }));
    *resp = GroupView(rec);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::pair<std::string, std::string>> DirectoryServiceImpl::GroupOfRequest(
    const Principal& p, const std::string& group_id, const std::string& address, const Who& who) {
  std::string id = group_id;
  if (id.empty() && !address.empty()) {
    ASSIGN_OR_RETURN(ParsedAddress a, ParseAddress(address, "address"));
    ASSIGN_OR_RETURN(auto rec, store_->Read<AddressRecord>(dkeys::Address(a.key)));
    if (!rec.found() || rec.value.kind() != AddressRecord::KIND_GROUP) {
      RETURN_IF_ERROR(CheckAccess(p, "", who, NotFound("group", a.address)));
      return NotFound("group", a.address);
    }
    id = rec.value.target_id();
  }
  ASSIGN_OR_RETURN(std::string tid, AuthorizeObject(p, "group", id, who));
  if (who.any_authenticated && !p.HasRole(auth::kRoleService) && p.tenant_id != tid)
    return NotFound("group", id);
  return std::make_pair(tid, id);
}

grpc::Status DirectoryServiceImpl::GetGroup(Ctx* ctx, const v1::GetGroupRequest* req,
                                            v1::Group* resp) {
  return Serve(*auth_, ctx, "GetGroup", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(auto ids, GroupOfRequest(p, req->group_id(), req->address(),
                                              {.any_authenticated = true}));
    ASSIGN_OR_RETURN(auto rec, ReadGroup(*store_, ids.first, ids.second));
    *resp = GroupView(rec.value);
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::ListGroups(Ctx* ctx, const v1::ListGroupsRequest* req,
                                              v1::ListGroupsResponse* resp) {
  return Serve(*auth_, ctx, "ListGroups", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeTenant(p, req->tenant_id(), {.any_authenticated = true}));
    if (!p.HasRole(auth::kRoleService) && p.tenant_id != tid) return NotFound("tenant", tid);
    ASSIGN_OR_RETURN(auto page, store_->Scan(dkeys::GroupPrefix(tid), PageSize(req->page()),
                                             req->page().page_token()));
    const std::string q = NameKey(req->query());
    for (const auto& e : page.entries) {
      storage::GroupRecord r;
      if (!r.ParseFromString(e.value())) return absl::DataLossError("stored group does not parse");
      bool match = q.empty() || absl::StrContains(NameKey(r.group().name()), q);
      for (const auto& a : r.group().addresses()) match |= absl::StrContains(NameKey(a), q);
      if (match) *resp->add_groups() = GroupView(r);
    }
    resp->mutable_page_info()->set_next_page_token(page.next_token);
    return absl::OkStatus();
  });
}

// Runs `change` on the group record in a transaction; `change` may add to
// the batch and returns the audit summary.
absl::StatusOr<v1::Group> DirectoryServiceImpl::ChangeGroup(
    const Principal& p, const std::string& group_id, const std::string& action,
    const std::function<absl::StatusOr<std::string>(const std::string& tid,
                                                    storage::GroupRecord& rec, Batch& batch)>&
        change) {
  ASSIGN_OR_RETURN(std::string tid, AuthorizeObject(p, "group", group_id, {.tenant_admin = true}));
  RETURN_IF_ERROR(ActiveTenant(tid).status());
  v1::Group out;
  RETURN_IF_ERROR(store_->Transact([&]() -> absl::StatusOr<Batch> {
    ASSIGN_OR_RETURN(auto rec, ReadGroup(*store_, tid, group_id));
    Batch batch;
    batch.ExpectVersion(dkeys::Group(tid, group_id), rec.version);
    ASSIGN_OR_RETURN(std::string summary, change(tid, rec.value, batch));
    batch.Put(dkeys::Group(tid, group_id), rec.value);
    Changed(batch, tid, p, action, "group", group_id, summary);
    out = GroupView(rec.value);
    return batch;
  }));
  return out;
}

grpc::Status DirectoryServiceImpl::UpdateGroup(Ctx* ctx, const v1::UpdateGroupRequest* req,
                                               v1::Group* resp) {
  return Serve(*auth_, ctx, "UpdateGroup", [&](const Principal& p) -> absl::Status {
    std::string name;
    if (!req->name().empty()) {
      ASSIGN_OR_RETURN(name, ValidateName(req->name(), "name", 200));
    }
    ASSIGN_OR_RETURN(std::string description,
                     ValidateOptionalText(req->description(), "description", 2000));
    ASSIGN_OR_RETURN(*resp, ChangeGroup(p, req->group_id(), "group.update",
                                        [&](const std::string&, storage::GroupRecord& rec,
                                            Batch&) -> absl::StatusOr<std::string> {
                                          auto& g = *rec.mutable_group();
                                          if (!name.empty()) g.set_name(name);
                                          g.set_description(description);
                                          g.set_members_can_send_as(req->members_can_send_as());
                                          return absl::StrCat("group ", g.addresses(0), " updated");
                                        }));
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::DeleteGroup(Ctx* ctx, const v1::DeleteGroupRequest* req,
                                               v1::DeleteGroupResponse*) {
  return Serve(*auth_, ctx, "DeleteGroup", [&](const Principal& p) -> absl::Status {
    const std::string& id = req->group_id();
    ASSIGN_OR_RETURN(std::string tid, AuthorizeObject(p, "group", id, {.tenant_admin = true}));
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto rec, ReadGroup(*store_, tid, id));
      Batch batch;
      batch.ExpectVersion(dkeys::Group(tid, id), rec.version)
          .Delete(dkeys::Group(tid, id))
          .Delete(dkeys::Object(id));
      for (const auto& a : rec.value.group().addresses())
        batch.Delete(dkeys::Address(KeyOfAddress(a)));
      for (const auto& m : rec.value.members()) batch.Delete(dkeys::MemberOf(tid, m.id(), id));
      // Parent groups lose it as a member.
      RETURN_IF_ERROR(DropFromGroups(batch, tid, v1::MEMBER_KIND_GROUP, id));
      Changed(batch, tid, p, "group.delete", "group", id,
              absl::StrCat("group ", rec.value.group().addresses(0), " deleted"));
      return batch;
    });
  });
}

absl::Status DirectoryServiceImpl::DropFromGroups(Batch& b, const std::string& tid,
                                                  v1::MemberKind kind,
                                                  const std::string& member_id) {
  ASSIGN_OR_RETURN(auto groups, IdsUnder(*store_, dkeys::MemberOfPrefix(tid, member_id)));
  for (const auto& g : groups) {
    ASSIGN_OR_RETURN(auto group, store_->Read<storage::GroupRecord>(dkeys::Group(tid, g)));
    b.Delete(dkeys::MemberOf(tid, member_id, g));
    if (!group.found()) continue;
    auto* members = group.value.mutable_members();
    members->erase(std::remove_if(members->begin(), members->end(),
                                  [&](const v1::GroupMember& m) {
                                    return SameMember(m, kind, member_id);
                                  }),
                   members->end());
    b.ExpectVersion(dkeys::Group(tid, g), group.version).Put(dkeys::Group(tid, g), group.value);
  }
  return absl::OkStatus();
}

grpc::Status DirectoryServiceImpl::AddGroupMember(Ctx* ctx, const v1::AddGroupMemberRequest* req,
                                                  v1::Group* resp) {
  return Serve(*auth_, ctx, "AddGroupMember", [&](const Principal& p) -> absl::Status {
    const std::string& id = req->group_id();
    ASSIGN_OR_RETURN(*resp, ChangeGroup(p, id, "group.member.add",
                                        [&](const std::string& tid, storage::GroupRecord& rec,
                                            Batch& batch) -> absl::StatusOr<std::string> {
      ASSIGN_OR_RETURN(auto m, CheckMember(tid, req->member(), "member"));
      for (const auto& x : rec.members()) {
        if (SameMember(x, m.kind(), m.id()))
          return AlreadyExists("member", "ALREADY_EXISTS",
                               absl::StrCat(m.display(), " is already a direct member"));
      }
      if (m.kind() == v1::MEMBER_KIND_GROUP) {
        if (m.id() == id)
          return InvalidField("member", "CYCLE", "a group cannot contain itself");
        ASSIGN_OR_RETURN(bool loop, Reaches(tid, m.id(), id, &batch));
        if (loop)
          return InvalidField("member", "CYCLE",
                              absl::StrCat("group ", m.display(),
                                           " already contains this group (directly or through "
                                           "nested groups): adding it would make a loop"));
      }
      *rec.add_members() = m;
      batch.PutRaw(dkeys::MemberOf(tid, m.id(), id), "");
      return absl::StrCat(m.display(), " added to group ", rec.group().addresses(0));
    }));
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::RemoveGroupMember(Ctx* ctx,
                                                     const v1::RemoveGroupMemberRequest* req,
                                                     v1::Group* resp) {
  return Serve(*auth_, ctx, "RemoveGroupMember", [&](const Principal& p) -> absl::Status {
    const std::string& id = req->group_id();
    ASSIGN_OR_RETURN(*resp, ChangeGroup(p, id, "group.member.remove",
                                        [&](const std::string& tid, storage::GroupRecord& rec,
                                            Batch& batch) -> absl::StatusOr<std::string> {
      auto* m = rec.mutable_members();
      auto it = std::find_if(m->begin(), m->end(), [&](const v1::GroupMember& x) {
        return SameMember(x, req->kind(), req->id());
      });
      if (it == m->end()) return NotFound("direct member", req->id());
      std::string shown = it->display();
      m->erase(it);
      batch.Delete(dkeys::MemberOf(tid, req->id(), id));
      return absl::StrCat(shown, " removed from group ", rec.group().addresses(0));
    }));
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::SetGroupPolicy(Ctx* ctx, const v1::SetGroupPolicyRequest* req,
                                                  v1::Group* resp) {
  return Serve(*auth_, ctx, "SetGroupPolicy", [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(CheckPolicy(req->posting_policy(), req->moderator_user_ids_size()));
    ASSIGN_OR_RETURN(*resp, ChangeGroup(p, req->group_id(), "group.policy",
                                        [&](const std::string& tid, storage::GroupRecord& rec,
                                            Batch&) -> absl::StatusOr<std::string> {
      auto& g = *rec.mutable_group();
      g.clear_moderator_user_ids();
      for (int i = 0; i < req->moderator_user_ids_size(); ++i) {
        const std::string& u = req->moderator_user_ids(i);
        ASSIGN_OR_RETURN(auto user, store_->Read<storage::UserRecord>(dkeys::User(tid, u)));
        if (!user.found())
          return InvalidField(absl::StrCat("moderator_user_ids[", i, "]"), "NOT_FOUND",
                              absl::StrCat("user ", u, " not found"));
        g.add_moderator_user_ids(u);
      }
      g.set_posting_policy(req->posting_policy() == v1::POSTING_POLICY_UNSPECIFIED
                               ? v1::POSTING_POLICY_INTERNAL
                               : req->posting_policy());
      return absl::StrCat("group ", g.addresses(0), " posting policy ",
                          v1::PostingPolicy_Name(g.posting_policy()));
    }));
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::AddGroupAddress(Ctx* ctx, const v1::AddGroupAddressRequest* req,
                                                   v1::Group* resp) {
  return Serve(*auth_, ctx, "AddGroupAddress", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeObject(p, "group", req->group_id(), {.tenant_admin = true}));
    ASSIGN_OR_RETURN(ParsedAddress a, NewAddress(tid, req->address(), "address"));
    ASSIGN_OR_RETURN(*resp, ChangeGroup(p, req->group_id(), "group.address.add",
                                        [&](const std::string&, storage::GroupRecord& rec,
                                            Batch& batch) -> absl::StatusOr<std::string> {
      ASSIGN_OR_RETURN(auto taken, store_->GetRaw(dkeys::Address(a.key)));
      if (taken.has_value()) return AddressTaken("address", a.address);
      AddressRecord ar;
      ar.set_tenant_id(tid);
      ar.set_kind(AddressRecord::KIND_GROUP);
      ar.set_target_id(req->group_id());
      ar.set_address(a.address);
      batch.ExpectAbsent(dkeys::Address(a.key)).Put(dkeys::Address(a.key), ar);
      rec.mutable_group()->add_addresses(a.address);
      return absl::StrCat("address ", a.address, " added to group ", rec.group().addresses(0));
    }));
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::RemoveGroupAddress(Ctx* ctx,
                                                      const v1::RemoveGroupAddressRequest* req,
                                                      v1::Group* resp) {
  return Serve(*auth_, ctx, "RemoveGroupAddress", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(ParsedAddress a, ParseAddress(req->address(), "address"));
    ASSIGN_OR_RETURN(*resp, ChangeGroup(p, req->group_id(), "group.address.remove",
                                        [&](const std::string&, storage::GroupRecord& rec,
                                            Batch& batch) -> absl::StatusOr<std::string> {
      auto* list = rec.mutable_group()->mutable_addresses();
      auto it = std::find_if(list->begin(), list->end(),
                             [&](const std::string& x) { return KeyOfAddress(x) == a.key; });
      if (it == list->end()) return NotFound("group address", a.address);
      if (list->size() == 1)
        return Precondition("LAST_ADDRESS", "a group keeps at least one address", "address");
      list->erase(it);
      batch.Delete(dkeys::Address(a.key));
      return absl::StrCat("address ", a.address, " removed from group ", rec.group().addresses(0));
    }));
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::ListGroupMembers(Ctx* ctx,
                                                    const v1::ListGroupMembersRequest* req,
                                                    v1::ListGroupMembersResponse* resp) {
  return Serve(*auth_, ctx, "ListGroupMembers", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(auto ids, GroupOfRequest(p, req->group_id(), "", {.any_authenticated = true}));
    ASSIGN_OR_RETURN(auto rec, ReadGroup(*store_, ids.first, ids.second));
    if (!req->expand()) {
      for (const auto& m : rec.value.members()) {
        // Fresh display (department paths change with moves).
        auto fresh = CheckMember(ids.first, m, "member");
        *resp->add_members() = fresh.ok() ? *fresh : m;
      }
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(auto recipients, ExpandGroupRecipients(ids.first, ids.second, 0));
    for (auto& r : recipients) *resp->add_recipients() = std::move(r);
    resp->mutable_page_info()->set_total_size(resp->recipients_size());
    return absl::OkStatus();
  });
}

}  // namespace mailgrid::tenant
