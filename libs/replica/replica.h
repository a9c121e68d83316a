// Replica: one member of a Raft group, running. It glues the pure Raft core
// (libs/raft RawNode) to the RocksDB log and state machine (libs/kv) and to
// the gRPC transport (transport.h), and is what every stateful service embeds:
// tenantd, identityd and mailstored each run one Replica in-process and serve
// KvService (kv_service.h) and RaftService (raft_service.h) on their port.
//
// Threads (see README.md):
//  * the raft loop (replica_loop.cc) owns the RawNode. Everything that
//    touches the core goes through its inbox: proposals, received messages,
//    read requests, membership and transfer requests, transport reports. It
//    ticks on its own timer and handles each Ready in the documented order:
//    persist (ONE synced write per Ready: group commit), install a received
//    snapshot, send, apply, complete waiters, serve reads, Advance.
//  * callers (gRPC handlers, the service's own threads) block in Write/Get/
//    Scan on a Completion until the loop answers or their deadline passes.
//  * the transport's snapshot threads, and gRPC's callback threads, which
//    send what queued for a peer while its previous Send RPC was in flight.
//
// Peer addresses: the initial voters' come from Options::peers. A member
// added later has its address replicated: AddVoter/AddLearner first commit a
// record under the reserved key prefix kSystemPrefix ("\0mailgrid/") of the
// state machine, then the membership change, so every replica (and every
// snapshot) knows how to reach it. Keys starting with '\0' are refused in
// client writes. Senders also announce their own address in every batch.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/kv/engine.h"
#include "libs/kv/raft_log_store.h"
#include "libs/kv/state_machine.h"
#include "libs/raft/raw_node.h"
#include "libs/raft/types.h"
#include "libs/replica/channel.h"
#include "libs/replica/completer.h"
#include "libs/replica/completion.h"
#include "libs/replica/metrics.h"
#include "libs/replica/snapshot_receiver.h"
#include "libs/replica/transport.h"
#include "libs/replica/wire.h"
#include "mailgrid/kv/v1/kv.pb.h"
#include "mailgrid/raft/v1/raft.pb.h"
#include "prometheus/registry.h"

namespace mailgrid::replica {

struct ReplicaOptions {
  raft::NodeId id = raft::kNoNode;
  // Names the group; messages for another group are refused.
  std::string group_id = "default";
  // The initial voters, id -> host:port (this replica included). For a
  // replica that joins later: the members to reach, plus itself.
  std::map<raft::NodeId, std::string> peers;
  // This replica's address as its peers reach it; default peers[id].
  std::string advertise_address;
  std::string data_dir;
  // true: start empty and wait to be added (no bootstrap).
  bool join = false;

  absl::Duration tick_interval = absl::Milliseconds(100);
  int election_tick = 10;
  int heartbeat_tick = 1;

  // Log compaction: once the log holds more than `compact_log_entries`
  // applied entries, record a snapshot point at the applied index and drop
  // all but the newest `compact_keep_entries` (a follower that lags less
  // than that catches up from the log, not from a snapshot).
  uint64_t compact_log_entries = 20000;
  uint64_t compact_keep_entries = 5000;
  // And once its applied entries take more than `compact_log_bytes` (as
  // RocksDB estimates them), whatever their number: mailstored's entries
  // carry message bodies, and 5,000 of them held 529 MB. Then fewer entries
  // are kept, about a quarter of this many bytes' worth. 0: no byte limit.
  uint64_t compact_log_bytes = 64ull << 20;
  uint64_t snapshot_chunk_bytes = 1 << 20;

