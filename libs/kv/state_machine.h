// StateMachine: the replicated key-value state, applied from committed Raft
// entries, over the `data` and `meta` column families of an Engine.
//
// Apply contract (called by ONE apply thread, in log order, for EVERY
// committed entry: Apply for a command, ApplyNoop for an empty entry,
// ApplyConfState for a membership change; ApplyBatch for a run of commands and
// empty entries, with the same result as applying them one by one):
//  * An entry's effects and the new applied index are ONE WriteBatch (with
//    ApplyBatch: a run of entries' effects and the applied index of its last),
//    so after any crash the store is exactly "all entries up to applied_index".
//    Entries at index <= applied are skipped; that makes re-delivery after a
//    restart harmless.
//  * Apply writes are NOT fsynced. The raft log is the durability: every
//    applied entry is already fsynced in the local raft log, and after a crash
//    the entries above the recovered applied_index are applied again from it.
//    The log never loses entries the state machine depends on, because the
//    log and the state machine share one WAL and every log change (append,
//    compaction) is a synced write, which makes all earlier applies durable.
//  * Conditions are evaluated against the state left by the previous entry,
//    identically on every replica; a failed condition writes no data but is
//    still a recorded, applied outcome.
//  * A batch entry (WriteRequest.batch, one KvService.WriteMany call) applies
//    each of its writes as if it were its own entry at the entry's index:
//    own conditions, own record, own outcome in WriteResponse.batch.
//  * A request with a request_id is recorded; applying the same id again
//    returns the recorded outcome (replayed = true) without applying. Records
//    are kept for `idempotency_window` entries (must be equal on all replicas).
//  * A storage error (disk full: ResourceExhausted) leaves memory and disk as
//    before the call: the apply thread retries the same entry later.
//
//  * Formats (README "Formats"): the group commits a state-machine format
//    (a SetFormat entry, WriteRequest.set_format); an entry needing a format
//    this binary does not apply (min_format or set_format above
//    `max_format`) makes ApplyBatch fail with FailedPrecondition naming both
//    numbers, before anything of that entry is applied, so the replica stops
//    there instead of misapplying it; Open refuses a store whose committed
//    format is above `max_format`.
//
// Reads (Get, Scan, applied()) are safe from any thread, concurrently with
// Apply; each read sees one consistent state at or after applied_index().
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "libs/kv/engine.h"
#include "libs/kv/requests.h"
#include "mailgrid/kv/v1/kv.pb.h"
#include "rocksdb/write_batch.h"

namespace mailgrid::kv {

struct VersionedValue {
  std::string value;
  uint64_t version = 0;  // the raft index that last wrote the key
};

struct ScanResult {
  std::vector<v1::KeyValue> entries;
  // Empty when the range is exhausted. Otherwise pass it back as
  // ScanRequest.continuation (forward: next start, inclusive; reverse: next
  // end, exclusive).
  std::string continuation;
  uint64_t applied_index = 0;  // the state read is at least this recent
};

struct AppliedState {
  uint64_t index = 0;
  uint64_t term = 0;
  v1::ConfState conf;
};

// A snapshot written into a directory: everything the transport must send.
struct SnapshotInfo {
  std::string dir;
  AppliedState applied;
  // Every file of the snapshot (the data SSTs, the meta SST and MANIFEST),
  // with size and SHA-256, in the order to send them.
  std::vector<v1::SnapshotFile> files;
};

// One committed entry for ApplyBatch.
struct ApplyInput {
  enum class Kind { kCommand, kNoop };
  uint64_t index = 0;
  uint64_t term = 0;
  Kind kind = Kind::kCommand;
  std::string_view command;  // a serialized v1::WriteRequest (kCommand)
};

// The highest state-machine format this binary applies. Format 1 is every
// entry and stored form up to session 20 (plain writes, WriteMany batch
// entries, both expiry-key forms); a change that older binaries would
// ignore or read differently raises it, sets WriteRequest.min_format on the
// entries that use it, and is emitted only once committed_format() allows.
// Format 2 (session 21): client sessions (kv.proto RequestId.first_unacked;
// README "Client sessions"). Format 3 (session 25): a session's floor moves
// past outcomes only the bound dropped, and only past them (format 2 also
// moved it to the first outcome kept, rejecting a lower seq applied after
// it; README "The floor defect"). Clients are offered sessions from 3 on.
inline constexpr uint32_t kStateMachineFormat = 3;
inline constexpr uint32_t kSessionFloorFormat = 3;
// Where the committed format lives: a reserved ('\0'-prefixed, refused in
// client writes) key of the data family, so it travels in snapshots and any
// replica or service reads it with a plain Get. Value: the decimal number.
inline constexpr std::string_view kFormatKey{"\0mailgrid/kv-format", 19};

struct StateMachineOptions {
  // Idempotency records older than this many entries are dropped. Part of the
  // replicated state's definition: every replica of a group must agree.
  uint64_t idempotency_window = 100000;
  // Snapshot data files are split at about this size.
  uint64_t snapshot_file_bytes = 256ull << 20;
  // The highest format this replica applies (tests simulate older and newer
  // binaries with it; production keeps the default).
  uint32_t max_format = kStateMachineFormat;
  // Client sessions idle for idempotency_window entries are dropped by a
  // sweep at every entry whose index is a multiple of this (replicated
  // state: equal on all replicas).
  uint64_t session_sweep_interval = 1024;
};

// A client session keeps at most this many outcomes (seqs at or above its
// floor); beyond it the lowest are dropped and the floor raised past them.
// A client keeps every session write within this distance of its
// first_unacked (client_seqs.h), so for it the bound never drops anything.
inline constexpr int kMaxSessionOutcomes = 4096;

namespace internal {
class PendingBatch;  // state_machine.cc: one ApplyBatch call's uncommitted writes
}  // namespace internal

class StateMachine {
 public:
  // `engine` must outlive the StateMachine.
  static absl::StatusOr<std::unique_ptr<StateMachine>> Open(Engine* engine,
                                                            StateMachineOptions options = {});

