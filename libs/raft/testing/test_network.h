// An in-process network of RawNodes over MemoryStorage for unit tests (the
// etcd raft_test "network"). Delivery is synchronous and in order: Send()
// delivers a message, handles the receiver's Ready (persist, apply,
// collect its messages) and keeps going until nothing is left. Filters
// drop messages to model partitions; nothing here is random except the
// nodes' election timeouts, which come from a seeded generator.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "libs/raft/raw_node.h"
#include "libs/raft/storage.h"
#include "libs/raft/types.h"

namespace mailgrid::raft::testing {

struct NodeOptions {
  int election_tick = 10;
  int heartbeat_tick = 1;
  bool pre_vote = true;
  bool check_quorum = true;
  int max_inflight_msgs = 256;
  uint64_t max_size_per_msg = 1 << 20;
  bool defer_commit_broadcast = false;
};

class TestNetwork {
 public:
  explicit TestNetwork(NodeOptions options = {}, uint64_t seed = 1);

  // Creates bootstrapped initial members.
  void Bootstrap(const std::vector<NodeId>& voters);
  // Creates a node over an empty log (a replica joining later).
  void AddEmptyNode(NodeId id);
  // Creates a node over a prepared log (for crafted scenarios).
  void AddNode(NodeId id, std::unique_ptr<MemoryStorage> storage);

  RawNode& node(NodeId id);
  MemoryStorage& storage(NodeId id);
  bool is_up(NodeId id) const { return nodes_.count(id) > 0; }
  // Data of the kNormal entries node `id` applied, in order.
  const std::vector<std::string>& applied_data(NodeId id) { return replicas_[id].applied_data; }
  Index applied_index(NodeId id) { return replicas_[id].applied_index; }
  const ConfState& applied_conf(NodeId id) { return replicas_[id].conf; }
  std::vector<ReadState>& read_states(NodeId id) { return replicas_[id].read_states; }
  std::vector<SnapshotMeta>& installed_snapshots(NodeId id) { return replicas_[id].snapshots; }

  // Delivers messages (and everything they cause) until quiet.
  void Send(std::vector<Message> msgs);
  // Handles pending Readys of every node and delivers until quiet.
  void Stabilize();
  // Ticks node `id` n times, stabilizing after each tick.
  void Tick(NodeId id, int n = 1);
  // Ticks every node n times, stabilizing after each round.
  void TickAll(int n = 1);
  // Campaigns at `id` and stabilizes.
  void Campaign(NodeId id);
  absl::StatusOr<LogPosition> Propose(NodeId id, std::string data);

  // Partitions: a message from a to b is dropped if cut, or if either end
  // is isolated, or if the custom filter says so.
  void Isolate(NodeId id) { isolated_.insert(id); }
  void Cut(NodeId a, NodeId b);
  void Heal();
  void DropType(Message::Type type) { dropped_types_.insert(type); }
  std::function<bool(const Message&)> drop_if;
  // Every message dropped (to inspect or replay).
  std::vector<Message> dropped;
  // Every message delivered, in order.
  std::vector<Message> delivered;

  // Stops a node: its storage survives, everything volatile is lost.
  void Crash(NodeId id);
  // Restarts a node from its storage, as of its last snapshot, and replays
  // its committed entries (its outgoing messages wait for the next Send).
  void Restart(NodeId id);
  // Snapshots node `id` at its applied index and compacts its log to it.
  void CompactLog(NodeId id);

  // The up leader with the highest term, or kNoNode.
  NodeId Leader() const;

 private:
  struct Replica {
    std::unique_ptr<MemoryStorage> storage;
    std::vector<std::string> applied_data;
    Index applied_index = 0;
    ConfState conf;
    std::vector<ReadState> read_states;
    std::vector<SnapshotMeta> snapshots;
  };

  void StartNode(NodeId id, Index applied);
  void HandleReady(NodeId id);
  bool Dropped(const Message& m) const;
  void Deliver();

  NodeOptions options_;
  uint64_t seed_;
  std::map<NodeId, std::unique_ptr<RawNode>> nodes_;
  std::map<NodeId, Replica> replicas_;
  std::deque<Message> queue_;
  std::set<NodeId> isolated_;
  std::set<std::pair<NodeId, NodeId>> cuts_;
  std::set<Message::Type> dropped_types_;
};

}  // namespace mailgrid::raft::testing
