// Synchronous in-process network for unit tests (see test_network.h).
#include "libs/raft/testing/test_network.h"

#include <cstdio>
#include <cstdlib>
#include <random>
#include <utility>

namespace mailgrid::raft::testing {
namespace {

void Die(const char* what, const absl::Status& s) {
  std::fprintf(stderr, "test network: %s: %s\n", what, s.ToString().c_str());
  std::abort();
}

}  // namespace

TestNetwork::TestNetwork(NodeOptions options, uint64_t seed) : options_(options), seed_(seed) {}

void TestNetwork::Bootstrap(const std::vector<NodeId>& voters) {
  for (NodeId id : voters) {
    auto storage = std::make_unique<MemoryStorage>();
    if (auto s = storage->Bootstrap(voters); !s.ok()) Die("bootstrap", s);
    AddNode(id, std::move(storage));
  }
}

void TestNetwork::AddEmptyNode(NodeId id) { AddNode(id, std::make_unique<MemoryStorage>()); }

void TestNetwork::AddNode(NodeId id, std::unique_ptr<MemoryStorage> storage) {
  Replica& r = replicas_[id];
  r.storage = std::move(storage);
  auto snap = r.storage->Snapshot();
  r.conf = snap->conf;
  r.applied_index = snap->index;
  StartNode(id, snap->index);
}

void TestNetwork::StartNode(NodeId id, Index applied) {
  Config c;
  c.id = id;
  c.election_tick = options_.election_tick;
  c.heartbeat_tick = options_.heartbeat_tick;
  c.pre_vote = options_.pre_vote;
  c.check_quorum = options_.check_quorum;
  c.max_inflight_msgs = options_.max_inflight_msgs;
  c.max_size_per_msg = options_.max_size_per_msg;
  c.defer_commit_broadcast = options_.defer_commit_broadcast;
  c.applied = applied;
  auto rng = std::make_shared<std::mt19937_64>(seed_ * 1000003 + id);
  c.random = [rng](uint64_t n) { return n == 0 ? 0 : (*rng)() % n; };
  auto node = RawNode::Create(c, replicas_[id].storage.get());
  if (!node.ok()) Die("create node", node.status());
  nodes_[id] = std::move(*node);
}

RawNode& TestNetwork::node(NodeId id) { return *nodes_.at(id); }

MemoryStorage& TestNetwork::storage(NodeId id) { return *replicas_.at(id).storage; }

void TestNetwork::HandleReady(NodeId id) {
  RawNode& n = *nodes_.at(id);
  Replica& r = replicas_[id];
  while (n.HasReady()) {
    Ready rd = n.GetReady();
    if (rd.snapshot) {
      if (auto s = r.storage->ApplySnapshot(*rd.snapshot); !s.ok()) Die("apply snapshot", s);
      r.snapshots.push_back(*rd.snapshot);
      r.conf = rd.snapshot->conf;
      r.applied_index = rd.snapshot->index;
    }
    if (auto s = r.storage->Append(rd.entries); !s.ok()) Die("append", s);
    if (rd.hard_state) r.storage->SetHardState(*rd.hard_state);
    for (Message& m : rd.messages) queue_.push_back(std::move(m));
    for (const Entry& e : rd.committed) {
      if (e.type == Entry::Type::kNormal) r.applied_data.push_back(e.data);
      if (e.type == Entry::Type::kConfChange) {
        auto cc = DecodeConfChange(e.data);
        if (cc.ok()) r.conf = ApplyConfChange(r.conf, *cc);
      }
      r.applied_index = e.index;
    }
    for (ReadState& rs : rd.read_states) r.read_states.push_back(std::move(rs));
    n.Advance(rd);
  }
}

bool TestNetwork::Dropped(const Message& m) const {
  if (!nodes_.count(m.to)) return true;
  if (isolated_.count(m.from) || isolated_.count(m.to)) return true;
  if (cuts_.count({m.from, m.to})) return true;
  if (dropped_types_.count(m.type)) return true;
  return drop_if && drop_if(m);
}

void TestNetwork::Deliver() {
  while (!queue_.empty()) {
    Message m = std::move(queue_.front());
    queue_.pop_front();
    if (Dropped(m)) {
      dropped.push_back(std::move(m));
      continue;
    }
    delivered.push_back(m);
    const NodeId to = m.to;
    if (auto s = nodes_.at(to)->Step(std::move(m)); !s.ok()) Die("step", s);
    HandleReady(to);
  }
}

void TestNetwork::Send(std::vector<Message> msgs) {
  for (Message& m : msgs) queue_.push_back(std::move(m));
  Deliver();
}

void TestNetwork::Stabilize() {
  do {
    for (auto& [id, n] : nodes_) HandleReady(id);
    Deliver();
  } while ([this] {
    for (auto& [id, n] : nodes_) {
      if (n->HasReady()) return true;
    }
    return false;
  }());
}

void TestNetwork::Tick(NodeId id, int n) {
  for (int i = 0; i < n; ++i) {
    nodes_.at(id)->Tick();
    Stabilize();
  }
}

void TestNetwork::TickAll(int n) {
  for (int i = 0; i < n; ++i) {
    for (auto& [id, node] : nodes_) node->Tick();
    Stabilize();
  }
}

void TestNetwork::Campaign(NodeId id) {
  if (auto s = nodes_.at(id)->Campaign(); !s.ok()) Die("campaign", s);
  Stabilize();
}

absl::StatusOr<LogPosition> TestNetwork::Propose(NodeId id, std::string data) {
  auto pos = nodes_.at(id)->Propose(std::move(data));
  Stabilize();
  return pos;
}

void TestNetwork::Cut(NodeId a, NodeId b) {
  cuts_.insert({a, b});
  cuts_.insert({b, a});
}

void TestNetwork::Heal() {
  isolated_.clear();
  cuts_.clear();
  dropped_types_.clear();
  drop_if = nullptr;
}

void TestNetwork::Crash(NodeId id) {
  nodes_.erase(id);
  // Messages in flight to it are lost with it.
  std::erase_if(queue_, [id](const Message& m) { return m.to == id; });
}

void TestNetwork::Restart(NodeId id) {
  Replica& r = replicas_[id];
  auto snap = r.storage->Snapshot();
  // The state machine restarts from the snapshot and replays the log.
  r.conf = snap->conf;
  r.applied_index = snap->index;
  r.applied_data.clear();
  StartNode(id, snap->index);
  // Replay committed entries at once, as a driver does at startup.
  HandleReady(id);
}

void TestNetwork::CompactLog(NodeId id) {
  Replica& r = replicas_[id];
  auto meta = r.storage->CreateSnapshot(r.applied_index, r.conf);
  if (!meta.ok()) Die("create snapshot", meta.status());
  if (auto s = r.storage->Compact(r.applied_index); !s.ok()) Die("compact", s);
}

NodeId TestNetwork::Leader() const {
  NodeId leader = kNoNode;
  Term term = 0;
  for (const auto& [id, n] : nodes_) {
    if (n->role() == Role::kLeader && n->term() >= term) {
      leader = id;
      term = n->term();
    }
  }
  return leader;
}

}  // namespace mailgrid::raft::testing
