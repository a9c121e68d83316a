// The simulation's event loop, the simulated driver around each RawNode
// (the Ready loop with a simulated fsync), and the safety invariants.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/raft/sim/sim_internal.h"

namespace mailgrid::raft::sim {
namespace {

template <typename T>
bool Later(const T& a, const T& b) {
  return a.at != b.at ? a.at > b.at : a.seq > b.seq;
}

}  // namespace

Simulation::Simulation(const SimOptions& options) : o_(options), rng_(options.seed) {}

void Simulation::Schedule(int64_t at, std::function<void()> fn) {
  events_.push_back(Event{at, seq_++, std::move(fn)});
  std::push_heap(events_.begin(), events_.end(), Later<Event>);
}

void Simulation::Fail(const std::string& why) {
  if (failed_) return;
  failed_ = true;
  failure_ = absl::StrCat("seed ", o_.seed, " at t=", now_, "ms: ", why, "\n", DescribeNodes());
}

SimNode* Simulation::Find(NodeId id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : it->second.get();
}

SimNode* Simulation::CurrentLeader() {
  SimNode* best = nullptr;
  for (auto& [id, n] : nodes_) {
    if (!n->up || n->raw->role() != Role::kLeader) continue;
    if (best == nullptr || n->raw->term() > best->raw->term()) best = n.get();
  }
  return best;
}

std::string Simulation::DescribeNodes() {
  std::string out;
  for (auto& [id, n] : nodes_) {
    absl::StrAppend(&out, "  node ", id, n->removed ? " (removed)" : "", n->up ? "" : " DOWN");
    if (n->up) {
      NodeStatus s = n->raw->Status();
      absl::StrAppend(&out, " term=", s.term, " role=", RoleName(s.role), " leader=", s.leader,
                      " commit=", s.commit, " applied=", n->kv.applied, " last=", s.last_index);
      for (const PeerProgress& p : s.progress) {
        absl::StrAppend(&out, "\n    peer ", p.id, " match=", p.match, " next=", p.next,
                        " state=", static_cast<int>(p.state), " active=", p.recent_active,
                        " inflight=", p.inflight, " pending_snap=", p.pending_snapshot);
      }
    }
    absl::StrAppend(&out, " disk: term=", n->storage.hard_state().term,
                    " commit=", n->storage.hard_state().commit, " log=[", n->storage.FirstIndex(),
                    ",", n->storage.LastIndex(), "]\n");
  }
  return out;
}

// ----- nodes and the driver -----

void Simulation::AddNode(NodeId id, const std::vector<NodeId>& bootstrap) {
  auto n = std::make_unique<SimNode>();
  n->id = id;
  if (!bootstrap.empty()) (void)n->storage.Bootstrap(bootstrap);
  SimNode& ref = *n;
  nodes_[id] = std::move(n);
  StartNode(ref);
  // Each node ticks on its own phase, like independent timers.
  Schedule(now_ + rng_.Range(1, o_.tick_ms), [this, id] { TickNode(id); });
}

void Simulation::StartNode(SimNode& n) {
  const SnapshotMeta snap = *n.storage.Snapshot();
  // The state machine restarts from the last durable snapshot and replays.
  n.kv = KvState{};
  if (auto it = n.snapshots.find(snap.index); it != n.snapshots.end()) n.kv = *it->second;
  n.kv.conf = snap.conf;
  n.kv.applied = snap.index;
  Config c;
  c.id = n.id;
  c.election_tick = o_.election_tick;
  c.heartbeat_tick = 1;
  c.max_size_per_msg = 4096;
  c.max_inflight_msgs = 8;
  c.applied = snap.index;
  c.defer_commit_broadcast = o_.defer_commit_ms >= 0;
  auto rng = std::make_shared<Rng>(rng_.Next());
  c.random = [rng](uint64_t k) { return rng->Uniform(k); };
  auto raw = RawNode::Create(c, &n.storage);
  if (!raw.ok()) {
    Fail(absl::StrCat("node ", n.id, " failed to start: ", raw.status().ToString()));
    return;
  }
  n.raw = std::move(*raw);
  n.up = true;
  ++n.incarnation;
  n.persisting = false;
  n.commit_send_scheduled = false;
  OnInput(n);
}

void Simulation::CrashNode(SimNode& n) {
  if (!n.up) return;
  ++stats_.crashes;
  AbandonOps(n);
  n.up = false;
  ++n.incarnation;  // the Ready being persisted and messages to it are lost
  n.raw.reset();
  n.persisting = false;
  n.ready = Ready{};
  n.staged.clear();
  n.kv = KvState{};
}

void Simulation::CheckLeader(SimNode& n) {
  const Term term = n.raw->term();
  stats_.max_term = std::max(stats_.max_term, term);
  if (n.raw->role() != Role::kLeader) return;
  auto [it, inserted] = leaders_.emplace(term, n.id);
  if (!inserted && it->second != n.id) {
    Fail(absl::StrCat("two leaders in term ", term, ": ", it->second, " and ", n.id));
  }
}

void Simulation::OnInput(SimNode& n) {
  if (!n.up) return;
  CheckLeader(n);
  MaybeStartReady(n);
  if (o_.defer_commit_ms >= 0 && !n.commit_send_scheduled && n.raw->CommitUnsent()) {
    n.commit_send_scheduled = true;
    const NodeId id = n.id;
    const uint64_t inc = n.incarnation;
    Schedule(now_ + o_.defer_commit_ms, [this, id, inc] {
      SimNode* m = Find(id);
      if (m == nullptr || m->incarnation != inc) return;
      m->commit_send_scheduled = false;
      if (!m->up) return;
      m->raw->SendCommit();
      OnInput(*m);
    });
  }
}

void Simulation::MaybeStartReady(SimNode& n) {
  if (n.persisting || !n.raw->HasReady()) return;
  n.ready = n.raw->GetReady();
  n.persisting = true;
  if (o_.unsafe_send_before_persist) {
    SendAll(n, std::exchange(n.ready.messages, {}));
  } else if (o_.leader_sends_early) {
    std::vector<Message> early;
    std::vector<Message> later;
    const Term durable = n.storage.hard_state().term;
    for (Message& m : n.ready.messages) {
      (MaySendBeforePersist(m, durable) ? early : later).push_back(std::move(m));
    }
    n.ready.messages = std::move(later);
    SendAll(n, std::move(early));
  }
  const bool needs_sync = n.ready.hard_state || !n.ready.entries.empty() || n.ready.snapshot;
  const int64_t latency = needs_sync ? rng_.Range(o_.fsync_min_ms, o_.fsync_max_ms) : 0;
  const NodeId id = n.id;
  const uint64_t inc = n.incarnation;
  Schedule(now_ + latency, [this, id, inc] { FinishReady(id, inc); });
}

void Simulation::FinishReady(NodeId id, uint64_t incarnation) {
  SimNode* n = Find(id);
  if (n == nullptr || !n->up || n->incarnation != incarnation) return;  // crashed meanwhile
  Ready rd = std::move(n->ready);
  Persist(*n, rd);
  SendAll(*n, std::move(rd.messages));
  ApplyCommitted(*n, rd.committed);
  for (const ReadState& rs : rd.read_states) OnReadState(*n, rs);
  CompleteReads(*n);
  n->raw->Advance(rd);
  n->persisting = false;
  MaybeCompact(*n);
  OnInput(*n);
}

void Simulation::Persist(SimNode& n, const Ready& rd) {
  if (rd.snapshot) InstallSnapshot(n, *rd.snapshot);
  if (auto s = n.storage.Append(rd.entries); !s.ok()) Fail("append: " + s.ToString());
  if (!rd.hard_state) return;
  const HardState& old = n.storage.hard_state();
  const HardState& hs = *rd.hard_state;
  if (hs.term < old.term || hs.commit < old.commit) {
    Fail(absl::StrCat("node ", n.id, " hard state went back: term ", old.term, "->", hs.term,
                      " commit ", old.commit, "->", hs.commit));
  }
  if (hs.term == old.term && old.vote != kNoNode && hs.vote != old.vote) {
    Fail(absl::StrCat("node ", n.id, " changed its vote in term ", hs.term));
  }
  n.storage.SetHardState(hs);
}

void Simulation::InstallSnapshot(SimNode& n, const SnapshotMeta& meta) {
  auto it = n.staged.find(meta.index);
  if (it == n.staged.end()) {
    Fail(absl::StrCat("node ", n.id, " must install snapshot ", meta.index, " it never received"));
    return;
  }
  std::shared_ptr<const KvState> data = it->second;
  if (data->applied != meta.index || data->conf != meta.conf) {
    Fail(absl::StrCat("snapshot data does not match its metadata at ", meta.index));
  }
  if (meta.index < applied_hash_.size() && applied_hash_[meta.index] != 0 &&
      applied_hash_[meta.index] != data->hash) {
    Fail(absl::StrCat("snapshot at ", meta.index, " diverges from the applied history"));
  }
  if (auto s = n.storage.ApplySnapshot(meta); !s.ok()) Fail("apply snapshot: " + s.ToString());
  n.snapshots.clear();
  n.snapshots[meta.index] = data;
  n.kv = *data;
  // A newer snapshot may have arrived while this one was being persisted.
  n.staged.erase(n.staged.begin(), n.staged.upper_bound(meta.index));
  ++stats_.snapshots_installed;
  // Writes waiting at indexes the snapshot skipped: outcome unknown here.
  for (auto p = n.puts.begin(); p != n.puts.end() && p->first <= meta.index;) {
    Finish(p->second.op, OpState::kUnknown);
    p = n.puts.erase(p);
  }
}

void Simulation::CheckApplied(const SimNode& n, const Entry& e, uint64_t hash) {
  if (applied_hash_.size() <= e.index) applied_hash_.resize(e.index + 1, 0);
  uint64_t& known = applied_hash_[e.index];
  if (known == 0) {
    known = hash;
  } else if (known != hash) {
    Fail(absl::StrCat("node ", n.id, " applied a different entry (or history) at index ", e.index,
                      " (term ", e.term, ")"));
  }
  stats_.committed = std::max<uint64_t>(stats_.committed, e.index);
}

void Simulation::ApplyCommitted(SimNode& n, const std::vector<Entry>& entries) {
  for (const Entry& e : entries) {
    if (e.index != n.kv.applied + 1) {
      Fail(absl::StrCat("node ", n.id, " applied index ", e.index, " after ", n.kv.applied));
      return;
    }
    n.kv.Apply(e);
    CheckApplied(n, e, n.kv.hash);
    OnPutApplied(n, e);
  }
}

void Simulation::MaybeCompact(SimNode& n) {
  const Index snap = n.storage.Snapshot()->index;
  if (n.kv.applied < snap + static_cast<Index>(o_.snapshot_interval)) return;
  if (auto meta = n.storage.CreateSnapshot(n.kv.applied, n.kv.conf); !meta.ok()) {
    Fail("create snapshot: " + meta.status().ToString());
    return;
  }
  n.snapshots.clear();
  n.snapshots[n.kv.applied] = std::make_shared<const KvState>(n.kv);
  // Keep a few entries so a slightly lagging follower needs no snapshot.
  if (n.kv.applied > 5 && n.kv.applied - 5 > n.storage.FirstIndex() - 1) {
    if (auto s = n.storage.Compact(n.kv.applied - 5); !s.ok()) Fail("compact: " + s.ToString());
  }
}

// ----- the network -----

void Simulation::SendAll(SimNode& n, std::vector<Message> msgs) {
  for (Message& m : msgs) {
    std::shared_ptr<const KvState> data;
    if (m.type == Message::Type::kSnapshot) {
      auto it = n.snapshots.find(m.snapshot.index);
      if (it == n.snapshots.end()) {
        // Superseded by a newer snapshot since the core chose it: the
        // transport reports failure and the leader retries with the latest.
        ReportSnapshotLater(n.id, m.to, false);
        continue;
      }
      data = it->second;
    }
    NetSend(std::move(m), std::move(data));
  }
}

void Simulation::ReportSnapshotLater(NodeId from, NodeId to, bool ok) {
  const uint64_t inc = Find(from)->incarnation;
  Schedule(now_ + o_.delay_max_ms, [this, from, to, ok, inc] {
    SimNode* n = Find(from);
    if (n == nullptr || !n->up || n->incarnation != inc) return;
    n->raw->ReportSnapshot(to, ok);
    OnInput(*n);
  });
}

void Simulation::NetSend(Message m, std::shared_ptr<const KvState> data) {
  ++stats_.messages;
  const bool lossy = chaos_;
  if (lossy && rng_.Chance(o_.drop_rate)) {
    // A lost snapshot stream is noticed by the transport, which tells the
    // sender (RawNode::ReportSnapshot); plain messages vanish silently.
    if (m.type == Message::Type::kSnapshot) ReportSnapshotLater(m.from, m.to, false);
    return;
  }
  const int copies = lossy && rng_.Chance(o_.dup_rate) ? 2 : 1;
  SimNode* to = Find(m.to);
  const uint64_t inc = to != nullptr ? to->incarnation : 0;
  for (int i = 0; i < copies; ++i) {
    int64_t delay = rng_.Range(o_.delay_min_ms, o_.delay_max_ms);
    if (lossy && rng_.Chance(o_.slow_rate)) delay = rng_.Range(o_.delay_max_ms, o_.slow_max_ms);
    wire_.push_back(InFlight{now_ + delay, seq_++, inc, m, data});
    std::push_heap(wire_.begin(), wire_.end(), Later<InFlight>);
  }
}

void Simulation::Deliver(InFlight f) {
  SimNode* from = Find(f.msg.from);
  SimNode* to = Find(f.msg.to);
  const bool is_snapshot = f.msg.type == Message::Type::kSnapshot;
  const bool lost = to == nullptr || !to->up || to->incarnation != f.to_incarnation ||
                    blocked_.count({f.msg.from, f.msg.to}) > 0;
  if (lost) {
    // The transport notices broken streams and unreachable peers.
    if (from != nullptr && from->up) {
      if (is_snapshot) from->raw->ReportSnapshot(f.msg.to, false);
      if (rng_.Chance(0.2)) from->raw->ReportUnreachable(f.msg.to);
      OnInput(*from);
    }
    return;
  }
  if (is_snapshot) to->staged[f.msg.snapshot.index] = f.snapshot_data;
  const NodeId to_id = to->id;
  if (auto s = to->raw->Step(std::move(f.msg)); !s.ok()) Fail("step: " + s.ToString());
  OnInput(*to);
  if (is_snapshot && from != nullptr && from->up) {
    from->raw->ReportSnapshot(to_id, true);
    OnInput(*from);
  }
}

void Simulation::TickNode(NodeId id) {
  SimNode* n = Find(id);
  if (n == nullptr || n->removed) return;
  if (n->up) {
    n->raw->Tick();
    OnInput(*n);
  }
  Schedule(now_ + o_.tick_ms, [this, id] { TickNode(id); });
}

// Log Matching on disk: every replica's durable log agrees on the term of
// every entry up to its durable commit index (down replicas included).
void Simulation::CheckDurableLogsAgree() {
  std::map<Index, std::pair<Term, NodeId>> seen;
  for (auto& [id, n] : nodes_) {
    const Index commit = std::min(n->storage.hard_state().commit, n->storage.LastIndex());
    for (Index i = n->storage.FirstIndex(); i <= commit; ++i) {
      const Term t = *n->storage.Term(i);
      auto [it, inserted] = seen.emplace(i, std::make_pair(t, id));
      if (!inserted && it->second.first != t) {
        Fail(absl::StrCat("committed entry ", i, " has term ", it->second.first, " on node ",
                          it->second.second, " but term ", t, " on node ", id));
        return;
      }
    }
  }
}

// ----- the loop -----

bool Simulation::RunOne() {
  const bool have_event = !events_.empty();
  const bool have_msg = !wire_.empty();
  if (!have_event && !have_msg) return false;
  const bool take_msg =
      have_msg && (!have_event || std::make_pair(wire_.front().at, wire_.front().seq) <
                                      std::make_pair(events_.front().at, events_.front().seq));
  if (take_msg) {
    std::pop_heap(wire_.begin(), wire_.end(), Later<InFlight>);
    InFlight f = std::move(wire_.back());
    wire_.pop_back();
    now_ = f.at;
    Deliver(std::move(f));
  } else {
    std::pop_heap(events_.begin(), events_.end(), Later<Event>);
    Event e = std::move(events_.back());
    events_.pop_back();
    now_ = e.at;
    e.fn();
  }
  return true;
}

SimResult Simulation::Run() {
  std::vector<NodeId> voters;
  for (int i = 1; i <= o_.nodes; ++i) voters.push_back(static_cast<NodeId>(i));
  for (NodeId id : voters) AddNode(id, voters);
  for (int c = 0; c < o_.clients; ++c) {
    clients_.push_back(Client{c, false, -1, kNoNode, RandomNodeId(), 0});
    Schedule(rng_.Range(0, 50), [this, c] { ClientWake(c); });
  }
  Schedule(rng_.Range(0, o_.fault_interval_ms), [this] { FaultWake(); });
  if (rng_.Chance(o_.membership_change_rate)) {
    Schedule(rng_.Range(o_.chaos_ms / 10, o_.chaos_ms * 6 / 10), [this] {
      op_stage_ = 1;
      OperatorWake();
    });
  }
  Schedule(o_.chaos_ms, [this] { EndChaos(); });
  const int64_t end = o_.chaos_ms + o_.heal_ms;
  while (!failed_ && !done_ && now_ <= end && RunOne()) {
  }
  if (!failed_ && !done_) {
    Fail(absl::StrCat("liveness: after ", o_.heal_ms, "ms without faults no new write was ",
                      "committed and applied everywhere (live index ", live_index_, ")"));
  }
  CheckDurableLogsAgree();
  return Finalize();
}

}  // namespace mailgrid::raft::sim
