// Log replication (§5.3): appends with pipelining and batching, heartbeats,
// the commit rule (§5.4.2), and snapshot transfer for followers that need
// compacted entries (§7).
#include <algorithm>

#include "libs/raft/raft.h"

namespace mailgrid::raft {

bool Raft::AppendEntries(std::vector<Entry> entries) {
  const Index last = log_.LastIndex();
  for (size_t i = 0; i < entries.size(); ++i) {
    entries[i].term = term_;
    entries[i].index = last + 1 + i;
  }
  log_.Append(entries);
  // The leader does NOT count its own copy yet: the driver may send these
  // entries to the followers in parallel with its own fsync (thesis
  // §10.2.1), so the leader joins the quorum for them only once they are
  // durable here (OnPersisted, from RawNode::Advance).
  // Broadcast at the next Ready, so every proposal made until then travels
  // in one append per follower (batching / group commit).
  append_pending_ = true;
  return true;
}

bool Raft::MaybeSendAppend(NodeId to, bool send_if_empty) {
  Progress* pr = tracker_.Get(to);
  if (pr == nullptr || to == id_ || pr->IsPaused()) return false;
  const Index prev = pr->next - 1;
  auto prev_term = log_.Term(prev);
  auto entries = log_.EntriesFrom(pr->next, config_.max_size_per_msg);
  if (!prev_term.ok() || !entries.ok()) {
    const absl::Status& s = !prev_term.ok() ? prev_term.status() : entries.status();
    if (IsLogCompacted(s)) return SendSnapshot(to, *pr);
    return false;  // storage trouble: the next heartbeat response retries
  }
  if (entries->empty() && !send_if_empty) return false;
  Message m;
  m.type = Message::Type::kAppend;
  m.to = to;
  m.index = prev;
  m.log_term = *prev_term;
  m.commit = log_.committed();
  if (!entries->empty()) {
    const Index last = entries->back().index;
    if (pr->state == Progress::State::kReplicate) {
      // Pipelining: assume it will succeed and keep streaming.
      pr->OptimisticUpdate(last);
      pr->inflights.Add(last);
    }
  }
  if (pr->state == Progress::State::kProbe) pr->probe_sent = true;
  m.entries = std::move(*entries);
  Send(std::move(m));
  return true;
}

bool Raft::SendSnapshot(NodeId to, Progress& pr) {
  // A snapshot is expensive; do not stream one into a peer that is down.
  if (!pr.recent_active) return false;
  auto snap = log_.Snapshot();
  if (!snap.ok() || snap->index == 0) return false;  // being prepared: retry later
  Message m;
  m.type = Message::Type::kSnapshot;
  m.to = to;
  m.snapshot = *snap;
  pr.BecomeSnapshot(snap->index);
  Send(std::move(m));
  return true;
}

void Raft::SendHeartbeat(NodeId to, const std::string& ctx) {
  const Progress* pr = tracker_.Get(to);
  Message m;
  m.type = Message::Type::kHeartbeat;
  m.to = to;
  // Never tell a follower to commit beyond what it is known to hold: its
  // log past `match` may still be a stale suffix.
  m.commit = std::min(pr != nullptr ? pr->match : 0, log_.committed());
  m.context = ctx;
  Send(std::move(m));
}

void Raft::BroadcastHeartbeat(const std::string& ctx) {
  for (const auto& [id, pr] : tracker_.progress()) {
    if (id != id_) SendHeartbeat(id, ctx);
  }
}

void Raft::BroadcastAppend() {
  for (const auto& [id, pr] : tracker_.progress()) {
    if (id != id_) MaybeSendAppend(id, /*send_if_empty=*/true);
  }
  // Every append carries the commit index (a paused follower learns it
  // from its next append or heartbeat, as before).
  commit_unsent_ = false;
}

void Raft::OnPersisted(Index index, raft::Term term) {
  if (role_ != Role::kLeader || !log_.MatchTerm(index, term)) return;
  Progress* self = tracker_.Get(id_);
  if (self != nullptr && self->MaybeUpdate(index)) MaybeCommit();
}

bool Raft::CommittedEntryInCurrentTerm() const {
  return log_.TermOrZero(log_.committed()) == term_;
}

bool Raft::MaybeCommit() {
  if (!log_.MaybeCommit(tracker_.QuorumCommitted(), term_)) return false;
  // Followers learn the new commit index: now, or (deferred) with the next
  // append or heartbeat, or when the driver calls SendCommit.
  if (config_.defer_commit_broadcast) {
    commit_unsent_ = true;
  } else {
    append_pending_ = true;
  }
  ReleasePendingReadIndex();
  return true;
}

// ----- follower side -----

void Raft::HandleAppendEntries(const Message& m) {
  Message resp;
  resp.type = Message::Type::kAppendResp;
  resp.to = m.from;
  if (m.index < log_.committed()) {
    // Everything up to our commit index already matches the leader's.
    resp.index = log_.committed();
    Send(std::move(resp));
    return;
  }
  if (auto last_new = log_.MaybeAppend(m.index, m.log_term, m.commit, m.entries)) {
    resp.index = *last_new;
    Send(std::move(resp));
    return;
  }
  // Mismatch: suggest where to retry, skipping a whole term of our log at a
  // time (the leader skips its own terms above our hint's term).
  auto [hint_index, hint_term] =
      log_.FindConflictByTerm(std::min(m.index, log_.LastIndex()), m.log_term);
  resp.index = m.index;
  resp.reject = true;
  resp.reject_hint = hint_index;
  resp.log_term = hint_term;
  Send(std::move(resp));
}

void Raft::HandleHeartbeat(const Message& m) {
  log_.CommitTo(std::min(m.commit, log_.LastIndex()));
  Message resp;
  resp.type = Message::Type::kHeartbeatResp;
  resp.to = m.from;
  resp.context = m.context;
  Send(std::move(resp));
}

void Raft::HandleSnapshot(const Message& m) {
  Message resp;
  resp.type = Message::Type::kAppendResp;
  resp.to = m.from;
  resp.index = Restore(m.snapshot) ? log_.LastIndex() : log_.committed();
  Send(std::move(resp));
}

bool Raft::Restore(const SnapshotMeta& s) {
  if (s.index <= log_.committed()) return false;
  if (log_.MatchTerm(s.index, s.term)) {
    // We already hold the snapshot's last entry: just fast-forward commit.
    log_.CommitTo(s.index);
    return false;
  }
  log_.Restore(s);
  // The snapshot's state is the applied state once installed, membership
  // included.
  tracker_.SetConf(s.conf, log_.LastIndex() + 1);
  conf_index_ = s.index;
  return true;
}

// ----- leader side -----

void Raft::HandleAppendResponse(const Message& m, Progress& pr) {
  pr.recent_active = true;
  if (m.reject) {
    Index next_probe = m.reject_hint;
    if (m.log_term > 0) next_probe = log_.FindConflictByTerm(m.reject_hint, m.log_term).first;
    if (pr.MaybeDecrTo(m.index, next_probe)) {
      if (pr.state == Progress::State::kReplicate) pr.BecomeProbe();
      MaybeSendAppend(m.from, true);
    }
    return;
  }
  // An ack beyond our log cannot come from a correct peer; ignore it.
  if (m.index > log_.LastIndex()) return;
  const bool was_paused = pr.IsPaused();
  if (!pr.MaybeUpdate(m.index)) return;
  switch (pr.state) {
    case Progress::State::kProbe:
      pr.BecomeReplicate();
      break;
    case Progress::State::kSnapshot:
      // The snapshot (or an append) got it far enough for our log.
      if (pr.match + 1 >= log_.FirstIndex()) {
        pr.BecomeProbe();
        pr.BecomeReplicate();
      }
      break;
    case Progress::State::kReplicate:
      pr.inflights.FreeLE(m.index);
      break;
  }
  if (!MaybeCommit() && was_paused) MaybeSendAppend(m.from, true);
  while (MaybeSendAppend(m.from, false)) {
  }
  if (m.from == lead_transferee_ && pr.match == log_.LastIndex()) SendTimeoutNow(m.from);
}

void Raft::HandleHeartbeatResponse(const Message& m, Progress& pr) {
  pr.recent_active = true;
  pr.probe_sent = false;
  // A lost append can leave the window full forever; a heartbeat answer
  // proves the link works, so let one more message through.
  if (pr.state == Progress::State::kReplicate && pr.inflights.Full()) pr.inflights.FreeFirstOne();
  if (pr.match < log_.LastIndex()) MaybeSendAppend(m.from, true);
  if (!m.context.empty()) OnHeartbeatAck(m.from, m.context);
}

}  // namespace mailgrid::raft
