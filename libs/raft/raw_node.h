// RawNode: the public face of the Raft core (the etcd/raft RawNode model).
//
// Single-threaded and deterministic: it owns no thread, does no I/O and
// reads no clock. The driver serialises every call (one strand or mutex),
// calls Tick() on its own timer, feeds received messages to Step(), and
// handles each Ready in the order documented on raft::Ready:
//
//   while (node->HasReady()) {
//     Ready rd = node->GetReady();
//     persist rd.snapshot, rd.entries, rd.hard_state; fsync once;
//     send rd.messages;
//     apply rd.committed; answer rd.read_states once applied >= index;
//     node->Advance(rd);
//   }
//
// Calls to Step/Tick/Propose between GetReady and Advance are allowed; a
// second GetReady before Advance is not.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/raft/storage.h"
#include "libs/raft/types.h"

namespace mailgrid::raft {

class Raft;

class RawNode {
 public:
  // `storage` must outlive the node. Its InitialState and Config::applied
  // describe where this replica restarts from.
  static absl::StatusOr<std::unique_ptr<RawNode>> Create(Config config, const Storage* storage);
  ~RawNode();
  RawNode(const RawNode&) = delete;
  RawNode& operator=(const RawNode&) = delete;

  // Advances the logical clock by one tick (election / heartbeat timers).
  void Tick();

  // Starts an election now (PreVote first if enabled). FailedPrecondition if
  // this node is not a voter or is already leader.
  absl::Status Campaign();

  // Appends `data` to the log if this node is the leader and returns the
  // position it was given: the write succeeded iff the entry applied at that
  // index has that term. FailedPrecondition ("not leader", see leader() for
  // the hint) otherwise, or while a leadership transfer is in progress.
  absl::StatusOr<LogPosition> Propose(std::string data);

  // Proposes a single-server membership change. One at a time: refused
  // while a previous change is not yet applied. The change takes effect on
  // each replica when the entry is applied (at Advance), not when appended.
  absl::StatusOr<LogPosition> ProposeConfChange(const ConfChange& cc);

  // Requests a linearizable read. When confirmed, a ReadState with this ctx
  // appears in a Ready (on this node); reading is then safe once the local
  // state machine has applied ReadState::index. Contexts must be unique. A
  // request may be silently dropped (leader change): callers time out.
  absl::Status ReadIndex(std::string ctx);

  // Leader only: hands leadership to `target` once its log is caught up
  // (kTimeoutNow). Aborted if not done within an election timeout.
  absl::Status TransferLeadership(NodeId target);

  // Feeds a message received from a peer. InvalidArgument if it is not
  // addressed to this node.
  absl::Status Step(Message m);

  bool HasReady() const;
  Ready GetReady();
  void Advance(const Ready& rd);

  // The transport could not reach `id`: fall back to probing it.
  void ReportUnreachable(NodeId id);
  // The transport finished streaming a snapshot to `id` (ok) or gave up.
  void ReportSnapshot(NodeId id, bool ok);

  // Config::defer_commit_broadcast: true while a leader owes the followers
  // its current commit index (nothing carried it yet). SendCommit() puts it
  // in the next Ready (an empty append per follower); a no-op otherwise.
  bool CommitUnsent() const;
  void SendCommit();

  NodeStatus Status() const;
  NodeId id() const;
  NodeId leader() const;  // kNoNode if unknown
  Term term() const;
  Role role() const;
  ConfState conf_state() const;  // as of the applied index

 private:
  explicit RawNode(std::unique_ptr<Raft> raft);

  std::unique_ptr<Raft> raft_;
  SoftState prev_soft_;
  HardState prev_hard_;
};

}  // namespace mailgrid::raft