  // nullptr: a private registry (tests running several replicas).
  std::shared_ptr<prometheus::Registry> registry;
  kv::EngineOptions engine;
  kv::StateMachineOptions state_machine;
  // TLS towards the other replicas (see channel.h); empty CA: plain text.
  ReplicaTls peer_tls;
  // The latency optimisations of the raft loop (README, "The raft loop"):
  // a leader's appends sent before its own fsync, committed entries applied
  // before the next fsync, writers answered from the completer thread.
  // false = the strict order (persist, send, apply, answer), for comparison.
  bool pipeline = true;
  // A leader's commit advance that nothing else carries to the followers
  // (no new append in the meantime) is sent this long after it, not at once
  // (raft::Config::defer_commit_broadcast). With sparse writes the next
  // write's append carries it: at one writer this saved two RPCs, two empty
  // acks and a follower turn per write. Costs: the followers' apply point
  // (their stale reads) lags by up to this much. 0: at once (the old way).
  absl::Duration commit_broadcast_delay = absl::Milliseconds(5);
  // Messages to each peer on one long-lived SendStream call (a batch is one
  // write, no call set-up, no answer per batch); false: one unary Send call
  // per batch (the transport before it; peers without SendStream get that
  // anyway). TransportOptions::stream.
  bool send_stream = true;
  // The raft wire (wire.h): listen on wire_host:wire_port (0: any free port)
  // for peers' messages over plain TCP, announce the port, and send to the
  // peers that announce theirs over theirs. Only without peer TLS (the wire
  // has none yet); false: gRPC alone.
  bool wire = false;
  std::string wire_host = "127.0.0.1";
  int wire_port = 0;
  // The leader raises the group's committed state-machine format to what
  // this binary applies (kv::StateMachineOptions::max_format) by itself, as
  // soon as every member has announced a binary that applies it too
  // (raft.proto MessageBatch.max_format): what `mailctl raft set-format`
  // does by hand. A new group thus starts at the newest format, and an
  // upgraded one moves on once its last member runs the new binary.
  // On by default since session 26 (--raft-raise-format=false: only by
  // hand). Session 25 kept it off after a CI run failed e2e
  // test_mail_in_and_out's Sieve tests; the next run failed them with it off
  // too: the test mailed inside tenantd's Resolve staleness (fixed there).
  bool raise_format = true;
};

// What Status() reports (and RaftService.GetStatus serves).
struct ReplicaStatus {
  raft::NodeId id = raft::kNoNode;
  std::string group_id;
  raft::Term term = 0;
  raft::Role role = raft::Role::kFollower;
  raft::NodeId leader = raft::kNoNode;
  std::string leader_address;
  raft::Index commit = 0;
  raft::Index applied = 0;
  raft::Index first_index = 0;
  raft::Index last_index = 0;
  raft::ConfState conf;
  std::vector<raft::PeerProgress> progress;       // leader only
  std::map<raft::NodeId, std::string> addresses;  // of the members in conf
  bool ready = false;
  std::string not_ready_reason;
  bool disk_full = false;
  uint64_t snapshots_installed = 0;
  uint64_t snapshot_chunks_refused = 0;
  uint64_t snapshot_files_reused = 0;
};

// NOT_LEADER: FailedPrecondition carrying a kv.v1.NotLeader as payload (the
// gRPC layer turns it into trailing metadata, see kv_service.h).
inline constexpr char kNotLeaderPayloadUrl[] = "type.googleapis.com/mailgrid.kv.v1.NotLeader";
absl::Status NotLeaderError(const kv::v1::NotLeader& hint);
std::optional<kv::v1::NotLeader> GetNotLeader(const absl::Status& status);

// State-machine keys reserved for the replica itself.
inline constexpr char kSystemPrefix[] = "\0mailgrid/";
inline constexpr size_t kSystemPrefixLen = 10;
std::string PeerAddressKey(raft::NodeId id);

// Refuses client writes that touch a reserved ('\0'-prefixed) key.
absl::Status CheckNoReservedKeys(const kv::v1::WriteRequest& request);

class Replica final : private TransportHost {
 public:
  // Opens (or creates) the replica's store in data_dir/db. A new initial
  // member (join = false, empty log) bootstraps the group's membership.
  static absl::StatusOr<std::unique_ptr<Replica>> Open(ReplicaOptions options);
  ~Replica() override;
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  // Starts the raft loop and the transport. Call once the gRPC server that
  // serves RaftService for this replica listens.
  absl::Status Start();
  // Stops the loop and the transport; pending callers get UNAVAILABLE.
  void Stop();

  // ---- the client API (any thread) ----

