#include "libs/replica/testing/test_cluster.h"

#include <stdlib.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/base/net.h"
#include "libs/base/status.h"

namespace mailgrid::replica::testing {

bool WaitUntil(const std::function<bool()>& pred, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (pred()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return pred();
}

ReplicaOptions TestCluster::DefaultOptions() {
  ReplicaOptions o;
  o.group_id = "test";
  o.tick_interval = absl::Milliseconds(50);
  o.election_tick = 10;
  return o;
}

TestCluster::TestCluster(ReplicaOptions base) : base_(std::move(base)) {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string tmpl = std::string(tmp != nullptr ? tmp : "/tmp") + "/replica_test.XXXXXX";
  root_ = mkdtemp(tmpl.data()) != nullptr ? tmpl : "/tmp/replica_test.fallback";
}

TestCluster::~TestCluster() {
  for (auto& [id, m] : members_) m.replica->Stop();
  members_.clear();
  std::error_code ec;
  std::filesystem::remove_all(root_, ec);
}

std::string TestCluster::AddressList() const {
  std::vector<std::string> list;
  for (const auto& [id, a] : addresses_) list.push_back(a);
  return absl::StrJoin(list, ",");
}

absl::Status TestCluster::StartGroup(int n) {
  for (int i = 1; i <= n; ++i) {
    ASSIGN_OR_RETURN(int port, net::PickFreePort());
    addresses_[i] = absl::StrCat("127.0.0.1:", port);
  }
  for (int i = 1; i <= n; ++i) {
    ReplicaOptions o = base_;
    o.id = i;
    o.peers = std::map<raft::NodeId, std::string>(addresses_.begin(), addresses_.end());
    o.data_dir = absl::StrCat(root_, "/", i);
    RETURN_IF_ERROR(StartMember(i, o));
  }
  return absl::OkStatus();
}

absl::Status TestCluster::StartJoiner(raft::NodeId id, ReplicaOptions overrides) {
  ASSIGN_OR_RETURN(int port, net::PickFreePort());
  addresses_[id] = absl::StrCat("127.0.0.1:", port);
  ReplicaOptions o = std::move(overrides);
  o.id = id;
  o.join = true;
  o.peers = addresses_;
  o.data_dir = absl::StrCat(root_, "/", id);
  return StartMember(id, o);
}

absl::Status TestCluster::StartMember(raft::NodeId id, ReplicaOptions options) {
  options_[id] = options;
  TestMember m;
  m.address = addresses_.at(id);
  m.data_dir = options.data_dir;
  ASSIGN_OR_RETURN(m.replica, Replica::Open(options));
  m.kv = std::make_unique<KvServiceImpl>(m.replica.get());
  m.raft = std::make_unique<RaftServiceImpl>(m.replica.get());
  rpc::ServerOptions so;
  so.service_name = absl::StrCat("replica-", id);
  so.listen = m.address;
  if (options.peer_tls.enabled()) {
    // What a daemon does: its peers reach it on this listener, which serves
    // its own certificate and (mTLS) accepts clients from the same CA.
    so.tls_cert_file = options.peer_tls.cert_file;
    so.tls_key_file = options.peer_tls.key_file;
    so.tls_client_ca_file = options.peer_tls.ca_file;
  }
  ASSIGN_OR_RETURN(m.server, rpc::Server::Start(so, {m.kv.get(), m.raft.get()}));
  RETURN_IF_ERROR(m.replica->Start());
  members_[id] = std::move(m);
  return absl::OkStatus();
}

void TestCluster::Stop(raft::NodeId id) {
  auto it = members_.find(id);
  if (it == members_.end()) return;
  it->second.server->Shutdown(absl::ZeroDuration());
  it->second.replica->Stop();
  members_.erase(it);
}

absl::Status TestCluster::Restart(raft::NodeId id) {
  Stop(id);
  return StartMember(id, options_.at(id));
}

raft::NodeId TestCluster::WaitForLeader(absl::Duration timeout) {
  raft::NodeId leader = raft::kNoNode;
  WaitUntil(
      [&] {
        leader = raft::kNoNode;
        for (auto& [id, m] : members_) {
          if (m.replica->IsLeader()) leader = id;
        }
        if (leader == raft::kNoNode) return false;
        // Every running member of the leader's configuration follows it.
        ReplicaStatus ls = members_.at(leader).replica->Status();
        std::vector<raft::NodeId> ids = ls.conf.voters;
        ids.insert(ids.end(), ls.conf.learners.begin(), ls.conf.learners.end());
        for (raft::NodeId id : ids) {
          auto it = members_.find(id);
          if (it != members_.end() && it->second.replica->LeaderId() != leader) return false;
        }
        return true;
      },
      timeout);
  return leader;
}

bool TestCluster::WaitApplied(raft::NodeId id, raft::Index index, absl::Duration timeout) {
  return WaitUntil([&] { return replica(id).Status().applied >= index; }, timeout);
}

}  // namespace mailgrid::replica::testing
