// mailctl raft status|transfer-leadership — operating a replica group
// (tenantd, identityd, each mailstored shard) through its RaftService.
//
// `transfer-leadership` is the Kubernetes preStop hook of every Raft pod:
// on a follower it exits 0 at once; on the leader it hands leadership to the
// most caught-up active voter and waits, so a rolling restart never leaves
// the group waiting out an election timeout. On the leader of a group whose
// only voter it is, there is nobody to hand over to and nothing to wait
// for: it says so and exits 0 too. It fails (exit 1) only when other voters
// exist but none is active, or the transfer itself fails. TLS client settings come from
// MAILGRID_TLS_CA / MAILGRID_TLS_CERT / MAILGRID_TLS_KEY (as in the pods).
#include <algorithm>
#include <cstdlib>
#include <ostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "libs/base/status.h"
#include "libs/rpc/client.h"
#include "mailgrid/raft/v1/raft.grpc.pb.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/tenant_client.h"

namespace mailgrid::mailctl {
namespace {

namespace v1 = ::mailgrid::raft::v1;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

absl::StatusOr<std::unique_ptr<v1::RaftService::Stub>> Connect(const std::string& address) {
  rpc::ClientOptions options;
  options.target = address;
  options.tls_ca_file = Env("MAILGRID_TLS_CA");
  options.tls_cert_file = Env("MAILGRID_TLS_CERT");
  options.tls_key_file = Env("MAILGRID_TLS_KEY");
  auto channel = rpc::MakeChannel(options);
  if (!channel.ok()) return channel.status();
  return v1::RaftService::NewStub(*channel);
}

absl::StatusOr<v1::GetStatusResponse> Status(v1::RaftService::Stub& stub, absl::Duration timeout) {
  v1::GetStatusRequest req;
  v1::GetStatusResponse resp;
  auto ctx = rpc::ContextWithDeadline(timeout);
  grpc::Status s = stub.GetStatus(ctx.get(), req, &resp);
  if (!s.ok()) return FromRpc(s);
  return resp;
}

// The active voter with the highest match index, or 0 when none.
uint64_t BestSuccessor(const v1::GetStatusResponse& st) {
  uint64_t best = 0, best_match = 0;
  for (const v1::PeerProgress& p : st.progress()) {
    if (p.id() == st.id() || p.learner() || !p.recent_active()) continue;
    if (best == 0 || p.match() > best_match) {
      best = p.id();
      best_match = p.match();
    }
  }
  return best;
}

absl::StatusOr<absl::Duration> Timeout(const Args& a) {
  absl::Duration d;
  if (!absl::ParseDuration(a.Get("timeout", "10s"), &d) || d <= absl::ZeroDuration())
    return absl::InvalidArgumentError("--timeout: a duration such as 10s");
  return d;
}

absl::StatusOr<std::string> Address(const Args& a) {
  if (a.Has("address")) return a.Get("address");
  return a.Positional(1, "ADDRESS (host:port of a replica)");
}

absl::Status RunStatus(const Invocation& inv, const Args& a) {
  ASSIGN_OR_RETURN(std::string address, Address(a));
  ASSIGN_OR_RETURN(absl::Duration timeout, Timeout(a));
  ASSIGN_OR_RETURN(auto stub, Connect(address));
  ASSIGN_OR_RETURN(v1::GetStatusResponse st, Status(*stub, timeout));
  if (inv.json) {
    *inv.out << Json(st) << "\n";
  } else {
    *inv.out << st.DebugString();
  }
  return absl::OkStatus();
}

absl::Status RunTransfer(const Invocation& inv, const Args& a) {
  ASSIGN_OR_RETURN(std::string address, Address(a));
  ASSIGN_OR_RETURN(absl::Duration timeout, Timeout(a));
  ASSIGN_OR_RETURN(auto stub, Connect(address));
  ASSIGN_OR_RETURN(v1::GetStatusResponse st, Status(*stub, timeout));
  if (st.role() != v1::ROLE_LEADER) {
    *inv.out << "replica " << st.id() << " of " << st.group_id()
             << " is not the leader; nothing to do\n";
    return absl::OkStatus();
  }
  uint64_t target = 0;
  const int other_voters = static_cast<int>(
      std::count_if(st.members().begin(), st.members().end(),
                    [&](const v1::Member& m) { return !m.learner() && m.id() != st.id(); }));
  if (other_voters == 0 && !a.Has("to")) {
    *inv.out << "replica " << st.id() << " is the only voter of " << st.group_id()
             << "; there is no other voter to hand leadership to; nothing to do\n";
    return absl::OkStatus();
  }
  if (a.Has("to")) {
    if (!absl::SimpleAtoi(a.Get("to"), &target) || target == 0)
      return absl::InvalidArgumentError("--to: a replica id > 0");
  } else {
    target = BestSuccessor(st);
  }
  if (target == 0) {
    return absl::FailedPreconditionError(absl::StrCat("replica ", st.id(), " leads ", st.group_id(),
                                                      " but no other voter is active"));
  }
  v1::TransferLeadershipRequest req;
  req.set_group_id(st.group_id());
  req.set_target(target);
  v1::TransferLeadershipResponse resp;
  auto ctx = rpc::ContextWithDeadline(timeout);
  grpc::Status s = stub->TransferLeadership(ctx.get(), req, &resp);
  if (!s.ok()) return FromRpc(s);
  *inv.out << "leadership of " << st.group_id() << " moved from " << st.id() << " to "
           << resp.leader_id() << "\n";
  return absl::OkStatus();
}

absl::Status RunRaft(const Invocation& inv) {
  ASSIGN_OR_RETURN(Args a, ParseArgs(inv.args));
  if (a.positional.empty())
    return absl::InvalidArgumentError("raft: status or transfer-leadership");
  const std::string& sub = a.positional[0];
  if (sub == "status") return RunStatus(inv, a);
  if (sub == "transfer-leadership") return RunTransfer(inv, a);
  return absl::InvalidArgumentError(absl::StrCat("raft: unknown sub-command \"", sub, "\""));
}

const bool kRegistered = RegisterCommand(
    {"raft",
     "a replica group's status; hand leadership away (preStop; exits 0 on a follower and on "
     "a group's only voter)",
     "mailctl raft status ADDRESS|--address=A [--timeout=10s]\n"
     "mailctl raft transfer-leadership ADDRESS|--address=A [--to=ID] [--timeout=10s]",
     RunRaft});

}  // namespace
}  // namespace mailgrid::mailctl