  // Leader only. Proposes the write and waits until its entry is applied.
  //  OK: the apply result (a failed condition is OK + condition_failed).
  //  FAILED_PRECONDITION + NotLeader: not the leader (see GetNotLeader).
  //  UNAVAILABLE: leadership lost before the entry applied; safe to retry
  //    with the same request_id.
  //  DEADLINE_EXCEEDED: outcome unknown.
  //  RESOURCE_EXHAUSTED: disk full; INVALID_ARGUMENT: bad request.
  // A request_id whose outcome is already recorded is answered from the
  // record without proposing (replayed = true).
  absl::StatusOr<kv::v1::WriteResponse> Write(const kv::v1::WriteRequest& request,
                                              absl::Time deadline);
  // Write without a blocked thread (KvService's callback handler): `done`
  // runs exactly once with what Write would return, on the caller's thread
  // for an answer known at once, else on the completer's or the loop's
  // (keep it short). At `deadline` the loop answers DEADLINE_EXCEEDED
  // (checked every tick).
  using WriteCallback = std::function<void(absl::StatusOr<kv::v1::WriteResponse>)>;
  void WriteAsync(const kv::v1::WriteRequest& request, absl::Time deadline, WriteCallback done);
  // LINEARIZABLE: leader only (ReadIndex, then waits for the apply point).
  // STALE: any replica, from its applied state.
  absl::StatusOr<kv::v1::GetResponse> Get(const kv::v1::GetRequest& request, absl::Time deadline);
  absl::StatusOr<kv::v1::ScanResponse> Scan(const kv::v1::ScanRequest& request,
                                            absl::Time deadline);
  // Get and Scan without a blocked thread (KvService's callback handlers):
  // `done` runs exactly once with what Get/Scan would return. A STALE read
  // or an error known at once runs it on the caller's thread; a
  // LINEARIZABLE read runs it (and its state machine read) on the
  // completer's thread once the read index is applied, or with
  // DEADLINE_EXCEEDED at `deadline` (checked every tick).
  using GetCallback = std::function<void(absl::StatusOr<kv::v1::GetResponse>)>;
  using ScanCallback = std::function<void(absl::StatusOr<kv::v1::ScanResponse>)>;
  void GetAsync(const kv::v1::GetRequest& request, absl::Time deadline, GetCallback done);
  void ScanAsync(const kv::v1::ScanRequest& request, absl::Time deadline, ScanCallback done);

  // ---- administration (any thread) ----
  ReplicaStatus Status() const;
  // Leader only. Returns once `target` leads (as seen here) or at deadline.
  absl::Status TransferLeadership(raft::NodeId target, absl::Time deadline);
  // Leader only; one change at a time. Returns the index the change applied at.
  absl::StatusOr<raft::Index> AddVoter(raft::NodeId id, const std::string& address,
                                       absl::Time deadline);
  absl::StatusOr<raft::Index> AddLearner(raft::NodeId id, const std::string& address,
                                         absl::Time deadline);
  absl::StatusOr<raft::Index> RemoveNode(raft::NodeId id, absl::Time deadline);

  bool IsLeader() const { return leader_.load() == options_.id && is_leader_.load(); }
  raft::NodeId LeaderId() const { return leader_.load(); }
  std::string LeaderAddress() const;
  // For probes: a leader is known, everything committed when this replica
  // started (or first heard a leader) is applied, and writes are possible.
  bool Ready(std::string* reason = nullptr) const;

  // ---- the transport's receiving side (RaftService, the raft wire) ----
  // A batch from a peer: checks group, addressee and messages, learns what
  // the sender announces (address, format, wire port) and queues the
  // messages for the loop. A refusal names the field.
  absl::Status DeliverBatch(raft::v1::MessageBatch* batch);
  // FAILED_PRECONDITION unless `group` is this replica's and `to` its id.
  absl::Status CheckAddressee(const std::string& group, raft::NodeId to) const;
  // `from_address`/`from_max_format`: what the sender announces ("" / 0:
  // not in this batch).
  void Deliver(std::vector<raft::Message> messages, raft::NodeId from,
               const std::string& from_address, uint32_t from_max_format = 0);
  SnapshotReceiver& snapshot_receiver() { return *receiver_; }
  TestHooks& test_hooks() { return hooks_; }

  raft::NodeId id() const { return options_.id; }
  // The group's committed state-machine format as applied here, and the
  // highest this binary applies.
  uint32_t committed_format() const;
  uint32_t max_format() const { return options_.state_machine.max_format; }
  const std::string& group_id() const { return options_.group_id; }
  const std::string& address() const { return options_.advertise_address; }
  std::string PeerAddress(raft::NodeId id) override;
  ReplicaMetrics& metrics() { return *metrics_; }

 private:
  // ---- inbox items ----
  struct Proposal {
    std::string data;
    WriteCallback done;
    absl::Time deadline;
    absl::Time queued;
  };
  struct ConfProposal {
    raft::ConfChange change;
    std::shared_ptr<Completion<raft::Index>> done;
  };
  // A linearizable read's wait: `done` gets the confirmed read index once
  // the apply point reached it, or the error.
  using ReadCallback = std::function<void(absl::StatusOr<raft::Index>)>;
  struct ReadRequest {
    ReadCallback done;
    absl::Time deadline;
  };
  struct TransferRequest {
    raft::NodeId target;
    std::shared_ptr<Completion<bool>> done;  // accepted by the core
  };
  struct Report {
    enum class Kind { kUnreachable, kSnapshotOk, kSnapshotFailed } kind;
    raft::NodeId peer;
  };
  struct Inbox {
    std::vector<raft::Message> messages;
    std::vector<Proposal> proposals;
    std::vector<ConfProposal> conf_changes;
    std::vector<ReadRequest> reads;
    std::vector<TransferRequest> transfers;
    std::vector<Report> reports;
    bool empty() const {
      return messages.empty() && proposals.empty() && conf_changes.empty() && reads.empty() &&
             transfers.empty() && reports.empty();
    }
  };

