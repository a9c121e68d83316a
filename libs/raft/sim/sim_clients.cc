// Simulated clients: each runs one operation at a time against a node it
// believes to be the leader (writes) or any node (reads), following
// NOT_LEADER hints, and records every operation with invoke and return
// times. Outcomes: done (answer seen), failed (certainly never happened:
// refused, or another entry took its log slot), unknown (timeout, crash).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "libs/raft/sim/sim_internal.h"

namespace mailgrid::raft::sim {

NodeId Simulation::RandomNodeId() {
  std::vector<NodeId> ids;
  for (auto& [id, n] : nodes_) {
    if (!n->removed) ids.push_back(id);
  }
  return ids.empty() ? kNoNode : ids[rng_.Uniform(ids.size())];
}

int Simulation::Record(testing::KvOp op) {
  op.invoke = now_;
  history_.push_back(std::move(op));
  op_state_.push_back(OpState::kPending);
  return static_cast<int>(history_.size()) - 1;
}

void Simulation::ClientWake(int c) {
  Client& cl = clients_[c];
  if (cl.busy || failed_ || done_) return;
  const bool put = rng_.Chance(0.6);
  // Reads go anywhere half of the time: followers serve ReadIndex too.
  NodeId target = !put && rng_.Chance(0.5) ? RandomNodeId() : cl.target;
  SimNode* n = Find(target);
  if (n == nullptr || !n->up || n->removed) {
    cl.target = RandomNodeId();
    Schedule(now_ + 2, [this, c] { ClientWake(c); });
    return;
  }
  if (put) {
    StartPut(cl, *n);
  } else {
    StartGet(cl, *n);
  }
  if (!cl.busy) {
    // Refused (not leader / no leader): follow the hint after a moment.
    const NodeId hint = n->raw->leader();
    cl.target = hint != kNoNode ? hint : RandomNodeId();
    Schedule(now_ + 3, [this, c] { ClientWake(c); });
  }
}

void Simulation::StartPut(Client& cl, SimNode& n) {
  testing::KvOp op;
  op.client = cl.id;
  op.kind = testing::KvOp::Kind::kPut;
  op.key = absl::StrCat("k", rng_.Uniform(o_.keys));
  op.value = absl::StrCat("c", cl.id, ".", cl.seq++);
  auto pos = n.raw->Propose(EncodePut(PutCommand{op.key, op.value}));
  OnInput(n);
  if (!pos.ok()) return;  // certainly not executed: not part of the history
  const int id = Record(std::move(op));
  n.puts[pos->index] = PendingPut{id, pos->term};
  cl.busy = true;
  cl.op = id;
  cl.node = n.id;
  const int c = cl.id;
  Schedule(now_ + o_.op_timeout_ms, [this, c, id] { TimeoutOp(c, id); });
}

void Simulation::StartGet(Client& cl, SimNode& n) {
  testing::KvOp op;
  op.client = cl.id;
  op.kind = testing::KvOp::Kind::kGet;
  op.key = absl::StrCat("k", rng_.Uniform(o_.keys));
  const std::string ctx = absl::StrCat("r", cl.id, ".", cl.seq++);
  const absl::Status s = n.raw->ReadIndex(ctx);
  if (!s.ok()) {
    OnInput(n);
    return;
  }
  const int id = Record(std::move(op));
  n.reads[ctx] = PendingRead{id, std::nullopt};
  cl.busy = true;
  cl.op = id;
  cl.node = n.id;
  OnInput(n);
  const int c = cl.id;
  Schedule(now_ + o_.op_timeout_ms, [this, c, id] { TimeoutOp(c, id); });
}

void Simulation::Finish(int op, OpState state) {
  if (op_state_[op] != OpState::kPending) return;
  op_state_[op] = state;
  history_[op].ret = now_;
  for (Client& cl : clients_) {
    if (cl.busy && cl.op == op) {
      cl.busy = false;
      cl.op = -1;
      const int c = cl.id;
      Schedule(now_ + rng_.Range(0, 20), [this, c] { ClientWake(c); });
    }
  }
}

void Simulation::OnPutApplied(SimNode& n, const Entry& e) {
  auto it = n.puts.find(e.index);
  if (it == n.puts.end()) return;
  const PendingPut put = it->second;
  n.puts.erase(it);
  // Our entry is committed iff the entry at our index has our term.
  if (e.term != put.term) {
    Finish(put.op, OpState::kFailed);
    return;
  }
  Finish(put.op, OpState::kDone);
  ++stats_.puts_acked;
  if (heal_start_ >= 0 && history_[put.op].invoke >= heal_start_ && live_index_ == 0) {
    live_index_ = e.index;
  }
}

void Simulation::OnReadState(SimNode& n, const ReadState& rs) {
  auto it = n.reads.find(rs.context);
  if (it != n.reads.end()) it->second.index = rs.index;
}

void Simulation::CompleteReads(SimNode& n) {
  for (auto it = n.reads.begin(); it != n.reads.end();) {
    if (!it->second.index || *it->second.index > n.kv.applied) {
      ++it;
      continue;
    }
    const int op = it->second.op;
    auto value = n.kv.Get(history_[op].key);
    history_[op].found = value.has_value();
    history_[op].value = value.value_or("");
    Finish(op, OpState::kDone);
    ++stats_.gets_ok;
    it = n.reads.erase(it);
  }
}

void Simulation::TimeoutOp(int c, int op) {
  if (op_state_[op] != OpState::kPending) return;
  if (SimNode* n = Find(clients_[c].node)) {
    std::erase_if(n->puts, [op](const auto& p) { return p.second.op == op; });
    std::erase_if(n->reads, [op](const auto& p) { return p.second.op == op; });
  }
  Finish(op, OpState::kUnknown);
  clients_[c].target = RandomNodeId();
}

void Simulation::AbandonOps(SimNode& n) {
  for (auto& [index, put] : n.puts) Finish(put.op, OpState::kUnknown);
  for (auto& [ctx, read] : n.reads) Finish(read.op, OpState::kUnknown);
  n.puts.clear();
  n.reads.clear();
}

SimResult Simulation::Finalize() {
  SimResult result;
  for (size_t i = 0; i < history_.size(); ++i) {
    testing::KvOp op = history_[i];
    switch (op_state_[i]) {
      case OpState::kDone:
        break;
      case OpState::kFailed:
        continue;  // never happened
      case OpState::kPending:
      case OpState::kUnknown:
        // An unanswered read constrains nothing; a write may have happened.
        if (op.kind == testing::KvOp::Kind::kGet) continue;
        op.unknown = true;
        ++stats_.unknown;
        break;
    }
    result.history.push_back(std::move(op));
  }
  stats_.ops = static_cast<int>(result.history.size());
  if (!failed_) {
    auto check = testing::CheckKvLinearizable(result.history);
    if (check.outcome == testing::CheckResult::Outcome::kViolation) {
      Fail("client history is not linearizable:\n" + check.report);
    }
  }
  result.failure = failure_;
  result.stats = stats_;
  return result;
}

SimResult RunSimulation(const SimOptions& options) { return Simulation(options).Run(); }

}  // namespace mailgrid::raft::sim