  // ---- apply thread only ----
  // `command` is a serialized v1::WriteRequest. Returns the outcome (an
  // invalid command is the outcome `rejected`, not an error). For an index
  // already applied, returns the recorded outcome if the request had an id,
  // else a response without outcome; both with replayed = true.
  absl::StatusOr<v1::WriteResponse> Apply(uint64_t index, uint64_t term, std::string_view command);
  absl::Status ApplyNoop(uint64_t index, uint64_t term);
  // Applies a prefix of `entries` (which must start at applied_index() + 1,
  // consecutive) as ONE RocksDB write, and returns one response per applied
  // entry (a noop's: ok unset, only applied_index). Each entry's conditions
  // and idempotency lookups see the state left by the entry before it,
  // including the earlier entries of this call, exactly as separate Apply
  // calls would. The prefix is all entries, except that an entry with a
  // range deletion ends a batch (and starts one unless first), since a range
  // deletion cannot be read back from an uncommitted batch. All or nothing:
  // on error nothing of this call is applied. Never returns an empty vector
  // for non-empty `entries`.
  absl::StatusOr<std::vector<v1::WriteResponse>> ApplyBatch(std::span<const ApplyInput> entries);
  absl::Status ApplyConfState(uint64_t index, uint64_t term, const v1::ConfState& conf);

  // Replaces the whole state with the snapshot in `dir` (after verifying
  // every checksum). Crash-safe: a restore interrupted before its commit
  // point leaves the previous state, and the leftovers are dropped at the
  // next Engine::Open; after the commit point the new state is complete.
  absl::Status RestoreFromSnapshot(const std::string& dir);

  // ---- any thread ----
  absl::StatusOr<VersionedValue> Get(std::string_view key) const;  // NotFound if absent
  absl::StatusOr<ScanResult> Scan(const ScanOptions& options) const;
  // The outcome recorded for `id`, if still retained (lets a leader answer a
  // retry without proposing it again).
  absl::StatusOr<std::optional<v1::WriteResponse>> FindRecordedOutcome(
      const v1::RequestId& id) const;

  AppliedState applied() const;
  uint64_t applied_index() const { return applied_index_.load(std::memory_order_acquire); }
  // The group's committed format as applied here (1 when never set), and
  // the highest this binary applies.
  uint32_t committed_format() const { return format_.load(std::memory_order_acquire); }
  uint32_t max_format() const { return options_.max_format; }

  // Writes a consistent snapshot of the state into `dir` (created; must not
  // exist or be empty) without blocking Apply.
  absl::StatusOr<SnapshotInfo> CreateSnapshot(const std::string& dir) const;

  // Reads MANIFEST in `dir` and checks every file's size and SHA-256.
  // DataLoss on any mismatch.
  static absl::StatusOr<v1::SnapshotManifest> VerifySnapshot(const std::string& dir);

 private:
  StateMachine(Engine* engine, StateMachineOptions options) : engine_(engine), options_(options) {}