  // ---- waiters, owned by the loop thread ----
  struct WriteWaiter {
    raft::Term term;
    WriteCallback done;
    absl::Time deadline;
    // Where its time went (ReplicaMetrics::WriteStage); InfinitePast: not yet.
    absl::Time queued;
    absl::Time proposed;
    absl::Time persisted = absl::InfinitePast();
    absl::Time acked = absl::InfinitePast();
  };
  struct ConfWaiter {
    raft::Term term;
    std::shared_ptr<Completion<raft::Index>> done;
  };
  struct ReadBatch {
    std::vector<ReadRequest> waiters;
    absl::Time started;
  };

  explicit Replica(ReplicaOptions options);
  absl::Status OpenStore();

  // TransportHost.
  void ReportUnreachable(raft::NodeId id) override;
  void ReportSnapshot(raft::NodeId id, bool ok) override;
  absl::StatusOr<kv::SnapshotInfo> CreateSnapshot(const std::string& dir) override;

  // replica.cc: helpers for the public API.
  absl::Status NotLeader() const;
  std::string AddressOf(raft::NodeId id) const;
  // Write without the client-facing checks (system records).
  absl::StatusOr<kv::v1::WriteResponse> Propose(const kv::v1::WriteRequest& request,
                                                absl::Time deadline);
  void ProposeAsync(const kv::v1::WriteRequest& request, absl::Time deadline, WriteCallback done);
  bool Enqueue(const std::function<void(Inbox&)>& add);
  absl::StatusOr<raft::Index> ChangeMembership(raft::ConfChange change, const std::string& address,
                                               absl::Time deadline);
  absl::StatusOr<raft::Index> WaitReadIndex(absl::Time deadline);
  // ReadIndex without waiting: `done` as ReadRequest says.
  void ReadIndexAsync(absl::Time deadline, ReadCallback done);
  absl::StatusOr<kv::v1::GetResponse> ReadLocal(const kv::v1::GetRequest& request) const;
  absl::StatusOr<kv::v1::ScanResponse> ScanLocal(const kv::ScanOptions& options) const;

  // replica_loop.cc: the raft-loop thread.
  void Run();
  bool InboxReady() const ABSL_SHARED_LOCKS_REQUIRED(inbox_mu_);
  void HandleInbox(Inbox inbox);
  void HandleReady(raft::Ready rd);
  absl::Status Persist(const raft::Ready& rd);
  absl::Status InstallSnapshot(const raft::SnapshotMeta& meta);
  void OnSoftState(const raft::SoftState& ss);
  // Retries `op` until it succeeds or the replica stops (disk full, a
  // transient storage error); false if stopped first.
  bool RetryStorage(const char* what, const std::function<absl::Status()>& op);
  bool stopping() const;
  void Publish();
  void FailAllWaiters(const absl::Status& why);

  // replica_apply.cc: applying committed entries, compaction.
  bool ApplyCommitted(std::span<const raft::Entry> entries);
  // ApplyCommitted, timed into the loop metrics.
  bool TimedApply(std::span<const raft::Entry> entries);
  // A run of commands and noops as one state machine batch; sets `applied`
  // to how many of them it applied (a prefix, at least one).
  absl::Status ApplyRun(std::span<const raft::Entry> run, size_t* applied);
  absl::Status ApplyConfChange(const raft::Entry& e);
  // Entries per apply batch at most (bounds the batch's memory in a catch-up).
  static constexpr size_t kMaxApplyBatch = 1024;
  void CompleteWrite(raft::Index index, raft::Term term, absl::StatusOr<kv::v1::WriteResponse> r);
  // Write stages: marks the waiters up to `index` acknowledged by a follower.
  void NoteAck(raft::Index index, absl::Time now);
  // Answers a writer: through the completer when pipelining, else at once.
  void AnswerWrite(WriteCallback done, absl::StatusOr<kv::v1::WriteResponse> r);
  // DEADLINE_EXCEEDED for the writers whose deadline passed (every tick).
  void ExpireWriters(absl::Time now);
  void CompleteConf(raft::Index index, raft::Term term);
  void DropWaitersUpTo(raft::Index index, const absl::Status& why);
  void MaybeCompact();
  // Leader, on a tick: ReplicaOptions::raise_format.
  void MaybeRaiseFormat();
  // How many applied entries to keep if the log is due for compaction now;
  // nullopt if it is not.
  std::optional<uint64_t> CompactionKeep(raft::Index first, raft::Index applied);

