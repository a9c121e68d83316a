// mailctl audit: mail held by relayd for audit or moderation (RelayService
// held-mail RPCs, issue 9).
//
//   mailctl audit list [--state HELD|APPROVED|REJECTED|EXPIRED] [--kind audit|moderation]
//                      [--sender S] [--tenant T]
//   mailctl audit show HELD_ID
//   mailctl audit download HELD_ID [--out FILE]   (the raw message; "-" or none: stdout)
//   mailctl audit approve HELD_ID [--note TEXT]
//   mailctl audit reject HELD_ID --reason TEXT    (the sender is told the reason)
//
// Finding relayd as `mailctl queue` does (--relayd, MAILGRID_RELAYD,
// cluster.json). Minted tokens default to the auditor role: pass
// --token-tenant T and --subject USER_ID (an auditor of the tenant; the
// policy may name which ones may decide).
#include <fstream>
#include <iostream>
#include <ostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "mailgrid/relay/v1/relay.grpc.pb.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/relay_call.h"
#include "tools/mailctl/tenant_client.h"

namespace mailgrid::mailctl {
namespace {

namespace rv1 = ::mailgrid::relay::v1;

void PrintHeld(std::ostream& out, const rv1::HeldMessage& h, bool detail) {
  out << h.held_id() << "\t" << EnumWord(rv1::HoldKind_Name(h.kind()), "HOLD_KIND_") << "\t"
      << EnumWord(rv1::HeldState_Name(h.state()), "HELD_STATE_") << "\t" << h.sender().address()
      << "\t" << h.size_bytes() << "\t" << When(h.held_at().seconds()) << "\t" << h.subject()
      << "\n";
  if (!detail) return;
  out << "  to: " << absl::StrJoin(h.recipients(), ", ") << "\n";
  out << "  tenant " << h.tenant_id() << ", expires " << When(h.expires_at().seconds()) << "\n";
  for (const auto& r : h.matched_rules())
    out << "  rule: " << r.rule_id() << (r.rule_name().empty() ? "" : " (" + r.rule_name() + ")")
        << "\n";
  if (!h.group_address().empty()) out << "  group: " << h.group_address() << "\n";
  if (h.attachment_names_size() > 0)
    out << "  attachments: " << absl::StrJoin(h.attachment_names(), ", ") << "\n";
  if (h.has_decided_at()) {
    const auto& by = h.decided_by();
    out << "  decided " << When(h.decided_at().seconds()) << " by "
        << (by.user_id().empty() ? by.service() : by.user_id())
        << (h.decision_reason().empty() ? "" : ": " + h.decision_reason()) << "\n";
  }
  if (!h.preview_headers().empty()) out << "\n" << h.preview_headers() << "\n";
  if (!h.preview_text().empty()) out << h.preview_text() << "\n";
}

absl::Status Download(const ServiceClient& c, const std::string& id, const std::string& path,
                      std::ostream& out) {
  rv1::DownloadHeldMessageRequest req;
  req.set_held_id(id);
  std::string bytes;
  rv1::HeldMessage meta;
  absl::Status s = CallRelay(c, [&](rv1::RelayService::Stub& st, grpc::ClientContext* ctx) {
    bytes.clear();  // a retry on another replica starts over
    auto reader = st.DownloadHeldMessage(ctx, req);
    rv1::DownloadHeldMessageResponse part;
    while (reader->Read(&part)) {
      if (part.has_metadata()) meta = part.metadata();
      else bytes += part.chunk();
    }
    return reader->Finish();
  });
  if (!s.ok()) return s;
  if (path.empty() || path == "-") {
    out << bytes;
    return absl::OkStatus();
  }
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << bytes;
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
  out << (c.json() ? absl::StrCat("{\"held_id\":\"", id, "\",\"bytes\":", bytes.size(),
                                  ",\"file\":\"", path, "\"}")
                   : absl::StrCat("saved ", bytes.size(), " bytes of ", id, " (\"",
                                  meta.subject(), "\") to ", path))
      << "\n";
  return absl::OkStatus();
}

absl::Status RunAudit(const Invocation& inv) {
  ASSIGN_OR_RETURN(const Subcommand sub, ParseSubcommand(inv));
  const std::string& verb = sub.verb;
  const Args& a = sub.args;
  ASSIGN_OR_RETURN(const ServiceClient c, ServiceClient::Connect(inv, a, {"relayd", "auditor", absl::Seconds(60)}));
  std::ostream& out = *inv.out;
  if (verb == "list") {
    rv1::ListHeldMessagesRequest req;
    req.set_tenant_id(a.Get("tenant"));
    req.set_sender(a.Get("sender"));
    if (a.Has("state")) {
      rv1::HeldState st;
      if (!rv1::HeldState_Parse("HELD_STATE_" + absl::AsciiStrToUpper(a.Get("state")), &st))
        return absl::InvalidArgumentError("--state: HELD, APPROVED, REJECTED or EXPIRED");
      req.add_states(st);
    }
    if (a.Has("kind")) {
      rv1::HoldKind k;
      if (!rv1::HoldKind_Parse("HOLD_KIND_" + absl::AsciiStrToUpper(a.Get("kind")), &k))
        return absl::InvalidArgumentError("--kind: audit or moderation");
      req.set_kind(k);
    }
    rv1::ListHeldMessagesResponse resp;
    auto s = CallRelay(c, &rv1::RelayService::Stub::ListHeldMessages, req, &resp);
    if (!s.ok()) return s;
    for (const auto& h : resp.messages()) {
      if (c.json()) out << Json(h) << "\n";
      else PrintHeld(out, h, false);
    }
    if (!c.json()) out << resp.messages_size() << " held messages\n";
    return absl::OkStatus();
  }
  auto id = a.Positional(0, "HELD_ID");
  if (!id.ok()) return id.status();
  if (verb == "download") return Download(c, *id, a.Get("out"), out);
  rv1::HeldMessage held;
  absl::Status s;
  if (verb == "show") {
    rv1::GetHeldMessageRequest req;
    req.set_held_id(*id);
    s = CallRelay(c, &rv1::RelayService::Stub::GetHeldMessage, req, &held);
  } else if (verb == "approve") {
    rv1::ApproveHeldMessageRequest req;
    req.set_held_id(*id);
    req.set_note(a.Get("note"));
    s = CallRelay(c, &rv1::RelayService::Stub::ApproveHeldMessage, req, &held);
  } else if (verb == "reject") {
    auto reason = a.Required("reason");
    if (!reason.ok()) return reason.status();
    rv1::RejectHeldMessageRequest req;
    req.set_held_id(*id);
    req.set_reason(*reason);
    s = CallRelay(c, &rv1::RelayService::Stub::RejectHeldMessage, req, &held);
  } else {
    return UnknownSubcommand(verb);
  }
  if (!s.ok()) return s;
  if (c.json()) out << Json(held) << "\n";
  else PrintHeld(out, held, true);
  return absl::OkStatus();
}

const bool kRegistered = RegisterCommand(
    {"audit", "mail held for audit or moderation (RelayService)",
     "mailctl audit list [--state HELD|APPROVED|REJECTED|EXPIRED] [--kind audit|moderation]\n"
     "                         [--sender S] [--tenant T]\n"
     "      mailctl audit show HELD_ID | download HELD_ID [--out FILE]\n"
     "      mailctl audit approve HELD_ID [--note N] | reject HELD_ID --reason R",
     RunAudit});

}  // namespace
}  // namespace mailgrid::mailctl
