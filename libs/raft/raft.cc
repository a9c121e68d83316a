// The Raft state machine: construction, role transitions, the logical
// clock and message dispatch. Protocol details live in election.cc,
// replication.cc, read_index.cc and membership.cc.
#include "libs/raft/raft.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/raft/check.h"

namespace mailgrid::raft {
namespace {

absl::Status ValidateConfig(const Config& c) {
  if (c.id == kNoNode) return absl::InvalidArgumentError("raft config: id must not be 0");
  if (c.heartbeat_tick <= 0) return absl::InvalidArgumentError("raft config: heartbeat_tick <= 0");
  if (c.election_tick <= c.heartbeat_tick) {
    return absl::InvalidArgumentError("raft config: election_tick must exceed heartbeat_tick");
  }
  if (c.max_inflight_msgs <= 0) {
    return absl::InvalidArgumentError("raft config: max_inflight_msgs <= 0");
  }
  return absl::OkStatus();
}

RandomFn DefaultRandom(NodeId id) {
  auto rng = std::make_shared<std::mt19937_64>(id);
  return [rng](uint64_t n) { return n == 0 ? 0 : (*rng)() % n; };
}

// Vote traffic carries the term it is about (a PreVote names the term the
// candidate WOULD use); every other message carries the sender's term.
bool CarriesOwnTerm(Message::Type t) {
  return t == Message::Type::kVote || t == Message::Type::kPreVote ||
         t == Message::Type::kVoteResp || t == Message::Type::kPreVoteResp;
}

}  // namespace

Raft::Raft(Config config, const Storage* storage)
    : config_(std::move(config)),
      storage_(storage),
      id_(config_.id),
      log_(storage),
      tracker_(config_.max_inflight_msgs) {
  if (!config_.random) config_.random = DefaultRandom(id_);
}

absl::StatusOr<std::unique_ptr<Raft>> Raft::Create(Config config, const Storage* storage) {
  if (storage == nullptr) return absl::InvalidArgumentError("raft: storage is null");
  if (auto s = ValidateConfig(config); !s.ok()) return s;
  std::unique_ptr<Raft> raft(new Raft(std::move(config), storage));
  if (auto s = raft->Init(); !s.ok()) return s;
  return raft;
}

absl::Status Raft::Init() {
  auto initial = storage_->GetInitialState();
  if (!initial.ok()) return initial.status();
  const HardState& hs = initial->hard_state;
  if (hs.commit < log_.committed() || hs.commit > log_.LastIndex()) {
    return absl::DataLossError(absl::StrCat("raft: stored commit ", hs.commit, " outside log [",
                                            log_.committed(), ", ", log_.LastIndex(), "]"));
  }
  tracker_.SetConf(initial->conf_state, log_.LastIndex() + 1);
  term_ = hs.term;
  vote_ = hs.vote;
  log_.CommitTo(hs.commit);
  if (config_.applied > 0) {
    if (config_.applied > log_.committed() || config_.applied < log_.applied()) {
      return absl::InvalidArgumentError(absl::StrCat("raft: applied ", config_.applied,
                                                     " outside [", log_.applied(), ", ",
                                                     log_.committed(), "]"));
    }
    log_.AppliedTo(config_.applied);
  }
  conf_index_ = log_.applied();
  BecomeFollower(term_, kNoNode);
  return absl::OkStatus();
}

// ----- roles -----

void Raft::ResetRandomizedElectionTimeout() {
  randomized_election_timeout_ =
      config_.election_tick + static_cast<int>(config_.random(config_.election_tick));
}

void Raft::Reset(Term term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNoNode;
  }
  lead_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  AbortLeaderTransfer();
  tracker_.ResetVotes();
  tracker_.ResetProgress(id_, log_.LastIndex());
  pending_conf_index_ = 0;
  append_pending_ = false;
  commit_unsent_ = false;
  // Reads in flight belonged to the old role; their clients time out.
  pending_reads_.clear();
  reads_awaiting_commit_.clear();
  read_round_pending_.reset();
}

void Raft::BecomeFollower(Term term, NodeId lead) {
  Reset(term);
  lead_ = lead;
  role_ = Role::kFollower;
}

