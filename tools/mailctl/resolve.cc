// mailctl resolve ADDRESS: what relayd would do with RCPT TO:<ADDRESS>
// (DirectoryService.Resolve; a tenant admin sees its own tenant's addresses).
#include <ostream>

#include "absl/strings/str_cat.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/directory_client.h"

namespace mailgrid::mailctl {
namespace {

absl::Status RunResolve(const Invocation& inv) {
  auto parsed = ParseArgs(inv.args, {"authenticated"});
  if (!parsed.ok()) return parsed.status();
  const Args& a = *parsed;
  auto address = a.Positional(0, "ADDRESS");
  if (!address.ok()) return address.status();
  ASSIGN_OR_RETURN(const TenantdClient c, TenantdClient::Connect(inv, a));
  dirv1::ResolveRequest req;
  req.set_address(*address);
  req.mutable_sender()->set_envelope_from(a.Get("from"));
  req.mutable_sender()->set_authenticated(a.Has("authenticated"));
  req.mutable_sender()->set_tenant_id(a.Get("sender-tenant"));
  req.mutable_sender()->set_user_id(a.Get("sender-user"));
  if (a.Has("max")) req.set_max_recipients(std::stoi(a.Get("max")));
  dirv1::ResolveResponse resp;
  auto s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.Resolve(ctx, req, &resp); });
  if (!s.ok()) return s;
  std::ostream& out = *inv.out;
  if (c.json()) {
    out << Json(resp) << "\n";
    return absl::OkStatus();
  }
  out << "address     " << resp.canonical_address()
      << (resp.detail().empty() ? "" : " (detail \"" + resp.detail() + "\")") << "\n"
      << "kind        " << EnumWord(dirv1::AddressKind_Name(resp.kind()), "ADDRESS_KIND_") << "\n"
      << "posting     "
      << EnumWord(dirv1::PostingDecision_Name(resp.posting_decision()), "POSTING_DECISION_")
      << (resp.posting_detail().empty() ? "" : " (" + resp.posting_detail() + ")") << "\n"
      << "recipients  " << resp.recipients_size() << "\n";
  for (const auto& r : resp.recipients())
    out << "  " << r.address() << "\tshard " << r.shard() << "\t" << r.mailbox_id()
        << (r.disabled() ? "\t(disabled)" : "") << "\n";
  return absl::OkStatus();
}

const bool kRegistered = RegisterCommand(
    {"resolve", "who receives mail for an address (tenantd directory, as relayd asks)",
     "mailctl resolve ADDRESS [--authenticated --sender-tenant T --sender-user U] [--max N]",
     RunResolve});

}  // namespace
}  // namespace mailgrid::mailctl
