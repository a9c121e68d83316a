// Flow control and quorum arithmetic for the leader (see progress.h).
#include "libs/raft/progress.h"

#include <algorithm>
#include <functional>

namespace mailgrid::raft {

void Progress::ResetState(State s) {
  probe_sent = false;
  pending_snapshot = 0;
  state = s;
  inflights.Reset();
}

void Progress::BecomeProbe() {
  // After a snapshot, the follower's log ends at least at the snapshot.
  if (state == State::kSnapshot) {
    const Index pending = pending_snapshot;
    ResetState(State::kProbe);
    next = std::max(match + 1, pending + 1);
  } else {
    ResetState(State::kProbe);
    next = match + 1;
  }
}

void Progress::BecomeReplicate() {
  ResetState(State::kReplicate);
  next = match + 1;
}

void Progress::BecomeSnapshot(Index snapshot_index) {
  ResetState(State::kSnapshot);
  pending_snapshot = snapshot_index;
}

bool Progress::MaybeUpdate(Index n) {
  bool updated = false;
  if (match < n) {
    match = n;
    updated = true;
    probe_sent = false;
  }
  next = std::max(next, n + 1);
  return updated;
}

bool Progress::MaybeDecrTo(Index rejected, Index match_hint) {
  if (state == State::kReplicate) {
    // A rejection at or below match answers an old message: ignore it.
    if (rejected <= match) return false;
    next = match + 1;
    return true;
  }
  // In probe state only the answer to the last probe counts.
  if (next == 0 || next - 1 != rejected) return false;
  next = std::max<Index>(std::min(rejected, match_hint + 1), 1);
  probe_sent = false;
  return true;
}

bool Progress::IsPaused() const {
  switch (state) {
    case State::kProbe:
      return probe_sent;
    case State::kReplicate:
      return inflights.Full();
    case State::kSnapshot:
      return true;
  }
  return true;
}

void ProgressTracker::SetConf(const ConfState& conf, Index next_index) {
  conf_ = conf;
  std::map<NodeId, Progress> updated;
  auto keep = [&](NodeId id, bool learner) {
    auto it = progress_.find(id);
    Progress pr = it != progress_.end() ? it->second : Progress(max_inflight_);
    if (it == progress_.end()) {
      pr.next = std::max<Index>(next_index, 1);
      // A new peer gets the benefit of the doubt, so adding a node cannot
      // make CheckQuorum depose the leader before the peer answers.
      pr.recent_active = true;
    }
    pr.learner = learner;
    updated.emplace(id, std::move(pr));
  };
  for (NodeId id : conf.voters) keep(id, false);
  for (NodeId id : conf.learners) keep(id, true);
  progress_ = std::move(updated);
  // Votes from nodes no longer voting must not count.
  for (auto it = votes_.begin(); it != votes_.end();) {
    it = IsVoter(it->first) ? std::next(it) : votes_.erase(it);
  }
}

bool ProgressTracker::IsVoter(NodeId id) const {
  return std::binary_search(conf_.voters.begin(), conf_.voters.end(), id);
}

Progress* ProgressTracker::Get(NodeId id) {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

const Progress* ProgressTracker::Get(NodeId id) const {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

void ProgressTracker::ResetProgress(NodeId self, Index last) {
  for (auto& [id, pr] : progress_) {
    const bool learner = pr.learner;
    pr = Progress(max_inflight_);
    pr.learner = learner;
    pr.next = last + 1;
    if (id == self) {
      pr.match = last;
      pr.recent_active = true;
    }
  }
}

Index ProgressTracker::QuorumCommitted() const {
  if (conf_.voters.empty()) return 0;
  std::vector<Index> matches;
  for (NodeId id : conf_.voters) {
    const Progress* pr = Get(id);
    matches.push_back(pr ? pr->match : 0);
  }
  // The quorum-th highest match is on a majority.
  std::sort(matches.begin(), matches.end(), std::greater<Index>());
  return matches[Quorum() - 1];
}

bool ProgressTracker::QuorumActive(NodeId self) const {
  int active = 0;
  for (NodeId id : conf_.voters) {
    const Progress* pr = Get(id);
    if (id == self || (pr && pr->recent_active)) ++active;
  }
  return active >= Quorum();
}

ProgressTracker::VoteResult ProgressTracker::RecordVote(NodeId id, bool granted) {
  if (IsVoter(id)) votes_.emplace(id, granted);
  return TallyVotes();
}

ProgressTracker::VoteResult ProgressTracker::TallyVotes() const {
  int granted = 0;
  int rejected = 0;
  for (const auto& [id, g] : votes_) (g ? granted : rejected)++;
  const int n = static_cast<int>(conf_.voters.size());
  if (granted >= Quorum()) return VoteResult::kWon;
  if (n - rejected < Quorum()) return VoteResult::kLost;
  return VoteResult::kPending;
}

}  // namespace mailgrid::raft
