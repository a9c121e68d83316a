// Leader election (§5.2), PreVote (dissertation §9.6) and the CheckQuorum
// lease that makes leaders sticky (§6.2 / etcd).
#include "libs/raft/raft.h"

namespace mailgrid::raft {

absl::Status Raft::Campaign() {
  if (role_ == Role::kLeader) return absl::FailedPreconditionError("raft: already leader");
  if (!Promotable()) return absl::FailedPreconditionError("raft: not a voter");
  Hup(config_.pre_vote ? CampaignType::kPreElection : CampaignType::kElection);
  return absl::OkStatus();
}

bool Raft::HasUnappliedConfChanges() const {
  // Paged, so a long replay after a restart does not load it all at once.
  constexpr uint64_t kPageBytes = 1 << 20;
  for (Index lo = log_.applied() + 1; lo <= log_.committed();) {
    auto entries = log_.Slice(lo, log_.committed() + 1, kPageBytes);
    if (!entries.ok() || entries->empty()) return true;  // cannot tell: do not campaign
    for (const Entry& e : *entries) {
      if (e.type == Entry::Type::kConfChange) return true;
    }
    lo = entries->back().index + 1;
  }
  return false;
}

void Raft::Hup(CampaignType type) {
  if (role_ == Role::kLeader || !Promotable()) return;
  // Our view of the membership may be stale until committed conf changes
  // are applied; campaigning with it could count the wrong quorum.
  if (HasUnappliedConfChanges()) return;
  DoCampaign(type);
}

void Raft::DoCampaign(CampaignType type) {
  Message::Type vote_type;
  Term term;
  if (type == CampaignType::kPreElection) {
    BecomePreCandidate();
    vote_type = Message::Type::kPreVote;
    term = term_ + 1;  // the term we would use; ours does not change yet
  } else {
    BecomeCandidate();
    vote_type = Message::Type::kVote;
    term = term_;
  }
  if (tracker_.RecordVote(id_, true) == ProgressTracker::VoteResult::kWon) {
    // A single-voter cluster wins on its own vote.
    if (type == CampaignType::kPreElection) {
      DoCampaign(CampaignType::kElection);
    } else {
      BecomeLeader();
    }
    return;
  }
  for (NodeId voter : tracker_.conf().voters) {
    if (voter == id_) continue;
    Message m;
    m.type = vote_type;
    m.to = voter;
    m.term = term;
    m.index = log_.LastIndex();
    m.log_term = log_.LastTerm();
    if (type == CampaignType::kTransfer) m.context = kCampaignTransfer;
    Send(std::move(m));
  }
}

bool Raft::InLease() const {
  // We heard from a leader (or are one) within the minimum election
  // timeout: a vote request now can only come from a disruptive node.
  return config_.check_quorum && lead_ != kNoNode && election_elapsed_ < config_.election_tick;
}

bool Raft::HandleTermMismatch(Message& m) {
  const bool vote_request = m.type == Message::Type::kVote || m.type == Message::Type::kPreVote;
  if (m.term > term_) {
    if (vote_request && m.context != kCampaignTransfer && InLease()) return false;
    // A PreVote does not bump our term, nor does a granted PreVote
    // response (it carries the term the pre-candidate would campaign at).
    if (m.type == Message::Type::kPreVote) return true;
    if (m.type == Message::Type::kPreVoteResp && !m.reject) return true;
    const bool from_leader = m.type == Message::Type::kAppend ||
                             m.type == Message::Type::kHeartbeat ||
                             m.type == Message::Type::kSnapshot;
    BecomeFollower(m.term, from_leader ? m.from : kNoNode);
    return true;
  }
  if (m.term < term_) {
    if ((config_.check_quorum || config_.pre_vote) &&
        (m.type == Message::Type::kHeartbeat || m.type == Message::Type::kAppend)) {
      // A stale leader (or a node whose term we raised while it was away):
      // tell it our term so it steps down instead of waiting forever.
      Message resp;
      resp.type = Message::Type::kAppendResp;
      resp.to = m.from;
      Send(std::move(resp));
    } else if (m.type == Message::Type::kPreVote) {
      // Without an answer a pre-candidate with a stale log could retry
      // forever; a rejection at our term lets it catch up.
      Message resp;
      resp.type = Message::Type::kPreVoteResp;
      resp.to = m.from;
      resp.term = term_;
      resp.reject = true;
      Send(std::move(resp));
    }
    return false;
  }
  return true;
}

void Raft::HandleVoteRequest(const Message& m) {
  // We can vote for m.from if we already did (a retransmission), if we have
  // neither voted nor know a leader in this term, or if it is a PreVote
  // for a future term (which commits us to nothing).
  const bool can_vote = vote_ == m.from || (vote_ == kNoNode && lead_ == kNoNode) ||
                        (m.type == Message::Type::kPreVote && m.term > term_);
  const auto resp_type =
      m.type == Message::Type::kVote ? Message::Type::kVoteResp : Message::Type::kPreVoteResp;
  Message resp;
  resp.type = resp_type;
  resp.to = m.from;
  if (can_vote && log_.IsUpToDate(m.index, m.log_term)) {
    resp.term = m.term;
    Send(std::move(resp));
    if (m.type == Message::Type::kVote) {
      // Granting a vote counts as hearing from a prospective leader.
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    resp.term = term_;
    resp.reject = true;
    Send(std::move(resp));
  }
}

void Raft::HandleVoteResponse(const Message& m) {
  switch (tracker_.RecordVote(m.from, !m.reject)) {
    case ProgressTracker::VoteResult::kWon:
      if (role_ == Role::kPreCandidate) {
        DoCampaign(CampaignType::kElection);
      } else {
        BecomeLeader();
      }
      break;
    case ProgressTracker::VoteResult::kLost:
      // PreVote lost: stay at our term. Election lost: wait for the winner.
      BecomeFollower(term_, kNoNode);
      break;
    case ProgressTracker::VoteResult::kPending:
      break;
  }
}

}  // namespace mailgrid::raft