  absl::Status LoadApplied();
  // Reads the committed format; FailedPrecondition when above max_format.
  absl::Status LoadFormat();
  absl::Status CheckCommittedFormat() const;
  // FailedPrecondition when entry `index` needs a format above max_format.
  absl::Status CheckApplicable(uint64_t index, const v1::WriteRequest& request) const;
  absl::Status CheckNext(uint64_t index) const;
  // `pending` (nullable): an uncommitted batch whose writes the read sees.
  absl::StatusOr<std::optional<VersionedValue>> ReadData(rocksdb::ColumnFamilyHandle* data,
                                                         std::string_view key,
                                                         internal::PendingBatch* pending) const;
  absl::StatusOr<std::optional<v1::WriteResponse>> ReadRecord(
      const std::string& record_key, internal::PendingBatch* pending) const;
  // A client's session as stored (nullopt when it has none).
  absl::StatusOr<std::optional<v1::ClientSession>> ReadSession(std::string_view session_key) const;
  // The outcome a session recorded for `id` (nullopt when not kept).
  absl::StatusOr<std::optional<v1::WriteResponse>> FindSessionOutcome(
      const v1::RequestId& id) const;
  // A session write (valid, RequestId.first_unacked > 0): its outcome kept
  // in, and looked up from, the client's one session record.
  // `format`: the group's committed format as of this entry.
  absl::StatusOr<v1::WriteResponse> ApplySessionWrite(uint64_t index,
                                                      const v1::WriteRequest& request,
                                                      internal::PendingBatch* batch,
                                                      uint32_t format);
  // Drops sessions idle for idempotency_window entries (see
  // StateMachineOptions::session_sweep_interval).
  absl::Status SweepSessions(uint64_t index, internal::PendingBatch* batch);
  absl::StatusOr<v1::WriteResponse> Evaluate(rocksdb::ColumnFamilyHandle* data, uint64_t index,
                                             const v1::WriteRequest& request,
                                             internal::PendingBatch* batch);
  // One write's effects and idempotency record into `batch`; `valid` not OK
  // makes it the outcome `rejected`. `entry_ids` (nullable; a batch entry's
  // writes): the write's request id is appended there for the entry's one
  // expiry key instead of getting an expiry key of its own.
  absl::StatusOr<v1::WriteResponse> ApplyWrite(uint64_t index, const v1::WriteRequest& request,
                                               const absl::Status& valid,
                                               internal::PendingBatch* batch,
                                               std::string* entry_ids, uint32_t format);
  // What a re-delivered write did, from its record if it had an id.
  absl::StatusOr<v1::WriteResponse> Recorded(uint64_t index, const v1::WriteRequest& request) const;
  // One command's effects into `batch` (`parsed` false: not a WriteRequest);
  // a batch entry (WriteRequest.batch) applies each of its writes in turn.
  // `format`: the committed format as of this entry (a SetFormat entry
  // raises it; adopted once the batch is committed).
  absl::StatusOr<v1::WriteResponse> ApplyCommand(uint64_t index, const v1::WriteRequest& request,
                                                 bool parsed, internal::PendingBatch* batch,
                                                 std::string* prune_cursor, uint32_t* format);
  // Adds deletes of expired idempotency records to `batch`, advancing
  // `cursor` (the prune cursor to adopt once the batch is committed).
  absl::Status PruneRecords(uint64_t index, internal::PendingBatch* batch, std::string* cursor);
  absl::Status Commit(uint64_t index, uint64_t term, const v1::ConfState* conf,
                      rocksdb::WriteBatch* batch);

  Engine* const engine_;
  const StateMachineOptions options_;

  mutable absl::Mutex mu_;
  AppliedState applied_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> applied_index_{0};
  std::atomic<uint32_t> format_{1};
  // Expiry keys below this are known deleted (performance only: pruning skips
  // their tombstones). Apply thread only.
  std::string prune_cursor_;
};

// The applied point a StateMachine persisted in `engine` (all zero if none),
// optionally as of a RocksDB snapshot. The raft log store reads it at open.
absl::StatusOr<AppliedState> ReadAppliedState(const Engine& engine,
                                              const rocksdb::Snapshot* at = nullptr);

// Internal encodings, exposed for tests and the snapshot code.
namespace internal {
std::string EncodeValue(uint64_t version, std::string_view value);
absl::StatusOr<VersionedValue> DecodeValue(std::string_view stored);
std::string RequestRecordKey(const v1::RequestId& id);
std::string SessionKey(std::string_view client_id);
// The committed format stored at kFormatKey (1 when absent).
absl::StatusOr<uint32_t> ParseFormat(std::string_view value);
}  // namespace internal

}  // namespace mailgrid::kv