  // replica_reads.cc: ReadIndex batching.
  void StartReads(std::vector<ReadRequest> reads);
  void OnReadStates(const std::vector<raft::ReadState>& states);
  void CompleteReads();
  // Answers every waiting read at once, on this thread (also after Stop).
  void FailReads(const absl::Status& why);
  // DEADLINE_EXCEEDED for the reads whose deadline passed (every tick).
  void ExpireReads(absl::Time now);
  // Answers a reader through the completer (its read runs there).
  void AnswerRead(ReadCallback done, absl::StatusOr<raft::Index> r);

  ReplicaOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<ReplicaMetrics> metrics_;
  TestHooks hooks_;

  std::unique_ptr<kv::Engine> engine_;
  std::unique_ptr<kv::StateMachine> sm_;
  std::unique_ptr<kv::RaftLogStore> log_;
  std::unique_ptr<SnapshotReceiver> receiver_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<WireListener> wire_listener_;  // null: no wire (options_.wire, TLS)

  // ---- the loop's own state (loop thread only after Start) ----
  std::unique_ptr<raft::RawNode> node_;
  std::thread loop_;
  // Writers' answers leave the loop through here (see completer.h).
  Completer completer_;
  raft::ConfState conf_;  // as of the applied index
  raft::SoftState soft_;
  std::map<raft::Index, WriteWaiter> write_waiters_;
  std::map<raft::Index, ConfWaiter> conf_waiters_;
  std::map<std::string, ReadBatch> read_batches_;  // by ReadIndex context
  // Confirmed reads waiting for the apply point, by read index.
  std::multimap<raft::Index, ReadRequest> confirmed_reads_;
  uint64_t read_seq_ = 0;
  raft::Term campaign_term_ = 0;  // last term this replica campaigned in
  // When the commit index the followers are owed goes out by itself
  // (ReplicaOptions::commit_broadcast_delay); InfiniteFuture: none owed.
  absl::Time commit_due_ = absl::InfiniteFuture();
  raft::HardState latest_hard_state_;  // as the core last reported it
  raft::HardState saved_hard_state_;   // as last written to the log store
  double ready_accounted_ = 0;         // loop metrics: seconds of this Ready already counted
  absl::Time ready_started_;           // write stages: when this Ready's handling began
  // Readiness: applied must reach this once a leader is known.
  raft::Index catch_up_target_ = 0;
  bool catch_up_target_fixed_ = false;
  bool started_empty_ = false;

  // ---- shared with callers ----
  mutable absl::Mutex inbox_mu_;
  Inbox inbox_ ABSL_GUARDED_BY(inbox_mu_);
  bool stop_ ABSL_GUARDED_BY(inbox_mu_) = false;
  bool started_ ABSL_GUARDED_BY(inbox_mu_) = false;

  std::atomic<raft::NodeId> leader_{raft::kNoNode};
  std::atomic<bool> is_leader_{false};
  std::atomic<raft::Term> term_{0};
  // Entry bytes applied, for deciding when to compact the log (raft loop only).
  struct AppliedBytes {
    // Since the log's size was last estimated: the estimate is taken every
    // 1/16 of compact_log_bytes.
    uint64_t unchecked = std::numeric_limits<uint64_t>::max() / 2;
    // Since the last compaction or snapshot: a lower bound of the log's size
    // that, unlike RocksDB's estimate of entries still in the memtable
    // (sampled: off by 2x or more), is exact.
    uint64_t since_compaction = 0;
    void Add(uint64_t n) {
      unchecked += n;
      since_compaction += n;
    }
  };
  AppliedBytes applied_bytes_;
  std::atomic<bool> disk_full_{false};
  std::atomic<bool> ready_{false};
  std::atomic<uint64_t> snapshots_installed_{0};

  mutable absl::Mutex status_mu_;
  ReplicaStatus published_ ABSL_GUARDED_BY(status_mu_);
  std::string storage_error_ ABSL_GUARDED_BY(status_mu_);

  // Addresses learned from senders (fallback when neither the flags nor the
  // replicated records know a member).
  mutable absl::Mutex addr_mu_;
  std::map<raft::NodeId, std::string> learned_addresses_ ABSL_GUARDED_BY(addr_mu_);
  // The max_format each peer's binary announced (MessageBatch.max_format).
  std::map<raft::NodeId, uint32_t> announced_formats_ ABSL_GUARDED_BY(addr_mu_);
  std::atomic<bool> format_raise_pending_{false};
};

}  // namespace mailgrid::replica