void Raft::BecomePreCandidate() {
  RAFT_CHECK(role_ != Role::kLeader, "leader cannot become pre-candidate");
  // Neither term nor vote changes: a PreVote round is free to fail.
  tracker_.ResetVotes();
  lead_ = kNoNode;
  role_ = Role::kPreCandidate;
}

void Raft::BecomeCandidate() {
  RAFT_CHECK(role_ != Role::kLeader, "leader cannot become candidate");
  Reset(term_ + 1);
  vote_ = id_;
  role_ = Role::kCandidate;
}

void Raft::BecomeLeader() {
  RAFT_CHECK(role_ != Role::kFollower, "follower cannot become leader directly");
  Reset(term_);
  lead_ = id_;
  role_ = Role::kLeader;
  if (Progress* self = tracker_.Get(id_)) {
    // Only what is durable here counts towards a quorum (see OnPersisted);
    // entries still being persisted are counted when their Ready advances.
    self->match = std::min(self->match, log_.StableLastIndex());
    self->BecomeReplicate();
  }
  // The no-op commits this term's first entry, which commits everything
  // before it (§5.4.2) and unlocks ReadIndex and membership changes.
  Entry noop;
  noop.type = Entry::Type::kNoop;
  AppendEntries({std::move(noop)});
  pending_conf_index_ = log_.LastIndex();
}

bool Raft::Promotable() const {
  return tracker_.IsVoter(id_) && !log_.UnstableSnapshot().has_value();
}

// ----- clock -----

void Raft::Tick() {
  if (role_ == Role::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
}

void Raft::TickElection() {
  ++election_elapsed_;
  if (Promotable() && PastElectionTimeout()) {
    election_elapsed_ = 0;
    Hup(config_.pre_vote ? CampaignType::kPreElection : CampaignType::kElection);
  }
}

void Raft::TickHeartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= config_.election_tick) {
    election_elapsed_ = 0;
    if (config_.check_quorum) {
      // CheckQuorum: a leader cut off from a majority steps down, so clients
      // stop waiting on it and its lease-based stickiness ends.
      if (!tracker_.QuorumActive(id_)) {
        BecomeFollower(term_, kNoNode);
        return;
      }
      for (auto& [id, pr] : tracker_.progress()) {
        if (id != id_) pr.recent_active = false;
      }
    }
    // A transfer that did not finish within an election timeout failed.
    AbortLeaderTransfer();
  }
  if (heartbeat_elapsed_ >= config_.heartbeat_tick) {
    heartbeat_elapsed_ = 0;
    BroadcastHeartbeat("");
  }
}

// ----- dispatch -----

absl::Status Raft::Step(Message m) {
  if (m.to != id_) {
    return absl::InvalidArgumentError(absl::StrCat("raft: message for ", m.to, " sent to ", id_));
  }
  if (m.from == kNoNode || m.from == id_) {
    return absl::InvalidArgumentError("raft: message without a valid sender");
  }
  if (!HandleTermMismatch(m)) return absl::OkStatus();
  if (m.type == Message::Type::kVote || m.type == Message::Type::kPreVote) {
    HandleVoteRequest(m);
    return absl::OkStatus();
  }
  switch (role_) {
    case Role::kFollower:
      StepFollower(m);
      break;
    case Role::kPreCandidate:
    case Role::kCandidate:
      StepCandidate(m);
      break;
    case Role::kLeader:
      StepLeader(m);
      break;
  }
  return absl::OkStatus();
}

void Raft::StepFollower(Message& m) {
  switch (m.type) {
    case Message::Type::kAppend:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleAppendEntries(m);
      break;
    case Message::Type::kHeartbeat:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleHeartbeat(m);
      break;
    case Message::Type::kSnapshot:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleSnapshot(m);
      break;
    case Message::Type::kTimeoutNow:
      // The leader hands over: campaign at once, skipping PreVote; voters
      // accept despite their lease because of kCampaignTransfer.
      Hup(CampaignType::kTransfer);
      break;
    case Message::Type::kReadIndexResp:
      read_states_.push_back(ReadState{m.index, std::move(m.context)});
      break;
    default:
      break;  // stale responses, reads sent to a non-leader: drop
  }
}

