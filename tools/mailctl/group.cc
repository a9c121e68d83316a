// mailctl group create|add|remove|list|policy|delete|address
// DirectoryService groups. Members: user:ADDR, group:ADDR, shared:ADDR,
// dept:PATH (with sub-departments), dept-direct:PATH, or a bare address.
#include <ostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/directory_client.h"

namespace mailgrid::mailctl {
namespace {

std::string Kind(dirv1::MemberKind k) { return EnumWord(dirv1::MemberKind_Name(k), "MEMBER_KIND_"); }

void Print(std::ostream& out, const dirv1::Group& g) {
  out << "group       " << g.group_id() << "\n"
      << "name        " << g.name() << "\n";
  for (const auto& a : g.addresses()) out << "address     " << a << "\n";
  out << "policy      " << EnumWord(dirv1::PostingPolicy_Name(g.posting_policy()), "POSTING_POLICY_")
      << "\n"
      << "members     " << g.member_count() << "\n";
}

absl::Status RunGroup(const Invocation& inv) {
  ASSIGN_OR_RETURN(const Subcommand sub, ParseSubcommand(inv, {"expand", "members-can-send-as"}));
  const std::string& verb = sub.verb;
  const Args& a = sub.args;
  ASSIGN_OR_RETURN(const TenantdClient c, TenantdClient::Connect(inv, a));
  std::ostream& out = *inv.out;
  const std::string tenant = a.Get("tenant");
  dirv1::Group g;
  absl::Status s;
  if (verb == "list" && a.positional.empty()) {
    dirv1::ListGroupsRequest req;
    req.set_tenant_id(tenant);
    req.set_query(a.Get("query"));
    ASSIGN_OR_RETURN(const auto resp, ListAll(c, req, &DirStub::ListGroups));
    for (const auto& x : resp.groups()) {
      if (c.json()) {
        out << Json(x) << "\n";
      } else {
        out << x.addresses(0) << "\t" << x.name() << "\t" << x.member_count() << " member(s)\n";
      }
    }
    return absl::OkStatus();
  }
  auto ref = a.Positional(0, "GROUP_ADDRESS");
  if (!ref.ok()) return ref.status();
  if (verb == "create") {
    dirv1::CreateGroupRequest req;
    req.set_tenant_id(tenant);
    req.set_address(*ref);
    req.set_name(a.Get("name", *ref));
    req.set_description(a.Get("description"));
    req.set_members_can_send_as(a.Has("members-can-send-as"));
    if (a.Has("policy")) {
      dirv1::PostingPolicy p;
      if (!dirv1::PostingPolicy_Parse("POSTING_POLICY_" + absl::AsciiStrToUpper(a.Get("policy")), &p))
        return absl::InvalidArgumentError("--policy: anyone, internal or members");
      req.set_posting_policy(p);
    }
    for (size_t i = 1; i < a.positional.size(); ++i) {
      auto m = MemberOf(c, a.positional[i], tenant);
      if (!m.ok()) return m.status();
      *req.add_members() = *m;
    }
    s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.CreateGroup(ctx, req, &g); });
    if (!s.ok()) return s;
    if (c.json()) {
      out << Json(g) << "\n";
    } else {
      Print(out, g);
    }
    return absl::OkStatus();
  }
  auto id = GroupIdOf(c, *ref);
  if (!id.ok()) return id.status();
  if (verb == "add" || verb == "remove") {
    if (a.positional.size() < 2) return absl::InvalidArgumentError("missing MEMBER");
    for (size_t i = 1; i < a.positional.size(); ++i) {
      auto m = MemberOf(c, a.positional[i], tenant);
      if (!m.ok()) return m.status();
      if (verb == "add") {
        dirv1::AddGroupMemberRequest req;
        req.set_group_id(*id);
        *req.mutable_member() = *m;
        s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) {
          return d.AddGroupMember(ctx, req, &g);
        });
      } else {
        dirv1::RemoveGroupMemberRequest req;
        req.set_group_id(*id);
        req.set_kind(m->kind());
        req.set_id(m->id());
        s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) {
          return d.RemoveGroupMember(ctx, req, &g);
        });
      }
      if (!s.ok()) return s;
    }
    if (c.json()) {
      out << Json(g) << "\n";
    } else {
      out << *ref << ": " << g.member_count() << " direct member(s)\n";
    }
    return absl::OkStatus();
  }
  if (verb == "list") {
    dirv1::ListGroupMembersRequest req;
    req.set_group_id(*id);
    req.set_expand(a.Has("expand"));
    ASSIGN_OR_RETURN(const auto resp, ListAll(c, req, &DirStub::ListGroupMembers));
    if (c.json()) {
      out << Json(resp) << "\n";
      return absl::OkStatus();
    }
    for (const auto& m : resp.members())
      out << Kind(m.kind()) << "\t" << m.display() << (m.direct_only() ? " (direct only)" : "")
          << "\n";
    for (const auto& r : resp.recipients())
      out << r.address() << "\tshard " << r.shard() << "\t" << r.mailbox_id() << "\n";
    return absl::OkStatus();
  }
  if (verb == "policy") {
    auto word = a.Positional(1, "anyone|internal|members|moderated");
    if (!word.ok()) return word.status();
    dirv1::SetGroupPolicyRequest req;
    req.set_group_id(*id);
    dirv1::PostingPolicy p;
    if (!dirv1::PostingPolicy_Parse("POSTING_POLICY_" + absl::AsciiStrToUpper(*word), &p))
      return absl::InvalidArgumentError("policy: anyone, internal, members or moderated");
    req.set_posting_policy(p);
    for (absl::string_view m : absl::StrSplit(a.Get("moderators"), ',', absl::SkipEmpty())) {
      auto uid = UserIdOf(c, std::string(m));
      if (!uid.ok()) return uid.status();
      req.add_moderator_user_ids(*uid);
    }
    s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.SetGroupPolicy(ctx, req, &g); });
  } else if (verb == "address") {
    auto extra = a.Positional(1, "ADDRESS");
    if (!extra.ok()) return extra.status();
    dirv1::AddGroupAddressRequest req;
    req.set_group_id(*id);
    req.set_address(*extra);
    s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.AddGroupAddress(ctx, req, &g); });
  } else if (verb == "delete") {
    dirv1::DeleteGroupRequest req;
    req.set_group_id(*id);
    dirv1::DeleteGroupResponse resp;
    s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.DeleteGroup(ctx, req, &resp); });
    if (s.ok()) out << "deleted " << *ref << "\n";
    return s;
  } else if (verb == "show") {
    dirv1::GetGroupRequest req;
    req.set_group_id(*id);
    s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.GetGroup(ctx, req, &g); });
  } else {
    return UnknownSubcommand(verb);
  }
  if (!s.ok()) return s;
  if (c.json()) {
    out << Json(g) << "\n";
  } else {
    Print(out, g);
  }
  return absl::OkStatus();
}

const bool kRegistered = RegisterCommand(
    {"group", "group mail: groups, members, posting policy (tenantd directory)",
     "mailctl group create ADDRESS [--name N] [--policy anyone|internal|members] [MEMBER...]\n"
     "      mailctl group add|remove GROUP MEMBER...   (user:A group:A shared:A dept:PATH "
     "dept-direct:PATH)\n"
     "      mailctl group list [GROUP [--expand]] | show GROUP | delete GROUP\n"
     "      mailctl group policy GROUP anyone|internal|members|moderated [--moderators A,B]\n"
     "      mailctl group address GROUP EXTRA_ADDRESS",
     RunGroup});

}  // namespace
}  // namespace mailgrid::mailctl
