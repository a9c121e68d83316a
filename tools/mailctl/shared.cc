// mailctl shared create|list|show|assign|unassign|seats|delete
// Shared mailboxes with seats (DirectoryService).
#include <ostream>

#include "absl/strings/str_cat.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/directory_client.h"

namespace mailgrid::mailctl {
namespace {

void Print(std::ostream& out, const dirv1::SharedMailbox& m) {
  out << m.address() << "\t" << m.shared_mailbox_id() << "\tshard " << m.shard() << "\t"
      << m.seats_used() << " seat(s)" << (m.has_purge_after() ? "\tDELETED" : "") << "\n";
}

absl::Status RunShared(const Invocation& inv) {
  ASSIGN_OR_RETURN(const Subcommand sub, ParseSubcommand(inv, {"send-as"}));
  const std::string& verb = sub.verb;
  const Args& a = sub.args;
  ASSIGN_OR_RETURN(const TenantdClient c, TenantdClient::Connect(inv, a));
  std::ostream& out = *inv.out;
  const std::string tenant = a.Get("tenant");
  absl::Status s;
  if (verb == "list") {
    dirv1::ListSharedMailboxesRequest req;
    req.set_tenant_id(tenant);
    ASSIGN_OR_RETURN(const auto resp, ListAll(c, req, &DirStub::ListSharedMailboxes));
    for (const auto& m : resp.shared_mailboxes()) {
      if (c.json()) {
        out << Json(m) << "\n";
      } else {
        Print(out, m);
      }
    }
    return absl::OkStatus();
  }
  auto ref = a.Positional(0, "SHARED_ADDRESS");
  if (!ref.ok()) return ref.status();
  if (verb == "create") {
    dirv1::CreateSharedMailboxRequest req;
    req.set_tenant_id(tenant);
    req.set_address(*ref);
    req.set_display_name(a.Get("name"));
    dirv1::SharedMailbox m;
    s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) {
      return d.CreateSharedMailbox(ctx, req, &m);
    });
    if (!s.ok()) return s;
    if (c.json()) {
      out << Json(m) << "\n";
    } else {
      Print(out, m);
    }
    return absl::OkStatus();
  }
  auto id = SharedIdOf(c, *ref, tenant);
  if (!id.ok()) return id.status();
  if (verb == "assign" || verb == "unassign") {
    auto user = a.Positional(1, "USER_ADDRESS");
    if (!user.ok()) return user.status();
    auto uid = UserIdOf(c, *user);
    if (!uid.ok()) return uid.status();
    if (verb == "assign") {
      dirv1::AssignSeatRequest req;
      req.set_shared_mailbox_id(*id);
      req.set_user_id(*uid);
      req.set_can_send_as(a.Has("send-as"));
      dirv1::Seat seat;
      s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.AssignSeat(ctx, req, &seat); });
      if (!s.ok()) return s;
      if (c.json())
        out << Json(seat) << "\n";
      else
        out << seat.user_address() << " seated at " << seat.shared_mailbox_address() << "\n";
      return s;
    }
    dirv1::UnassignSeatRequest req;
    req.set_shared_mailbox_id(*id);
    req.set_user_id(*uid);
    dirv1::UnassignSeatResponse resp;
    s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.UnassignSeat(ctx, req, &resp); });
    if (s.ok() && !c.json()) out << *user << " unseated from " << *ref << "\n";
    return s;
  }
  if (verb == "seats") {
    dirv1::ListSeatsRequest req;
    req.set_shared_mailbox_id(*id);
    ASSIGN_OR_RETURN(const auto resp, ListAll(c, req, &DirStub::ListSeats));
    for (const auto& seat : resp.seats()) {
      if (c.json())
        out << Json(seat) << "\n";
      else
        out << seat.user_address() << (seat.can_send_as() ? "\tsend-as" : "") << "\n";
    }
    return absl::OkStatus();
  }
  if (verb == "show") {
    dirv1::GetSharedMailboxRequest req;
    req.set_shared_mailbox_id(*id);
    dirv1::SharedMailbox m;
    s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.GetSharedMailbox(ctx, req, &m); });
    if (!s.ok()) return s;
    if (c.json())
      out << Json(m) << "\n";
    else
      Print(out, m);
    return s;
  }
  if (verb == "delete") {
    dirv1::DeleteSharedMailboxRequest req;
    req.set_shared_mailbox_id(*id);
    req.set_reason(a.Get("reason"));
    dirv1::DeleteSharedMailboxResponse resp;
    s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) {
      return d.DeleteSharedMailbox(ctx, req, &resp);
    });
    if (s.ok()) out << "deleted " << *ref << "\n";
    return s;
  }
  return UnknownSubcommand(verb);
}

const bool kRegistered = RegisterCommand(
    {"shared", "shared mailboxes and their seats (tenantd directory)",
     "mailctl shared create ADDRESS [--name N] | list | show ADDRESS | delete ADDRESS\n"
     "      mailctl shared assign ADDRESS USER [--send-as] | unassign ADDRESS USER | seats ADDRESS",
     RunShared});

}  // namespace
}  // namespace mailgrid::mailctl
