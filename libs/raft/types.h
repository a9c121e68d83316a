// The vocabulary of the Raft core: log entries, persistent state, messages,
// configuration and the Ready batch the driver acts on.
//
// The core (RawNode) is a pure state machine in the etcd/raft "Ready" model:
// it does no I/O, owns no thread and reads no clock. The driver (the RocksDB
// log + gRPC transport around it) feeds it ticks, messages and proposals and
// carries out what each Ready asks: persist, send, apply. See README.md for
// the exact contract; this header is what the transport maps to protobuf.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mailgrid::raft {

using NodeId = uint64_t;
using Term = uint64_t;
using Index = uint64_t;

// No node has id 0: it means "nobody" (no vote cast, no leader known).
inline constexpr NodeId kNoNode = 0;

struct Entry {
  enum class Type : uint8_t {
    kNormal = 0,      // application data (an encoded KV write batch)
    kConfChange = 1,  // data is EncodeConfChange(ConfChange)
    kNoop = 2,        // appended by every new leader to commit its term
  };
  Term term = 0;
  Index index = 0;
  Type type = Type::kNormal;
  std::string data;

  bool operator==(const Entry&) const = default;
};

// Position of an entry in the log; (term, index) names an entry uniquely
// (the Log Matching property).
struct LogPosition {
  Term term = 0;
  Index index = 0;
  bool operator==(const LogPosition&) const = default;
};

// Must be durable (fsync'd) before any message of the same Ready is sent.
struct HardState {
  Term term = 0;
  NodeId vote = kNoNode;
  Index commit = 0;
  bool operator==(const HardState&) const = default;
};

// The membership. Voters elect and form quorums; learners only receive the
// log (a new replica joins as a learner, catches up, then is promoted).
struct ConfState {
  std::vector<NodeId> voters;    // kept sorted
  std::vector<NodeId> learners;  // kept sorted, disjoint from voters
  bool operator==(const ConfState&) const = default;
};

// A snapshot as the core sees it: metadata only. The data (a RocksDB
// checkpoint of the state machine at `index`) travels out of band.
struct SnapshotMeta {
  Index index = 0;
  Term term = 0;
  ConfState conf;  // membership as of `index`
  bool operator==(const SnapshotMeta&) const = default;
};

// Single-server membership change, carried in a kConfChange entry.
struct ConfChange {
  enum class Type : uint8_t {
    kAddVoter = 0,    // add a voter, or promote a learner to voter
    kAddLearner = 1,  // add a learner (demoting a voter is not supported)
    kRemoveNode = 2,  // remove a voter or learner
  };
  Type type = Type::kAddVoter;
  NodeId node = kNoNode;
  bool operator==(const ConfChange&) const = default;
};

// Fixed 9-byte encoding (type, little-endian id) so every replica decodes
// the same entry the same way, whatever its build.
std::string EncodeConfChange(const ConfChange& cc);
absl::StatusOr<ConfChange> DecodeConfChange(const std::string& data);

// Pure: the membership after applying `cc` to `conf`. Adding an existing
// member or removing an absent one is a no-op (entries may be re-applied on
// restart). The driver uses this to persist the ConfState that matches its
// applied index; the core applies the same function itself on Advance.
ConfState ApplyConfChange(ConfState conf, const ConfChange& cc);

struct Message {
  enum class Type : uint8_t {
    kVote = 0,      // RequestVote: index/log_term = candidate's last entry
    kVoteResp = 1,  // reject = vote refused
    kPreVote = 2,   // term = the term the sender WOULD campaign at
    kPreVoteResp = 3,
    kAppend = 4,          // index/log_term = entry preceding `entries`
    kAppendResp = 5,      // index = last matching index; on reject see reject_hint
    kHeartbeat = 6,       // commit = min(follower's match, leader commit); context = ReadIndex ctx
    kHeartbeatResp = 7,   // echoes context
    kSnapshot = 8,        // snapshot = metadata; the transport attaches the data
    kTimeoutNow = 9,      // leadership transfer: campaign now, skipping PreVote
    kReadIndex = 10,      // follower -> leader: context = read ctx
    kReadIndexResp = 11,  // leader -> follower: index = read index; context = read ctx
  };
  Type type = Type::kAppend;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  Term term = 0;
  Term log_term = 0;
  Index index = 0;
  std::vector<Entry> entries;
  Index commit = 0;
  bool reject = false;
  Index reject_hint = 0;  // kAppendResp reject: follower's guess of where logs may match
  SnapshotMeta snapshot;  // kSnapshot only
  std::string context;    // ReadIndex ctx on heartbeats/read messages; kCampaignTransfer on votes

  bool operator==(const Message&) const = default;
};

