// mailctl raft status|transfer-leadership|format|set-format — operating a
// replica group (tenantd, identityd, each mailstored shard) through its
// RaftService (and KvService for the state-machine format).
//
// `format` lists every member's supported and committed state-machine
// format; `set-format N` commits format N for the group only when EVERY
// member reports supporting it (libs/kv README "Formats"), so new entry
// formats start only after the whole group runs binaries that apply them.
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
#include "mailgrid/kv/v1/kv.grpc.pb.h"
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

absl::StatusOr<std::shared_ptr<grpc::Channel>> Channel(const std::string& address) {
  rpc::ClientOptions options;
  options.target = address;
  options.tls_ca_file = Env("MAILGRID_TLS_CA");
  options.tls_cert_file = Env("MAILGRID_TLS_CERT");
  options.tls_key_file = Env("MAILGRID_TLS_KEY");
  return rpc::MakeChannel(options);
}

absl::StatusOr<std::unique_ptr<v1::RaftService::Stub>> Connect(const std::string& address) {
  ASSIGN_OR_RETURN(auto channel, Channel(address));
  return v1::RaftService::NewStub(channel);
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

// One member's formats; an error names the member (a server from before
// format versions answers UNIMPLEMENTED: it supports none of them).
struct MemberFormat {
  uint64_t id = 0;
  std::string address;
  absl::StatusOr<kv::v1::GetFormatResponse> format;
};

std::vector<MemberFormat> MemberFormats(const v1::GetStatusResponse& st, const std::string& asked,
                                        absl::Duration timeout) {
  std::vector<MemberFormat> out;
  for (const v1::Member& m : st.members()) {
    MemberFormat& f = out.emplace_back();
    f.id = m.id();
    f.address = m.address().empty() && m.id() == st.id() ? asked : m.address();
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = Channel(f.address);
    if (!channel.ok()) {
      f.format = channel.status();
      continue;
    }
    kv::v1::GetFormatResponse resp;
    auto ctx = rpc::ContextWithDeadline(timeout);
    grpc::Status s = kv::v1::KvService::NewStub(*channel)->GetFormat(
        ctx.get(), kv::v1::GetFormatRequest(), &resp);
    if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      f.format = absl::UnimplementedError("its binary predates format versions (session 20)");
    } else {
      f.format = s.ok() ? absl::StatusOr<kv::v1::GetFormatResponse>(resp) : FromRpc(s);
    }
  }
  return out;
}

absl::Status RunFormat(const Invocation& inv, const Args& a) {
  ASSIGN_OR_RETURN(std::string address, Address(a));
  ASSIGN_OR_RETURN(absl::Duration timeout, Timeout(a));
  ASSIGN_OR_RETURN(auto stub, Connect(address));
  ASSIGN_OR_RETURN(v1::GetStatusResponse st, Status(*stub, timeout));
  for (const MemberFormat& f : MemberFormats(st, address, timeout)) {
    *inv.out << "replica " << f.id << " (" << f.address << "): ";
    if (f.format.ok()) {
      *inv.out << "supports up to " << f.format->supported() << ", committed "
               << f.format->committed() << " at applied index " << f.format->applied_index()
               << "\n";
    } else {
      *inv.out << "unknown (" << f.format.status() << ")\n";
    }
  }
  return absl::OkStatus();
}

absl::Status RunSetFormat(const Invocation& inv, const Args& a) {
  ASSIGN_OR_RETURN(std::string address, Address(a));
  ASSIGN_OR_RETURN(std::string number, a.Positional(a.Has("address") ? 1 : 2, "FORMAT (a number)"));
  uint32_t format = 0;
  if (!absl::SimpleAtoi(number, &format) || format == 0)
    return absl::InvalidArgumentError("FORMAT: a number > 0");
  ASSIGN_OR_RETURN(absl::Duration timeout, Timeout(a));
  ASSIGN_OR_RETURN(auto stub, Connect(address));
  ASSIGN_OR_RETURN(v1::GetStatusResponse st, Status(*stub, timeout));
  // Every member, learners too: all of them apply every entry.
  for (const MemberFormat& f : MemberFormats(st, address, timeout)) {
    if (!f.format.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("replica ", f.id, " (", f.address, ") did not report its formats (",
                       f.format.status().ToString(), "); not raising the format"));
    }
    if (f.format->supported() < format) {
      return absl::FailedPreconditionError(
          absl::StrCat("replica ", f.id, " (", f.address, ") applies formats up to ",
                       f.format->supported(), "; upgrade it before raising to ", format));
    }
  }
  if (st.leader_address().empty()) return absl::UnavailableError("no leader known; retry");
  ASSIGN_OR_RETURN(auto channel, Channel(st.leader_address()));
  kv::v1::SetFormatRequest req;
  req.set_format(format);
  kv::v1::WriteResponse resp;
  auto ctx = rpc::ContextWithDeadline(timeout);
  grpc::Status s = kv::v1::KvService::NewStub(channel)->SetFormat(ctx.get(), req, &resp);
  if (!s.ok()) return FromRpc(s);
  *inv.out << "state-machine format " << format << " committed in " << st.group_id() << " at index "
           << resp.applied_index() << "\n";
  return absl::OkStatus();
}

absl::Status RunRaft(const Invocation& inv) {
  ASSIGN_OR_RETURN(Args a, ParseArgs(inv.args));
  if (a.positional.empty())
    return absl::InvalidArgumentError("raft: status, transfer-leadership, format or set-format");
  const std::string& sub = a.positional[0];
  if (sub == "status") return RunStatus(inv, a);
  if (sub == "transfer-leadership") return RunTransfer(inv, a);
  if (sub == "format") return RunFormat(inv, a);
  if (sub == "set-format") return RunSetFormat(inv, a);
  return UnknownSubcommand(sub);
}

const bool kRegistered = RegisterCommand(
    {"raft",
     "a replica group's status; hand leadership away (preStop; exits 0 on a follower and on "
     "a group's only voter)",
     "mailctl raft status ADDRESS|--address=A [--timeout=10s]\n"
     "mailctl raft transfer-leadership ADDRESS|--address=A [--to=ID] [--timeout=10s]\n"
     "mailctl raft format ADDRESS|--address=A [--timeout=10s]\n"
     "mailctl raft set-format ADDRESS|--address=A FORMAT [--timeout=10s]  (only when every "
     "member supports FORMAT)",
     RunRaft});

}  // namespace
}  // namespace mailgrid::mailctl
