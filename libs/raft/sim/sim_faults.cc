// The adversary and the operator: random partitions (also one-way), node
// crashes and restarts during the chaos phase; an operator replacing one
// replica (learner -> voter -> remove the old one); then the healing phase
// in which the group must recover (liveness).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "libs/raft/sim/sim_internal.h"

namespace mailgrid::raft::sim {

void Simulation::Partition() {
  ++stats_.partitions;
  blocked_.clear();
  std::vector<NodeId> ids;
  for (auto& [id, n] : nodes_) {
    if (!n->removed) ids.push_back(id);
  }
  const bool one_way = rng_.Chance(0.3);
  if (rng_.Chance(0.4)) {
    // Isolate one node.
    const NodeId lone = ids[rng_.Uniform(ids.size())];
    for (NodeId other : ids) {
      if (other == lone) continue;
      blocked_.insert({lone, other});
      if (!one_way) blocked_.insert({other, lone});
    }
    return;
  }
  std::map<NodeId, int> side;
  for (NodeId id : ids) side[id] = static_cast<int>(rng_.Uniform(2));
  for (NodeId a : ids) {
    for (NodeId b : ids) {
      if (side[a] == side[b]) continue;
      if (one_way && side[a] == 1) continue;  // only 0 -> 1 is cut
      blocked_.insert({a, b});
    }
  }
}

// A rolling restart drains the leader first: hand leadership to another
// voter (which may be down or cut off: then the transfer times out).
void Simulation::TransferLeader() {
  SimNode* leader = CurrentLeader();
  if (leader == nullptr) return;
  std::vector<NodeId> others;
  for (NodeId id : leader->raw->conf_state().voters) {
    if (id != leader->id) others.push_back(id);
  }
  if (others.empty()) return;
  if (leader->raw->TransferLeadership(others[rng_.Uniform(others.size())]).ok()) {
    ++stats_.transfers;
  }
  OnInput(*leader);
}

void Simulation::FaultWake() {
  if (!chaos_ || failed_) return;
  const uint64_t roll = rng_.Uniform(100);
  if (roll < 8) {
    TransferLeader();
  } else if (roll < 30) {
    Partition();
  } else if (roll < 55) {
    blocked_.clear();
  } else if (roll < 75) {
    std::vector<SimNode*> up;
    for (auto& [id, n] : nodes_) {
      if (n->up) up.push_back(n.get());
    }
    if (up.size() > 1 || (o_.nodes == 1 && !up.empty())) CrashNode(*up[rng_.Uniform(up.size())]);
  } else {
    std::vector<SimNode*> down;
    for (auto& [id, n] : nodes_) {
      if (!n->up && !n->removed) down.push_back(n.get());
    }
    if (!down.empty()) StartNode(*down[rng_.Uniform(down.size())]);
  }
  Schedule(now_ + rng_.Range(o_.fault_interval_ms / 2, o_.fault_interval_ms * 3 / 2),
           [this] { FaultWake(); });
}

namespace {

bool Has(const std::vector<NodeId>& ids, NodeId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

// Replaces a replica the way an operator would, one step per wake, each
// step retried on whoever is leader until that leader has APPLIED it.
void Simulation::OperatorWake() {
  if (failed_ || done_ || op_stage_ == 0 || op_stage_ >= 4) return;
  Schedule(now_ + 25, [this] { OperatorWake(); });
  SimNode* leader = CurrentLeader();
  if (leader == nullptr) return;
  const ConfState conf = leader->raw->conf_state();
  if (op_stage_ == 1 && old_node_ == kNoNode) {
    old_node_ = conf.voters[rng_.Uniform(conf.voters.size())];
    new_node_ = 100 + static_cast<NodeId>(nodes_.size());
    AddNode(new_node_, {});  // joins empty, learns everything from the leader
  }
  ConfChange cc;
  switch (op_stage_) {
    case 1:
      if (Has(conf.learners, new_node_) || Has(conf.voters, new_node_)) {
        op_stage_ = 2;
        ++stats_.conf_changes_applied;
        return;
      }
      cc = ConfChange{ConfChange::Type::kAddLearner, new_node_};
      break;
    case 2: {
      if (Has(conf.voters, new_node_)) {
        op_stage_ = 3;
        ++stats_.conf_changes_applied;
        return;
      }
      // Promote only once the learner has caught up.
      const NodeStatus st = leader->raw->Status();
      auto pr = std::find_if(st.progress.begin(), st.progress.end(),
                             [&](const PeerProgress& p) { return p.id == new_node_; });
      if (pr == st.progress.end() || pr->match + 5 < st.commit) return;
      cc = ConfChange{ConfChange::Type::kAddVoter, new_node_};
      break;
    }
    case 3:
      if (!Has(conf.voters, old_node_) && !Has(conf.learners, old_node_)) {
        op_stage_ = 4;
        ++stats_.conf_changes_applied;
        if (SimNode* old = Find(old_node_)) {
          CrashNode(*old);
          old->removed = true;
        }
        return;
      }
      cc = ConfChange{ConfChange::Type::kRemoveNode, old_node_};
      break;
  }
  (void)leader->raw->ProposeConfChange(cc);  // refused while one is pending
  OnInput(*leader);
}

void Simulation::EndChaos() {
  chaos_ = false;
  blocked_.clear();
  for (auto& [id, n] : nodes_) {
    if (!n->up && !n->removed) StartNode(*n);
  }
  heal_start_ = now_;
  Schedule(now_ + 50, [this] { LivenessCheck(); });
}

void Simulation::LivenessCheck() {
  if (failed_ || done_) return;
  Schedule(now_ + 50, [this] { LivenessCheck(); });
  if (live_index_ == 0) return;  // no write invoked after healing has committed yet
  SimNode* leader = CurrentLeader();
  if (leader == nullptr) return;
  // Every live member has applied the new write (so it also caught up).
  const ConfState conf = leader->raw->conf_state();
  for (auto& [id, n] : nodes_) {
    const bool member = Has(conf.voters, id) || Has(conf.learners, id);
    if (member && n->up && n->kv.applied < live_index_) return;
  }
  // Finish any membership change in progress before declaring victory, so
  // it gets exercised under healthy conditions too.
  if (op_stage_ != 0 && op_stage_ < 4) return;
  done_ = true;
}

}  // namespace mailgrid::raft::sim