void Raft::StepCandidate(Message& m) {
  const auto my_resp =
      role_ == Role::kPreCandidate ? Message::Type::kPreVoteResp : Message::Type::kVoteResp;
  switch (m.type) {
    case Message::Type::kAppend:
      BecomeFollower(m.term, m.from);  // someone won this term
      HandleAppendEntries(m);
      break;
    case Message::Type::kHeartbeat:
      BecomeFollower(m.term, m.from);
      HandleHeartbeat(m);
      break;
    case Message::Type::kSnapshot:
      BecomeFollower(m.term, m.from);
      HandleSnapshot(m);
      break;
    default:
      if (m.type == my_resp) HandleVoteResponse(m);
      break;
  }
}

void Raft::StepLeader(Message& m) {
  if (m.type == Message::Type::kReadIndex) {
    HandleReadIndexRequest(std::move(m));
    return;
  }
  Progress* pr = tracker_.Get(m.from);
  if (pr == nullptr) return;  // not (or no longer) a member
  if (m.type == Message::Type::kAppendResp) {
    HandleAppendResponse(m, *pr);
  } else if (m.type == Message::Type::kHeartbeatResp) {
    HandleHeartbeatResponse(m, *pr);
  }
}

void Raft::Send(Message m) {
  m.from = id_;
  if (!CarriesOwnTerm(m.type)) m.term = term_;
  msgs_.push_back(std::move(m));
}

// ----- proposals -----

absl::StatusOr<LogPosition> Raft::Propose(std::string data) {
  if (role_ != Role::kLeader) {
    return absl::FailedPreconditionError(
        absl::StrCat("raft: not leader (leader hint: ", lead_, ")"));
  }
  if (lead_transferee_ != kNoNode) {
    return absl::FailedPreconditionError(
        absl::StrCat("raft: leadership transfer to ", lead_transferee_, " in progress"));
  }
  Entry e;
  e.type = Entry::Type::kNormal;
  e.data = std::move(data);
  AppendEntries({std::move(e)});
  return LogPosition{term_, log_.LastIndex()};
}

// ----- Ready support -----

void Raft::FlushAppends() {
  if (role_ != Role::kLeader) {
    append_pending_ = false;
    commit_unsent_ = false;
    read_round_pending_.reset();
    return;
  }
  if (append_pending_) {
    append_pending_ = false;
    BroadcastAppend();
  }
  if (read_round_pending_) {
    BroadcastHeartbeat(*read_round_pending_);
    read_round_pending_.reset();
  }
}

void Raft::SendCommit() {
  if (role_ == Role::kLeader && commit_unsent_) append_pending_ = true;
  commit_unsent_ = false;
}

// (commit_unsent_ is not pending work: it waits for the driver's delay.)
bool Raft::HasPendingWork() const {
  return !msgs_.empty() || !read_states_.empty() ||
         (role_ == Role::kLeader && (append_pending_ || read_round_pending_)) ||
         log_.HasUnstableEntries() || log_.UnstableSnapshot().has_value() ||
         log_.HasNextCommittedEnts();
}

std::vector<Message> Raft::TakeMessages() { return std::exchange(msgs_, {}); }

std::vector<ReadState> Raft::TakeReadStates() { return std::exchange(read_states_, {}); }

void Raft::OnApplied(const std::vector<Entry>& entries) {
  for (const Entry& e : entries) {
    if (e.type == Entry::Type::kConfChange && e.index > conf_index_) ApplyConfChangeEntry(e);
  }
  if (!entries.empty()) log_.AppliedTo(entries.back().index);
}

void Raft::ReportUnreachable(NodeId id) {
  if (role_ != Role::kLeader) return;
  Progress* pr = tracker_.Get(id);
  // Optimistic streaming into a dead link is wasted; probe until it answers.
  if (pr != nullptr && pr->state == Progress::State::kReplicate) pr->BecomeProbe();
}

void Raft::ReportSnapshot(NodeId id, bool ok) {
  if (role_ != Role::kLeader) return;
  Progress* pr = tracker_.Get(id);
  if (pr == nullptr || pr->state != Progress::State::kSnapshot) return;
  // On failure forget the snapshot so the next probe starts from match+1
  // (which will ask for a new snapshot if still compacted).
  if (!ok) pr->pending_snapshot = 0;
  pr->BecomeProbe();
  // Wait for a heartbeat response before probing: the follower may still be
  // installing the snapshot.
  pr->probe_sent = true;
}

}  // namespace mailgrid::raft
