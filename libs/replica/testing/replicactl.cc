// replicactl: a small admin client for one replica's RaftService, used by
// the real-process tests (and handy by hand until mailctl grows these).
//
//   replicactl [--group=G] ADDR status
//   replicactl [--group=G] ADDR wait-ready [SECONDS]
//   replicactl [--group=G] ADDR transfer TARGET_ID
//   replicactl [--group=G] ADDR add-learner|add-voter ID ADDRESS
//   replicactl [--group=G] ADDR remove ID
//   replicactl [--group=G] ADDR partition ID,ID,...      (test builds)
//   replicactl [--group=G] ADDR heal                      (test builds)
//   replicactl [--group=G] ADDR corrupt-snapshots TRANSIT SOURCE  (test builds)
//
// status prints one line of key=value pairs. Exit code 0 on success, 1 on an
// RPC error (printed on stderr), 2 on bad usage.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "libs/replica/channel.h"
#include "mailgrid/raft/v1/raft.grpc.pb.h"

namespace {

namespace v1 = mailgrid::raft::v1;

int Usage() {
  std::cerr << "usage: replicactl [--group=G] [--tls-ca=F [--tls-cert=F --tls-key=F]] ADDR "
               "status|wait-ready [S]|transfer ID|"
               "add-learner ID ADDR|add-voter ID ADDR|remove ID|partition IDS|heal|"
               "corrupt-snapshots N M\n";
  return 2;
}

int Fail(const grpc::Status& s) {
  std::cerr << "error: " << s.error_code() << " " << s.error_message() << "\n";
  return 1;
}

std::unique_ptr<grpc::ClientContext> Ctx(int seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

const char* RoleName(v1::Role r) {
  switch (r) {
    case v1::ROLE_LEADER:
      return "leader";
    case v1::ROLE_CANDIDATE:
      return "candidate";
    case v1::ROLE_PRE_CANDIDATE:
      return "pre_candidate";
    default:
      return "follower";
  }
}

std::string StatusLine(const v1::GetStatusResponse& s) {
  std::vector<std::string> members;
  for (const auto& m : s.members()) {
    members.push_back(absl::StrCat(m.id(), m.learner() ? "L" : "", "@", m.address()));
  }
  return absl::StrCat(
      "id=", s.id(), " term=", s.term(), " role=", RoleName(s.role()), " leader=", s.leader_id(),
      " leader_address=", s.leader_address(), " commit=", s.commit(), " applied=", s.applied(),
      " first_index=", s.first_index(), " last_index=", s.last_index(),
      " ready=", s.ready() ? "true" : "false", " snapshots_installed=", s.snapshots_installed(),
      " snapshot_chunks_refused=", s.snapshot_chunks_refused(),
      " snapshot_files_reused=", s.snapshot_files_reused(),
      " members=", absl::StrJoin(members, ","), " not_ready_reason=\"", s.not_ready_reason(), "\"");
}

}  // namespace

int main(int argc, char** argv) {
  std::string group;
  mailgrid::replica::ReplicaTls tls;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--group=", 8) == 0) {
      group = argv[i] + 8;
    } else if (strncmp(argv[i], "--tls-ca=", 9) == 0) {
      tls.ca_file = argv[i] + 9;
    } else if (strncmp(argv[i], "--tls-cert=", 11) == 0) {
      tls.cert_file = argv[i] + 11;
    } else if (strncmp(argv[i], "--tls-key=", 10) == 0) {
      tls.key_file = argv[i] + 10;
    } else {
      args.emplace_back(argv[i]);
    }
  }
  if (args.size() < 2) return Usage();
  auto channel = mailgrid::replica::MakeReplicaChannel(args[0], tls);
  if (!channel.ok()) {
    std::cerr << "error: " << channel.status() << "\n";
    return 2;
  }
  auto stub = v1::RaftService::NewStub(*channel);
  const std::string& cmd = args[1];

  if (cmd == "status") {
    v1::GetStatusRequest req;
    req.set_group_id(group);
    v1::GetStatusResponse resp;
    grpc::Status s = stub->GetStatus(Ctx(10).get(), req, &resp);
    if (!s.ok()) return Fail(s);
    std::cout << StatusLine(resp) << "\n";
    return 0;
  }
  if (cmd == "wait-ready") {
    int seconds = 120;
    if (args.size() > 2 && !absl::SimpleAtoi(args[2], &seconds)) return Usage();
    absl::Time deadline = absl::Now() + absl::Seconds(seconds);
    std::string last = "no answer";
    while (absl::Now() < deadline) {
      v1::GetStatusRequest req;
      req.set_group_id(group);
      v1::GetStatusResponse resp;
      grpc::Status s = stub->GetStatus(Ctx(5).get(), req, &resp);
      if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
        // A fresh channel per attempt (see KvClient::Call: a TLS channel
        // whose first attempt failed may never connect).
        stub = v1::RaftService::NewStub(*mailgrid::replica::MakeReplicaChannel(args[0], tls));
      }
      if (s.ok() && resp.ready()) {
        std::cout << StatusLine(resp) << "\n";
        return 0;
      }
      last = s.ok() ? StatusLine(resp) : s.error_message();
      absl::SleepFor(absl::Milliseconds(100));
    }
    std::cerr << "not ready: " << last << "\n";
    return 1;
  }
  if (cmd == "transfer" && args.size() == 3) {
    v1::TransferLeadershipRequest req;
    req.set_group_id(group);
    uint64_t target = 0;
    if (!absl::SimpleAtoi(args[2], &target)) return Usage();
    req.set_target(target);
    v1::TransferLeadershipResponse resp;
    grpc::Status s = stub->TransferLeadership(Ctx(30).get(), req, &resp);
    if (!s.ok()) return Fail(s);
    std::cout << "leader=" << resp.leader_id() << "\n";
    return 0;
  }
  if ((cmd == "add-learner" || cmd == "add-voter" || cmd == "remove") && args.size() >= 3) {
    v1::ChangeMembershipRequest req;
    req.set_group_id(group);
    uint64_t node = 0;
    if (!absl::SimpleAtoi(args[2], &node)) return Usage();
    req.set_node(node);
    if (cmd == "remove") {
      req.set_kind(v1::ChangeMembershipRequest::REMOVE);
    } else {
      req.set_kind(cmd == "add-voter" ? v1::ChangeMembershipRequest::ADD_VOTER
                                      : v1::ChangeMembershipRequest::ADD_LEARNER);
      if (args.size() > 3) req.set_address(args[3]);
    }
    v1::ChangeMembershipResponse resp;
    grpc::Status s = stub->ChangeMembership(Ctx(120).get(), req, &resp);
    if (!s.ok()) return Fail(s);
    std::cout << "index=" << resp.index() << "\n";
    return 0;
  }
  if (cmd == "partition" || cmd == "heal" || cmd == "corrupt-snapshots") {
    v1::SetTestHooksRequest req;
    req.set_group_id(group);
    if (cmd == "partition") {
      if (args.size() != 3) return Usage();
      for (absl::string_view id : absl::StrSplit(args[2], ',', absl::SkipEmpty())) {
        uint64_t peer = 0;
        if (!absl::SimpleAtoi(id, &peer)) return Usage();
        req.add_drop_peers(peer);
      }
    } else if (cmd == "corrupt-snapshots") {
      uint32_t transit = 0, source = 0;
      if (args.size() != 4 || !absl::SimpleAtoi(args[2], &transit) ||
          !absl::SimpleAtoi(args[3], &source)) {
        return Usage();
      }
      req.set_corrupt_snapshot_chunks(transit);
      req.set_corrupt_snapshot_files(source);
    }
    v1::SetTestHooksResponse resp;
    grpc::Status s = stub->SetTestHooks(Ctx(10).get(), req, &resp);
    if (!s.ok()) return Fail(s);
    std::cout << "ok\n";
    return 0;
  }
  return Usage();
}
