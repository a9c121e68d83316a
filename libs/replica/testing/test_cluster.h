// An in-process replica group for tests: each member is a Replica with its
// own gRPC server (KvService + RaftService) on a loopback port held from
// picking to binding (and while stopped), with retries, so the
// members talk real gRPC to each other, exactly as separate processes do.
// With ReplicaOptions::peer_tls set, each member's server uses that
// certificate and requires client certificates from that CA (mTLS).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/replica/kv_service.h"
#include "libs/replica/raft_service.h"
#include "libs/replica/replica.h"
#include "libs/rpc/server.h"

namespace mailgrid::replica::testing {

// A write of one Put, the request most tests send.
inline kv::v1::WriteRequest PutRequest(const std::string& key, const std::string& value) {
  kv::v1::WriteRequest req;
  kv::v1::Put* put = req.add_ops()->mutable_put();
  put->set_key(key);
  put->set_value(value);
  return req;
}

struct TestMember {
  std::unique_ptr<Replica> replica;
  std::unique_ptr<KvServiceImpl> kv;
  std::unique_ptr<RaftServiceImpl> raft;
  std::unique_ptr<rpc::Server> server;
  std::string address;
  std::string data_dir;
};

class TestCluster {
 public:
  // `base` supplies tick/compaction settings; ids/peers/dirs are filled in.
  explicit TestCluster(ReplicaOptions base = DefaultOptions());
  ~TestCluster();

  static ReplicaOptions DefaultOptions();

  // Starts initial members 1..n.
  absl::Status StartGroup(int n);
  // Starts an empty member that waits to be added (join = true).
  absl::Status StartJoiner(raft::NodeId id, ReplicaOptions overrides);
  absl::Status StartJoiner(raft::NodeId id) { return StartJoiner(id, base_); }
  // Stops a member (its data stays); Restart opens it again.
  void Stop(raft::NodeId id);
  absl::Status Restart(raft::NodeId id);
  // From the member's next (re)start: false = its RaftService answers
  // SendStream UNIMPLEMENTED, like a replica from before SendStream.
  void ServeSendStream(raft::NodeId id, bool serve) { serve_streams_[id] = serve; }
  // From the member's next start: `edit` adjusts its options (e.g. a binary
  // that applies an older state-machine format).
  void Override(raft::NodeId id, std::function<void(ReplicaOptions&)> edit) {
    overrides_[id] = std::move(edit);
  }

  Replica& replica(raft::NodeId id) { return *members_.at(id).replica; }
  const std::string& address(raft::NodeId id) { return addresses_.at(id); }
  bool running(raft::NodeId id) const { return members_.count(id) > 0; }
  std::string AddressList() const;  // "a,b,c" of every started member

  // Waits until every running member agrees on one leader; kNoNode at timeout.
  raft::NodeId WaitForLeader(absl::Duration timeout = absl::Seconds(60));
  // Waits until `id` has applied at least `index`.
  bool WaitApplied(raft::NodeId id, raft::Index index, absl::Duration timeout = absl::Seconds(60));

 private:
  absl::Status StartMember(raft::NodeId id, ReplicaOptions options);
  absl::Status TryStartGroup(int n);
  // Port holds (see HoldPort in test_cluster.cc): a new address for `id`,
  // held until its server starts; the same port again while it is stopped.
  absl::Status HoldNewAddress(raft::NodeId id);
  void HoldAgain(raft::NodeId id);
  void Release(raft::NodeId id);

  ReplicaOptions base_;
  std::string root_;
  std::map<raft::NodeId, std::string> addresses_;
  std::map<raft::NodeId, ReplicaOptions> options_;
  std::map<raft::NodeId, TestMember> members_;
  std::map<raft::NodeId, int> held_;  // id -> fd holding its port
  std::map<raft::NodeId, bool> serve_streams_;
  std::map<raft::NodeId, std::function<void(ReplicaOptions&)>> overrides_;
};

// Polls `pred` every 20 ms until true or `timeout`.
bool WaitUntil(const std::function<bool()>& pred, absl::Duration timeout = absl::Seconds(60));

}  // namespace mailgrid::replica::testing
