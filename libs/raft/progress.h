// Internal: the leader's view of each peer (etcd's tracker package).
//
// A follower's Progress is in one of three states:
//   kProbe      we do not know where its log matches ours: send one append
//               per heartbeat interval and wait for the answer;
//   kReplicate  logs match up to `match`: stream appends optimistically
//               (next advances on send), up to max_inflight_msgs in flight;
//   kSnapshot   it needs a snapshot we sent: send nothing until it is done.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "libs/raft/types.h"

namespace mailgrid::raft {

// The last indexes of the append messages in flight to one follower.
class Inflights {
 public:
  explicit Inflights(int capacity) : capacity_(capacity) {}
  void Add(Index last) { indexes_.push_back(last); }
  // Frees every message whose last index is <= to (acknowledged).
  void FreeLE(Index to) {
    while (!indexes_.empty() && indexes_.front() <= to) indexes_.pop_front();
  }
  void FreeFirstOne() {
    if (!indexes_.empty()) indexes_.pop_front();
  }
  bool Full() const { return static_cast<int>(indexes_.size()) >= capacity_; }
  int Count() const { return static_cast<int>(indexes_.size()); }
  void Reset() { indexes_.clear(); }

 private:
  int capacity_;
  std::deque<Index> indexes_;
};

struct Progress {
  using State = PeerProgress::State;

  explicit Progress(int max_inflight) : inflights(max_inflight) {}

  Index match = 0;
  Index next = 1;
  State state = State::kProbe;
  Index pending_snapshot = 0;
  // Heard from since the last CheckQuorum round.
  bool recent_active = false;
  // Probe state: an append is outstanding; wait for its answer or the next
  // heartbeat response before sending another.
  bool probe_sent = false;
  bool learner = false;
  Inflights inflights;

  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(Index snapshot_index);
  // An ack for index n arrived. Returns false if it was stale.
  bool MaybeUpdate(Index n);
  // Replicate state: we just sent entries up to n.
  void OptimisticUpdate(Index n) { next = n + 1; }
  // The follower rejected an append at `rejected`; `match_hint` is its guess
  // of the highest index where our logs may agree. Returns false if stale.
  bool MaybeDecrTo(Index rejected, Index match_hint);
  bool IsPaused() const;

 private:
  void ResetState(State s);
};

// Membership plus per-peer progress and the votes of the current election.
class ProgressTracker {
 public:
  explicit ProgressTracker(int max_inflight) : max_inflight_(max_inflight) {}

  const ConfState& conf() const { return conf_; }
  // Replaces the membership; new peers start probing at next_index.
  void SetConf(const ConfState& conf, Index next_index);
  bool IsVoter(NodeId id) const;
  bool IsMember(NodeId id) const { return progress_.count(id) > 0; }

  Progress* Get(NodeId id);
  const Progress* Get(NodeId id) const;
  std::map<NodeId, Progress>& progress() { return progress_; }
  const std::map<NodeId, Progress>& progress() const { return progress_; }

  // Every peer restarts probing at `next`; self (id) is at `last`.
  void ResetProgress(NodeId self, Index last);

  // The highest index replicated on a quorum of voters.
  Index QuorumCommitted() const;
  // Whether a quorum of voters was recently active (self included).
  bool QuorumActive(NodeId self) const;

  enum class VoteResult { kPending, kWon, kLost };
  void ResetVotes() { votes_.clear(); }
  // Records a vote (the first one from each voter counts) and tallies.
  VoteResult RecordVote(NodeId id, bool granted);
  VoteResult TallyVotes() const;

  int Quorum() const { return static_cast<int>(conf_.voters.size()) / 2 + 1; }

 private:
  int max_inflight_;
  ConfState conf_;
  std::map<NodeId, Progress> progress_;
  std::map<NodeId, bool> votes_;
};

}  // namespace mailgrid::raft
