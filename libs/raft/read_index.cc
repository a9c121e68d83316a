// Linearizable reads without writing to the log (dissertation §6.4,
// ReadIndex): the leader notes its commit index, proves it is still leader
// with a round of heartbeats acknowledged by a quorum, and then the read may
// be served by any replica that has applied up to that index.
#include <algorithm>

#include "libs/raft/raft.h"

namespace mailgrid::raft {

absl::Status Raft::ReadIndex(std::string ctx) {
  if (ctx.empty()) return absl::InvalidArgumentError("raft: ReadIndex needs a context");
  Message m;
  m.type = Message::Type::kReadIndex;
  m.from = id_;
  m.to = id_;
  m.context = std::move(ctx);
  if (role_ == Role::kLeader) {
    HandleReadIndexRequest(std::move(m));
    return absl::OkStatus();
  }
  if (lead_ == kNoNode) return absl::FailedPreconditionError("raft: no leader known");
  m.to = lead_;
  Send(std::move(m));
  return absl::OkStatus();
}

void Raft::HandleReadIndexRequest(Message m) {
  if (tracker_.conf().voters.size() == 1 && tracker_.IsVoter(id_)) {
    // Alone, we are the quorum: our commit index is current.
    RespondToReadIndex(m, log_.committed());
    return;
  }
  // Until an entry of our term commits, our commit index may lag what a
  // previous leader committed (§6.4 step 1): hold the read.
  if (!CommittedEntryInCurrentTerm()) {
    reads_awaiting_commit_.push_back(std::move(m));
    return;
  }
  PendingRead read;
  read.index = log_.committed();
  read.acks.push_back(id_);
  read_round_pending_ = m.context;
  read.req = std::move(m);
  pending_reads_.push_back(std::move(read));
}

void Raft::RespondToReadIndex(const Message& req, Index index) {
  if (req.from == id_) {
    read_states_.push_back(ReadState{index, req.context});
    return;
  }
  Message resp;
  resp.type = Message::Type::kReadIndexResp;
  resp.to = req.from;
  resp.index = index;
  resp.context = req.context;
  Send(std::move(resp));
}

void Raft::OnHeartbeatAck(NodeId from, const std::string& ctx) {
  if (!tracker_.IsVoter(from)) return;  // learners do not make a quorum
  auto it = std::find_if(pending_reads_.begin(), pending_reads_.end(),
                         [&](const PendingRead& r) { return r.req.context == ctx; });
  if (it == pending_reads_.end()) return;
  if (std::find(it->acks.begin(), it->acks.end(), from) == it->acks.end()) {
    it->acks.push_back(from);
  }
  int voters_acked = 0;
  for (NodeId id : it->acks) voters_acked += tracker_.IsVoter(id) ? 1 : 0;
  if (voters_acked < tracker_.Quorum()) return;
  // The quorum answered a heartbeat sent after every earlier read was
  // registered, so it confirms our leadership for those reads too.
  const auto end = std::next(it);
  for (auto r = pending_reads_.begin(); r != end; ++r) RespondToReadIndex(r->req, r->index);
  pending_reads_.erase(pending_reads_.begin(), end);
}

void Raft::ReleasePendingReadIndex() {
  if (reads_awaiting_commit_.empty() || !CommittedEntryInCurrentTerm()) return;
  auto reads = std::move(reads_awaiting_commit_);
  reads_awaiting_commit_.clear();
  for (Message& m : reads) HandleReadIndexRequest(std::move(m));
}

}  // namespace mailgrid::raft
