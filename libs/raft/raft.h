// Internal: the Raft protocol state machine behind RawNode. Its methods are
// split by topic:
//   raft.cc         construction, role changes, ticks, Step dispatch, sending
//   election.cc     campaigns, PreVote, votes, CheckQuorum lease
//   replication.cc  appends, heartbeats, flow control, commit, snapshots
//   read_index.cc   linearizable reads
//   membership.cc   conf changes and leadership transfer
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/raft/progress.h"
#include "libs/raft/raft_log.h"
#include "libs/raft/types.h"

namespace mailgrid::raft {

class Raft {
 public:
  static absl::StatusOr<std::unique_ptr<Raft>> Create(Config config, const Storage* storage);

  // ----- inputs (RawNode forwards to these) -----
  void Tick();
  absl::Status Campaign();
  absl::StatusOr<LogPosition> Propose(std::string data);
  absl::StatusOr<LogPosition> ProposeConfChange(const ConfChange& cc);
  absl::Status ReadIndex(std::string ctx);
  absl::Status TransferLeadership(NodeId target);
  absl::Status Step(Message m);
  void ReportUnreachable(NodeId id);
  void ReportSnapshot(NodeId id, bool ok);

  // ----- Ready support -----
  // Sends appends batched since the last Ready (group commit).
  void FlushAppends();
  // Config::defer_commit_broadcast: the followers have not been sent the
  // current commit index yet; SendCommit() queues it for the next Ready.
  bool CommitUnsent() const { return commit_unsent_; }
  void SendCommit();
  bool HasPendingWork() const;
  std::vector<Message> TakeMessages();
  std::vector<ReadState> TakeReadStates();
  // The driver applied `entries` (in order): activate conf changes.
  void OnApplied(const std::vector<Entry>& entries);
  // The driver made the log durable up to (index, term): a leader now
  // counts its own copy towards the commit quorum.
  void OnPersisted(Index index, raft::Term term);

  // ----- observers -----
  NodeId id() const { return id_; }
  Term term() const { return term_; }
  NodeId vote() const { return vote_; }
  NodeId leader() const { return lead_; }
  Role role() const { return role_; }
  HardState hard_state() const { return HardState{term_, vote_, log_.committed()}; }
  SoftState soft_state() const { return SoftState{lead_, role_}; }
  RaftLog& log() { return log_; }
  const RaftLog& log() const { return log_; }
  const ProgressTracker& tracker() const { return tracker_; }
  NodeId lead_transferee() const { return lead_transferee_; }
  const Config& config() const { return config_; }
  bool has_pending_messages() const { return !msgs_.empty(); }
  bool has_read_states() const { return !read_states_.empty(); }

 private:
  Raft(Config config, const Storage* storage);
  absl::Status Init();

  // raft.cc: roles and plumbing.
  void Reset(Term term);
  void BecomeFollower(Term term, NodeId lead);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void TickElection();
  void TickHeartbeat();
  bool Promotable() const;
  void Send(Message m);
  void StepFollower(Message& m);
  void StepCandidate(Message& m);
  void StepLeader(Message& m);
  void ResetRandomizedElectionTimeout();
  bool PastElectionTimeout() const { return election_elapsed_ >= randomized_election_timeout_; }

  // election.cc
  enum class CampaignType { kPreElection, kElection, kTransfer };
  void Hup(CampaignType type);
  void DoCampaign(CampaignType type);
  // Handles a message from a higher or lower term; false = drop it.
  bool HandleTermMismatch(Message& m);
  void HandleVoteRequest(const Message& m);
  void HandleVoteResponse(const Message& m);
  bool InLease() const;
  bool HasUnappliedConfChanges() const;

  // replication.cc
  bool AppendEntries(std::vector<Entry> entries);
  bool MaybeSendAppend(NodeId to, bool send_if_empty);
  bool SendSnapshot(NodeId to, Progress& pr);
  void SendHeartbeat(NodeId to, const std::string& ctx);
  void BroadcastHeartbeat(const std::string& ctx);
  void BroadcastAppend();
  bool MaybeCommit();
  void HandleAppendEntries(const Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleSnapshot(const Message& m);
  bool Restore(const SnapshotMeta& s);
  void HandleAppendResponse(const Message& m, Progress& pr);
  void HandleHeartbeatResponse(const Message& m, Progress& pr);
  bool CommittedEntryInCurrentTerm() const;

  // read_index.cc
  void HandleReadIndexRequest(Message m);
  void RespondToReadIndex(const Message& req, Index index);
  void OnHeartbeatAck(NodeId from, const std::string& ctx);
  void ReleasePendingReadIndex();

  // membership.cc
  void ApplyConfChangeEntry(const Entry& e);
  void SendTimeoutNow(NodeId to);
  void AbortLeaderTransfer() { lead_transferee_ = kNoNode; }

  Config config_;
  const Storage* storage_;
  NodeId id_;
  Term term_ = 0;
  NodeId vote_ = kNoNode;
  NodeId lead_ = kNoNode;
  Role role_ = Role::kFollower;
  RaftLog log_;
  ProgressTracker tracker_;

  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;

  NodeId lead_transferee_ = kNoNode;
  // Index of the last conf change proposed; no new one until it is applied.
  Index pending_conf_index_ = 0;
  // Index the membership in tracker_ is current as of. A snapshot restored
  // while older committed entries are being applied must not be overridden
  // by the conf changes among those older entries.
  Index conf_index_ = 0;
  // Appends not yet broadcast: proposals batch up until the next Ready.
  bool append_pending_ = false;
  // A commit advance not yet broadcast (Config::defer_commit_broadcast).
  bool commit_unsent_ = false;
  // Context of the newest ReadIndex whose heartbeat round is not yet sent:
  // concurrent reads share one round (its acks confirm all earlier reads).
  std::optional<std::string> read_round_pending_;

  // A read waiting for a quorum of heartbeat acks carrying its context.
  struct PendingRead {
    Message req;  // req.from is the node that asked (maybe us)
    Index index = 0;
    std::vector<NodeId> acks;
  };
  std::deque<PendingRead> pending_reads_;
  // Reads received before this leader committed an entry of its term.
  std::vector<Message> reads_awaiting_commit_;

  std::vector<Message> msgs_;
  std::vector<ReadState> read_states_;
};

}  // namespace mailgrid::raft
