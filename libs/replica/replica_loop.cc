// The raft-loop thread: the only thread that touches the RawNode.
//
// One iteration: wait for work or the next tick; take the whole inbox
// (everything that arrived while the previous Ready was being persisted:
// this is where group commit comes from, because all those proposals go
// into the next Ready and share its one fsync); tick if due; step messages;
// propose; then handle every Ready in the documented order.
#include <algorithm>
#include <limits>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/replica/codec.h"
#include "libs/replica/replica.h"
#include "libs/replica/thread_name.h"

namespace mailgrid::replica {

using Stage = ReplicaMetrics::Stage;

bool Replica::InboxReady() const { return stop_ || !inbox_.empty(); }

bool Replica::stopping() const {
  absl::MutexLock lock(&inbox_mu_);
  return stop_;
}

void Replica::Run() {
  NameThisThread("raft-loop");
  absl::Time next_tick = absl::Now() + options_.tick_interval;
  while (true) {
    Inbox inbox;
    // With a Ready pending, do not wait: only take what arrived meanwhile
    // (typically the followers' acks that came in during our last fsync),
    // so they are stepped before the next Ready and it commits them.
    const bool ready_pending = node_->HasReady();
    absl::Time t0 = absl::Now();
    // A leader owes the followers a commit index that no append carried
    // yet: the next write's append will, else it goes out on its own once
    // due (ReplicaOptions::commit_broadcast_delay).
    if (!node_->CommitUnsent()) {
      commit_due_ = absl::InfiniteFuture();
    } else if (commit_due_ == absl::InfiniteFuture()) {
      commit_due_ = t0 + options_.commit_broadcast_delay;
    }
    {
      absl::MutexLock lock(&inbox_mu_);
      if (!ready_pending) {
        inbox_mu_.AwaitWithDeadline(absl::Condition(this, &Replica::InboxReady),
                                    std::min(next_tick, commit_due_));
      }
      if (stop_) break;
      std::swap(inbox, inbox_);
    }
    absl::Time now = absl::Now();
    metrics_->AddLoopTime(Stage::kWait, absl::ToDoubleSeconds(now - t0));
    if (now >= next_tick) {
      node_->Tick();
      ExpireWriters(now);
      ExpireReads(now);
      MaybeRaiseFormat();
      next_tick += options_.tick_interval;
      // Behind by more than a tick (a slow fsync): skip the missed ticks
      // rather than firing them in a burst that would look like silence.
      if (next_tick < now) next_tick = now + options_.tick_interval;
    }
    HandleInbox(std::move(inbox));
    if (now >= commit_due_) {
      node_->SendCommit();  // a no-op if a proposal's append now carries it
      commit_due_ = absl::InfiniteFuture();
    }
    absl::Time t1 = absl::Now();
    metrics_->AddLoopTime(Stage::kInbox, absl::ToDoubleSeconds(t1 - now));
    // One Ready per turn: the inbox is taken again between two Readys.
    if (node_->HasReady()) {
      HandleReady(node_->GetReady());
      absl::Time t2 = absl::Now();
      // HandleReady accounted its apply and persist time itself.
      metrics_->AddLoopTime(Stage::kReady,
                            std::max(0.0, absl::ToDoubleSeconds(t2 - t1) - ready_accounted_));
      ready_accounted_ = 0;
      t1 = t2;
    }
    completer_.Flush();  // one wake for every writer answered this turn
    Publish();
    metrics_->AddLoopTime(Stage::kPublish, absl::ToDoubleSeconds(absl::Now() - t1));
    metrics_->loop_turns->Increment();
  }
  completer_.Flush();
  FailAllWaiters(absl::UnavailableError("replica stopping"));
}

void Replica::HandleInbox(Inbox inbox) {
  const absl::Time now = absl::Now();
  for (raft::Message& m : inbox.messages) {
    const auto type = m.type;
    if (type == raft::Message::Type::kAppendResp && !m.reject && !write_waiters_.empty()) {
      NoteAck(m.index, now);
    }
    absl::Status s = node_->Step(std::move(m));
    if (!s.ok())
      log::Debug("raft: message not stepped", {{"type", static_cast<int>(type)}, {"error", s}});
  }
  for (const Report& r : inbox.reports) {
    switch (r.kind) {
      case Report::Kind::kUnreachable:
        node_->ReportUnreachable(r.peer);
        break;
      case Report::Kind::kSnapshotOk:
        node_->ReportSnapshot(r.peer, true);
        break;
      case Report::Kind::kSnapshotFailed:
        node_->ReportSnapshot(r.peer, false);
        break;
    }
  }
  for (Proposal& p : inbox.proposals) {
    if (disk_full_.load()) {
      AnswerWrite(std::move(p.done),
                  absl::ResourceExhaustedError("disk full: this replica refuses writes"));
      continue;
    }
    absl::StatusOr<raft::LogPosition> pos = node_->Propose(std::move(p.data));
    if (!pos.ok()) {
      metrics_->proposals_refused->Increment();
      // Leader but refusing (a transfer in progress): retry shortly.
      AnswerWrite(std::move(p.done), node_->role() == raft::Role::kLeader
                                         ? absl::UnavailableError(pos.status().message())
                                         : NotLeader());
      continue;
    }
    metrics_->proposals->Increment();
    write_waiters_[pos->index] =
        WriteWaiter{pos->term, std::move(p.done), p.deadline, p.queued, now};
  }
  for (ConfProposal& c : inbox.conf_changes) {
    absl::StatusOr<raft::LogPosition> pos = node_->ProposeConfChange(c.change);
    if (!pos.ok()) {
      c.done->Set(node_->role() == raft::Role::kLeader ? pos.status() : NotLeader());
      continue;
    }
    log::Info("raft: membership change proposed", {{"type", static_cast<int>(c.change.type)},
                                                   {"node", c.change.node},
                                                   {"index", pos->index}});
    conf_waiters_[pos->index] = ConfWaiter{pos->term, std::move(c.done)};
  }
  StartReads(std::move(inbox.reads));
  for (TransferRequest& t : inbox.transfers) {
    absl::Status s = node_->TransferLeadership(t.target);
    if (s.ok()) {
      log::Info("raft: leadership transfer started", {{"target", t.target}});
      t.done->Set(true);
    } else {
      t.done->Set(node_->role() == raft::Role::kLeader ? s : NotLeader());
    }
  }
}

void Replica::HandleReady(raft::Ready rd) {
  ready_started_ = absl::Now();
  if (rd.soft_state) OnSoftState(*rd.soft_state);
  // An election started here: a new term with our own vote (PreVote rounds
  // do not change the term, so they are not counted).
  if (rd.hard_state && rd.hard_state->term > campaign_term_ && rd.hard_state->vote == options_.id) {
    campaign_term_ = rd.hard_state->term;
    metrics_->elections->Increment();
  }
  // 1. A snapshot received from the leader: the state machine first, then
  //    the log (RaftLogStore::Open finishes the job if we die in between).
  if (rd.snapshot && sm_->applied_index() < rd.snapshot->index) {
    if (!RetryStorage("install snapshot", [&] { return InstallSnapshot(*rd.snapshot); })) return;
  }
  if (rd.hard_state) latest_hard_state_ = *rd.hard_state;
  // 2. A leader's appends and heartbeats go out now, so the followers'
  //    fsyncs run in parallel with ours (thesis §10.2.1; the core counts
  //    our own copy only after Advance). Votes and acks wait for the fsync.
  //    Without new entries (no fsync to overlap: typically the turn that
  //    commits and answers a write) they wait until the writers are
  //    answered, which is what that turn is for.
  std::vector<raft::Message> after_persist;
  std::vector<raft::Message> early;
  if (rd.snapshot || !options_.pipeline) {
    after_persist = std::move(rd.messages);
  } else {
    for (raft::Message& m : rd.messages) {
      (raft::MaySendBeforePersist(m, saved_hard_state_.term) ? early : after_persist)
          .push_back(std::move(m));
    }
    if (!early.empty() && !rd.entries.empty()) {
      transport_->Send(std::move(early));
      early.clear();
    }
  }
  // 3. A leader applies the committed entries that are already durable
  //    here (and answers their writers) before this Ready's fsync, not
  //    after it. A follower has no writers to answer but a leader waiting
  //    for its ack: it persists and acks first, and applies after.
  std::span<const raft::Entry> committed(rd.committed);
  size_t durable = 0;
  if (!rd.snapshot && options_.pipeline && soft_.role == raft::Role::kLeader) {
    const raft::Index first_new =
        rd.entries.empty() ? std::numeric_limits<raft::Index>::max() : rd.entries.front().index;
    while (durable < committed.size() && committed[durable].index < first_new) ++durable;
  }
  if (!TimedApply(committed.first(durable))) return;
  // Their writers are answered now, not after the fsync below (which has
  // nothing to do with them) or the sends; one writer inline (completer.h).
  if (durable > 0) completer_.Flush();
  if (!early.empty()) transport_->Send(std::move(early));
  // 4. Persist entries + hard state (+ snapshot point): one synced write,
  //    and only when something needs one (see Persist).
  if (rd.snapshot || !rd.entries.empty() || latest_hard_state_.term != saved_hard_state_.term ||
      latest_hard_state_.vote != saved_hard_state_.vote) {
    if (!RetryStorage("persist raft log", [&] { return Persist(rd); })) return;
  }
  if (rd.snapshot) {
    conf_ = rd.snapshot->conf;
    {
      absl::MutexLock lock(&status_mu_);
      published_.conf = conf_;
    }
    snapshots_installed_.fetch_add(1);
    applied_bytes_.since_compaction = 0;
    metrics_->snapshots_installed->Increment();
    // Waiters whose entries the snapshot covers never see them applied here.
    DropWaitersUpTo(rd.snapshot->index,
                    absl::UnavailableError("replaced by a snapshot from the leader; safe to retry "
                                           "with the same request_id"));
    receiver_->Cleanup(rd.snapshot->index);
    log::Info("raft: snapshot installed",
              {{"index", rd.snapshot->index}, {"term", rd.snapshot->term}});
  }
  // 5. Send the rest, only now that what those messages promise is durable.
  if (!after_persist.empty()) transport_->Send(std::move(after_persist));
  // 6. Apply the rest, answer writers and readers.
  if (!TimedApply(committed.subspan(durable))) return;
  OnReadStates(rd.read_states);
  CompleteReads();
  // 7. Hand the batch back.
  node_->Advance(rd);
  MaybeCompact();
}

// A change of the commit index alone is not written: Raft does not need it
// durable (a restarted replica learns it again from the leader, and
// RaftLogStore::Open raises it to the state machine's applied index), and
// an fsync per commit advance would double the fsyncs of every round. It
// travels with the next write that must be synced (entries, term, vote).
absl::Status Replica::Persist(const raft::Ready& rd) {
  absl::Time start = absl::Now();
  std::optional<raft::HardState> hs;
  if (latest_hard_state_ != saved_hard_state_) hs = latest_hard_state_;
  RETURN_IF_ERROR(log_->Save(rd.snapshot, rd.entries, hs));
  saved_hard_state_ = latest_hard_state_;
  const double took = absl::ToDoubleSeconds(absl::Now() - start);
  metrics_->fsync_seconds->Observe(took);
  metrics_->AddLoopTime(Stage::kPersist, took);
  ready_accounted_ += took;
  metrics_->entries_per_fsync->Observe(static_cast<double>(rd.entries.size()));
  const absl::Time persisted = absl::Now();
  for (const raft::Entry& e : rd.entries) {
    auto it = write_waiters_.find(e.index);
    if (it != write_waiters_.end()) it->second.persisted = persisted;
  }
  return absl::OkStatus();
}

bool Replica::TimedApply(std::span<const raft::Entry> entries) {
  if (entries.empty()) return true;
  // Counted when applied, not when appended: compaction looks at the log
  // up to the applied index, and a follower often learns that its last
  // appends are committed only from a later heartbeat with no new bytes.
  for (const raft::Entry& e : entries) {
    applied_bytes_.Add(e.data.size());
  }
  absl::Time start = absl::Now();
  const bool ok = ApplyCommitted(entries);
  const double took = absl::ToDoubleSeconds(absl::Now() - start);
  metrics_->AddLoopTime(Stage::kApply, took);
  ready_accounted_ += took;
  return ok;
}

absl::Status Replica::InstallSnapshot(const raft::SnapshotMeta& meta) {
  // The receiver verified these files before stepping the message; the
  // restore verifies every checksum again before it commits.
  std::string dir = receiver_->DirFor(meta.term, meta.index);
  RETURN_IF_ERROR(sm_->RestoreFromSnapshot(dir));
  if (sm_->applied_index() != meta.index) {
    return absl::DataLossError(absl::StrCat("snapshot in ", dir, " restored to ",
                                            sm_->applied_index(), ", expected ", meta.index));
  }
  return absl::OkStatus();
}

void Replica::OnSoftState(const raft::SoftState& ss) {
  const bool was_leader = soft_.role == raft::Role::kLeader;
  if (ss.leader != soft_.leader) {
    metrics_->leader_changes->Increment();
    log::Info("raft: leader changed",
              {{"leader", ss.leader}, {"term", node_->term()}, {"role", raft::RoleName(ss.role)}});
  }
  soft_ = ss;
  leader_.store(ss.leader);
  is_leader_.store(ss.role == raft::Role::kLeader);
  metrics_->SetRole(ss.role);
  if (was_leader && ss.role != raft::Role::kLeader) {
    // Proposed writes stay: each is resolved when its index applies (same
    // term: it committed after all; another term: it was lost).
    FailReads(absl::UnavailableError("lost leadership; retry the read at the new leader"));
  }
}

bool Replica::RetryStorage(const char* what, const std::function<absl::Status()>& op) {
  absl::Status s = op();
  if (s.ok()) return true;
  // Nothing of this Ready was acknowledged or applied yet, and RocksDB
  // writes are atomic: retrying the same step later is exact.
  log::Error("raft: storage write failed; refusing writes until the store recovers",
             {{"step", what}, {"error", s}, {"disk_full", absl::IsResourceExhausted(s)}});
  // A stalled replica cannot act as leader (it neither heartbeats nor
  // commits; the others elect another): it must not claim to be one, in its
  // status, its role metric or to callers. Publish() says the truth again
  // once the loop runs.
  is_leader_.store(false);
  leader_.store(raft::kNoNode);
  metrics_->SetRole(raft::Role::kFollower);
  {
    absl::MutexLock lock(&status_mu_);
    published_.role = raft::Role::kFollower;
    published_.leader = raft::kNoNode;
    published_.progress.clear();
  }
  absl::Duration backoff = absl::Milliseconds(100);
  while (true) {
    if (absl::IsResourceExhausted(s)) {
      disk_full_.store(true);
      metrics_->disk_full->Set(1);
    }
    {
      absl::MutexLock lock(&status_mu_);
      storage_error_ = absl::StrCat(what, ": ", s.message());
    }
    {
      absl::MutexLock lock(&inbox_mu_);
      inbox_mu_.AwaitWithTimeout(absl::Condition(&stop_), backoff);
      if (stop_) return false;
    }
    backoff = std::min(backoff * 2, absl::Seconds(2));
    // After a failed write RocksDB stops the DB; the step is written again
    // only once RocksDB says it recovered (its own recovery thread, or this
    // Resume once space is back). A write to a DB that has not recovered
    // could reach a file writer that saw the error, and Debian's RocksDB
    // 7.8 answers that with an assertion, not a status (it did for its LOG
    // file: libs/kv README).
    absl::Status resumed = engine_->Resume();
    if (!resumed.ok()) {
      log::Debug("raft: store not recovered yet", {{"step", what}, {"error", resumed}});
      continue;
    }
    s = op();
    if (s.ok()) break;
    log::Debug("raft: storage write failed again", {{"step", what}, {"error", s}});
  }
  disk_full_.store(false);
  metrics_->disk_full->Set(0);
  is_leader_.store(soft_.role == raft::Role::kLeader);
  leader_.store(soft_.leader);
  metrics_->SetRole(soft_.role);
  {
    absl::MutexLock lock(&status_mu_);
    storage_error_.clear();
  }
  log::Info("raft: storage writable again, resuming", {{"step", what}});
  return true;
}

void Replica::Publish() {
  raft::NodeStatus st = node_->Status();
  term_.store(st.term);
  const raft::Index applied = sm_->applied_index();

  // Readiness: once a leader is known, catch up to what was committed when
  // we started (or when we first heard the leader); a replica that started
  // empty must also have learned that it is a member.
  if (!ready_.load() && st.leader != raft::kNoNode) {
    if (!catch_up_target_fixed_) {
      catch_up_target_ = std::max(catch_up_target_, st.commit);
      catch_up_target_fixed_ = true;
    }
    const bool member = std::count(conf_.voters.begin(), conf_.voters.end(), options_.id) > 0 ||
                        std::count(conf_.learners.begin(), conf_.learners.end(), options_.id) > 0;
    if (applied >= catch_up_target_ && (member || !started_empty_)) {
      ready_.store(true);
      log::Info("raft: replica ready", {{"applied", applied}, {"leader", st.leader}});
    }
  }

  metrics_->term->Set(static_cast<double>(st.term));
  metrics_->commit_index->Set(static_cast<double>(st.commit));
  metrics_->applied_index->Set(static_cast<double>(applied));
  metrics_->apply_lag->Set(st.commit > applied ? static_cast<double>(st.commit - applied) : 0);

  ReplicaStatus s;
  s.id = options_.id;
  s.group_id = options_.group_id;
  s.term = st.term;
  s.role = st.role;
  s.leader = st.leader;
  s.commit = st.commit;
  s.applied = applied;
  s.first_index = log_->FirstIndex();
  s.last_index = log_->LastIndex();
  s.conf = conf_;
  s.progress = std::move(st.progress);
  absl::MutexLock lock(&status_mu_);
  published_ = std::move(s);
}

void Replica::FailAllWaiters(const absl::Status& why) {
  for (auto& [index, w] : write_waiters_) w.done(why);
  write_waiters_.clear();
  for (auto& [index, w] : conf_waiters_) w.done->Set(why);
  conf_waiters_.clear();
  FailReads(why);
}

}  // namespace mailgrid::replica