// Whether `m`, taken from a Ready, may be sent BEFORE that Ready is
// persisted (thesis §10.2.1): a leader's appends and heartbeats, so the
// followers write in parallel with the leader's own fsync. Safe because the
// leader counts its own copy towards a quorum only once durable
// (RawNode::Advance) and because they promise nothing about its disk;
// `durable_term` (the term already persisted here) guards against a term
// not yet on disk. Everything else (votes, acks) must wait for the fsync.
bool MaySendBeforePersist(const Message& m, Term durable_term);

// Context marking a vote request caused by leadership transfer: receivers
// grant it even though they heard from a leader recently.
inline constexpr char kCampaignTransfer[] = "CampaignTransfer";

// A confirmed ReadIndex: the read with this `context` is linearizable once
// the local state machine has applied `index`.
struct ReadState {
  Index index = 0;
  std::string context;
  bool operator==(const ReadState&) const = default;
};

enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
const char* RoleName(Role role);

// Volatile state the driver may want to observe (metrics, redirects).
struct SoftState {
  NodeId leader = kNoNode;
  Role role = Role::kFollower;
  bool operator==(const SoftState&) const = default;
};

// One batch of work for the driver. Handle it in this order:
//   1. persist `snapshot` (install its data), `entries` and `hard_state`
//      atomically, with ONE fsync for the whole batch (group commit);
//   2. send `messages` (only after step 1 is durable);
//   3. apply `committed` in order (and conf changes via ApplyConfChange);
//      serve `read_states` once applied >= their index;
//   4. call RawNode::Advance(ready).
struct Ready {
  std::optional<SoftState> soft_state;   // set when leader or role changed
  std::optional<HardState> hard_state;   // set when it changed
  std::vector<Entry> entries;            // append; may overwrite from entries[0].index on
  std::optional<SnapshotMeta> snapshot;  // install (replaces the log and state machine)
  std::vector<Entry> committed;          // apply to the state machine
  std::vector<Message> messages;         // send after persisting (see MaySendBeforePersist)
  std::vector<ReadState> read_states;    // confirmed linearizable reads

  bool empty() const;
};

// A source of randomness, injected so simulations are reproducible:
// returns a value uniformly distributed in [0, n).
using RandomFn = std::function<uint64_t(uint64_t n)>;

struct Config {
  NodeId id = kNoNode;
  // Ticks without hearing from a leader before campaigning. The actual
  // timeout is drawn uniformly from [election_tick, 2 * election_tick).
  int election_tick = 10;
  // Ticks between leader heartbeats; must be < election_tick.
  int heartbeat_tick = 1;
  // Campaign first in a PreVote round that does not bump terms, so a node
  // that was partitioned away cannot disrupt a healthy leader when it returns.
  bool pre_vote = true;
  // Leader steps down if it has not heard from a quorum within an election
  // timeout; followers that heard from a leader within it ignore votes.
  bool check_quorum = true;
  // Max bytes of entries per append message (at least one entry is sent).
  uint64_t max_size_per_msg = 1 << 20;
  // Max append messages in flight per follower in the replicate state.
  int max_inflight_msgs = 256;
  // Max bytes of committed entries handed out in one Ready.
  uint64_t max_committed_size_per_ready = 16 << 20;
  // Leader: when the commit index advances and nothing else is to be sent,
  // do not broadcast an empty append just to carry it. It rides on the next
  // append (every append carries the commit index) or heartbeat, or leaves
  // when the driver calls RawNode::SendCommit() (RawNode::CommitUnsent()
  // says one is owed; the driver picks the delay). With sparse writes the
  // immediate broadcast cost two RPCs out, two empty acks back and a turn on
  // each follower per write; only the followers' apply point (and so their
  // stale reads) lags, by at most the driver's delay. Safety is unaffected:
  // the commit index is never needed by a follower to be safe.
  bool defer_commit_broadcast = false;
  // Last index applied to the state machine (restart); 0 for a fresh node.
  // The ConfState in Storage::InitialState must be the membership as of it.
  Index applied = 0;
  // Randomness for election timeouts; if empty, a generator seeded with id.
  RandomFn random;
};

// Per-peer replication state, as reported by RawNode::Status().
struct PeerProgress {
  enum class State : uint8_t { kProbe, kReplicate, kSnapshot };
  NodeId id = kNoNode;
  Index match = 0;
  Index next = 0;
  State state = State::kProbe;
  bool learner = false;
  bool recent_active = false;
  int inflight = 0;
  Index pending_snapshot = 0;
};

struct NodeStatus {
  NodeId id = kNoNode;
  Term term = 0;
  NodeId vote = kNoNode;
  Role role = Role::kFollower;
  NodeId leader = kNoNode;
  Index commit = 0;
  Index applied = 0;
  Index last_index = 0;
  NodeId lead_transferee = kNoNode;
  ConfState conf;
  std::vector<PeerProgress> progress;  // leader only; sorted by id
};

}  // namespace mailgrid::raft
