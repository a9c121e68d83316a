// RawNode: packages the Raft state machine's output into Ready batches and
// takes them back on Advance (see raw_node.h for the driver contract).
#include "libs/raft/raw_node.h"

#include "libs/raft/raft.h"

namespace mailgrid::raft {

absl::StatusOr<std::unique_ptr<RawNode>> RawNode::Create(Config config, const Storage* storage) {
  auto raft = Raft::Create(std::move(config), storage);
  if (!raft.ok()) return raft.status();
  return std::unique_ptr<RawNode>(new RawNode(std::move(*raft)));
}

RawNode::RawNode(std::unique_ptr<Raft> raft) : raft_(std::move(raft)) {
  prev_soft_ = raft_->soft_state();
  prev_hard_ = raft_->hard_state();
}

RawNode::~RawNode() = default;

void RawNode::Tick() { raft_->Tick(); }
absl::Status RawNode::Campaign() { return raft_->Campaign(); }
absl::StatusOr<LogPosition> RawNode::Propose(std::string data) {
  return raft_->Propose(std::move(data));
}
absl::StatusOr<LogPosition> RawNode::ProposeConfChange(const ConfChange& cc) {
  return raft_->ProposeConfChange(cc);
}
absl::Status RawNode::ReadIndex(std::string ctx) { return raft_->ReadIndex(std::move(ctx)); }
absl::Status RawNode::TransferLeadership(NodeId target) {
  return raft_->TransferLeadership(target);
}
absl::Status RawNode::Step(Message m) { return raft_->Step(std::move(m)); }
void RawNode::ReportUnreachable(NodeId id) { raft_->ReportUnreachable(id); }
void RawNode::ReportSnapshot(NodeId id, bool ok) { raft_->ReportSnapshot(id, ok); }

bool RawNode::CommitUnsent() const { return raft_->CommitUnsent(); }

void RawNode::SendCommit() { raft_->SendCommit(); }

bool RawNode::HasReady() const {
  return raft_->soft_state() != prev_soft_ || raft_->hard_state() != prev_hard_ ||
         raft_->HasPendingWork();
}

Ready RawNode::GetReady() {
  raft_->FlushAppends();
  Ready rd;
  if (SoftState ss = raft_->soft_state(); ss != prev_soft_) {
    rd.soft_state = ss;
    prev_soft_ = ss;
  }
  if (HardState hs = raft_->hard_state(); hs != prev_hard_) {
    rd.hard_state = hs;
    prev_hard_ = hs;
  }
  RaftLog& log = raft_->log();
  rd.entries = log.UnstableEntries();
  rd.snapshot = log.UnstableSnapshot();
  rd.committed = log.NextCommittedEnts(raft_->config().max_committed_size_per_ready);
  rd.messages = raft_->TakeMessages();
  rd.read_states = raft_->TakeReadStates();
  return rd;
}

void RawNode::Advance(const Ready& rd) {
  RaftLog& log = raft_->log();
  if (rd.snapshot) log.StableSnapTo(rd.snapshot->index);
  if (!rd.entries.empty()) {
    log.StableTo(rd.entries.back().index, rd.entries.back().term);
    raft_->OnPersisted(rd.entries.back().index, rd.entries.back().term);
  }
  if (rd.snapshot && rd.snapshot->index > log.applied()) log.AppliedTo(rd.snapshot->index);
  raft_->OnApplied(rd.committed);
}

NodeStatus RawNode::Status() const {
  NodeStatus s;
  s.id = raft_->id();
  s.term = raft_->term();
  s.vote = raft_->vote();
  s.role = raft_->role();
  s.leader = raft_->leader();
  s.commit = raft_->log().committed();
  s.applied = raft_->log().applied();
  s.last_index = raft_->log().LastIndex();
  s.lead_transferee = raft_->lead_transferee();
  s.conf = raft_->tracker().conf();
  if (s.role != Role::kLeader) return s;
  for (const auto& [id, pr] : raft_->tracker().progress()) {
    PeerProgress p;
    p.id = id;
    p.match = pr.match;
    p.next = pr.next;
    p.state = pr.state;
    p.learner = pr.learner;
    p.recent_active = pr.recent_active;
    p.inflight = pr.inflights.Count();
    p.pending_snapshot = pr.pending_snapshot;
    s.progress.push_back(p);
  }
  return s;
}

NodeId RawNode::id() const { return raft_->id(); }
NodeId RawNode::leader() const { return raft_->leader(); }
Term RawNode::term() const { return raft_->term(); }
Role RawNode::role() const { return raft_->role(); }
ConfState RawNode::conf_state() const { return raft_->tracker().conf(); }

}  // namespace mailgrid::raft
