// mailctl queue: relayd's outbound queue (RelayService, issue 9).
//
//   mailctl queue list [--domain D] [--sender S] [--state QUEUED|DEFERRED|ACTIVE|HELD]
//                      [--tenant T] [--limit N]
//   mailctl queue show QUEUE_ID
//   mailctl queue retry QUEUE_ID [--recipient ADDRESS]
//   mailctl queue hold QUEUE_ID [--reason TEXT]
//   mailctl queue release QUEUE_ID
//   mailctl queue delete QUEUE_ID --reason TEXT
//   mailctl queue bounce QUEUE_ID --reason TEXT
//
// Finding relayd: --relayd ADDR[,ADDR] (or MAILGRID_RELAYD), else the
// cluster.json "relayd" list; any replica answers (the queue is shared).
// Credentials as every group (tenant_client.h); minted tokens default to
// the platform_operator role (a tenant admin: --role tenant_admin
// --token-tenant T).
#include <ostream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "mailgrid/relay/v1/relay.grpc.pb.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/relay_call.h"
#include "tools/mailctl/tenant_client.h"

namespace mailgrid::mailctl {
namespace {

namespace rv1 = ::mailgrid::relay::v1;

std::string StateWord(rv1::QueueState s) {
  return EnumWord(rv1::QueueState_Name(s), "QUEUE_STATE_");
}

void PrintEntry(std::ostream& out, const rv1::QueueEntry& e, bool detail) {
  out << e.queue_id() << "\t" << StateWord(e.state()) << "\t"
      << (e.envelope_from().empty() ? "<>" : e.envelope_from()) << "\t" << e.size_bytes()
      << "\t" << When(e.created_at().seconds()) << "\t" << e.recipients_size() << " rcpt\t"
      << e.subject() << "\n";
  if (!detail) return;
  if (!e.hold_reason().empty()) out << "  held: " << e.hold_reason() << "\n";
  out << "  tenant " << (e.tenant_id().empty() ? "-" : e.tenant_id()) << ", expires "
      << When(e.expires_at().seconds()) << "\n";
  if (!e.lease_holder().empty()) {
    out << "  leased by " << e.lease_holder() << " until " << When(e.lease_expires_at().seconds())
        << "\n";
  }
  for (const auto& r : e.recipients()) {
    out << "  " << r.address() << "\t" << EnumWord(rv1::RecipientState_Name(r.state()), "RECIPIENT_STATE_")
        << "\tattempts " << r.attempts() << "\tnext " << When(r.next_attempt_at().seconds());
    const auto& lr = r.last_reply();
    if (lr.code() != 0 || !lr.error().empty()) {
      out << "\tlast: ";
      if (lr.code() != 0) out << lr.code() << " " << lr.enhanced_code() << " " << lr.text();
      if (!lr.error().empty()) out << " (" << lr.error() << ")";
      if (!lr.remote_host().empty()) out << " from " << lr.remote_host();
    }
    out << "\n";
  }
}

absl::Status RunQueue(const Invocation& inv) {
  ASSIGN_OR_RETURN(const Subcommand sub, ParseSubcommand(inv));
  const std::string& verb = sub.verb;
  const Args& a = sub.args;
  ASSIGN_OR_RETURN(const ServiceClient c, ServiceClient::Connect(inv, a, {"relayd", "platform_operator", absl::Seconds(60)}));
  std::ostream& out = *inv.out;
  auto print = [&](const rv1::QueueEntry& e) {
    if (c.json()) out << Json(e) << "\n";
    else PrintEntry(out, e, true);
  };
  if (verb == "list") {
    rv1::ListQueueRequest req;
    req.set_domain(a.Get("domain"));
    req.set_sender(a.Get("sender"));
    req.set_tenant_id(a.Get("tenant"));
    if (a.Has("state")) {
      rv1::QueueState st;
      if (!rv1::QueueState_Parse("QUEUE_STATE_" + absl::AsciiStrToUpper(a.Get("state")), &st))
        return absl::InvalidArgumentError("--state: QUEUED, DEFERRED, ACTIVE, HELD or DONE");
      req.add_states(st);
    }
    int limit = 100;
    if (a.Has("limit") && !absl::SimpleAtoi(a.Get("limit"), &limit))
      return absl::InvalidArgumentError("--limit: a number");
    req.mutable_page()->set_page_size(limit);
    rv1::ListQueueResponse resp;
    auto s = CallRelay(c, &rv1::RelayService::Stub::ListQueue, req, &resp);
    if (!s.ok()) return s;
    for (const auto& e : resp.entries()) {
      if (c.json()) out << Json(e) << "\n";
      else PrintEntry(out, e, false);
    }
    if (!c.json()) out << resp.entries_size() << " entries\n";
    return absl::OkStatus();
  }
  auto id = a.Positional(0, "QUEUE_ID");
  if (!id.ok()) return id.status();
  rv1::QueueEntry entry;
  absl::Status s;
  if (verb == "show") {
    rv1::GetQueueEntryRequest req;
    req.set_queue_id(*id);
    s = CallRelay(c, &rv1::RelayService::Stub::GetQueueEntry, req, &entry);
  } else if (verb == "retry") {
    rv1::RetryNowRequest req;
    req.set_queue_id(*id);
    req.set_recipient(a.Get("recipient"));
    s = CallRelay(c, &rv1::RelayService::Stub::RetryNow, req, &entry);
  } else if (verb == "hold") {
    rv1::HoldRequest req;
    req.set_queue_id(*id);
    req.set_reason(a.Get("reason", "held with mailctl"));
    s = CallRelay(c, &rv1::RelayService::Stub::Hold, req, &entry);
  } else if (verb == "release") {
    rv1::ReleaseRequest req;
    req.set_queue_id(*id);
    s = CallRelay(c, &rv1::RelayService::Stub::Release, req, &entry);
  } else if (verb == "delete") {
    auto reason = a.Required("reason");
    if (!reason.ok()) return reason.status();
    rv1::DeleteQueueEntryRequest req;
    req.set_queue_id(*id);
    req.set_reason(*reason);
    rv1::DeleteQueueEntryResponse resp;
    s = CallRelay(c, &rv1::RelayService::Stub::DeleteQueueEntry, req, &resp);
    if (!s.ok()) return s;
    out << (c.json() ? "{}" : absl::StrCat("deleted ", *id)) << "\n";
    return absl::OkStatus();
  } else if (verb == "bounce") {
    auto reason = a.Required("reason");
    if (!reason.ok()) return reason.status();
    rv1::BounceQueueEntryRequest req;
    req.set_queue_id(*id);
    req.set_reason(*reason);
    s = CallRelay(c, &rv1::RelayService::Stub::BounceQueueEntry, req, &entry);
  } else {
    return UnknownSubcommand(verb);
  }
  if (!s.ok()) return s;
  print(entry);
  return absl::OkStatus();
}

const bool kRegistered = RegisterCommand(
    {"queue", "relayd's outbound queue (RelayService)",
     "mailctl queue list [--domain D] [--sender S] [--state STATE] [--tenant T] [--limit N]\n"
     "      mailctl queue show|release QUEUE_ID | retry QUEUE_ID [--recipient A]\n"
     "      mailctl queue hold QUEUE_ID [--reason R] | delete|bounce QUEUE_ID --reason R",
     RunQueue});

}  // namespace
}  // namespace mailgrid::mailctl
