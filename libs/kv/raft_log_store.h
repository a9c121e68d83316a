// RaftLogStore: the durable Raft log of one replica (raft::Storage) in the
// Engine's `raft_log` family, with its hard state and snapshot point in `meta`.
//
//   raft_log: big-endian index -> crc32c(4) | term(8) | type(1) | data
//             The CRC covers the index too, so a misplaced or damaged entry
//             is refused (DataLoss) and never handed to the core.
//   meta:     log/hard_state (term, vote, commit), log/snapshot (the last
//             snapshot point: index, term, conf), log/compacted (index and
//             term of the last entry dropped by compaction or a snapshot).
//
// Every write of one Ready (snapshot, entries, hard state) is ONE WriteBatch
// with sync = true: one fsync per Ready, however many proposals it carries
// (group commit). Because the state machine shares the WAL, that fsync also
// makes every earlier (unsynced) apply durable.
//
// Snapshot install order (the driver): StateMachine::RestoreFromSnapshot(dir)
// first, then ApplySnapshot(meta) (or Save with the Ready's entries and hard
// state). If the process dies between the two, Open finds the state machine
// ahead of a log that does not contain its applied point and finishes the
// install (discards the log, records the snapshot point, raises commit).
//
// Threads: the write methods are serialised internally; the raft::Storage
// reads may run concurrently with them (a read racing a compaction may report
// the entry as compacted). An in-memory cache of the newest entries serves
// the core's Entries()/Term() without touching RocksDB.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "libs/kv/engine.h"
#include "libs/raft/storage.h"
#include "libs/raft/types.h"
#include "mailgrid/kv/v1/kv.pb.h"

namespace mailgrid::kv {

struct RaftLogStoreOptions {
  // The newest entries kept in memory (whichever limit is hit first).
  size_t cache_entries = 4096;
  uint64_t cache_bytes = 64ull << 20;
};

class RaftLogStore final : public raft::Storage {
 public:
  // `engine` must outlive the store. Reconciles with the state machine's
  // applied point in the same engine (see above).
  static absl::StatusOr<std::unique_ptr<RaftLogStore>> Open(Engine* engine,
                                                            RaftLogStoreOptions options = {});

  // ---- raft::Storage (error codes as storage.h requires) ----
  // conf_state is the state machine's membership as of its applied index
  // (what Config::applied must be set to), or the snapshot's if it has none.
  absl::StatusOr<raft::InitialState> GetInitialState() const override;
  absl::StatusOr<std::vector<raft::Entry>> Entries(raft::Index lo, raft::Index hi,
                                                   uint64_t max_bytes) const override;
  absl::StatusOr<raft::Term> Term(raft::Index i) const override;
  raft::Index FirstIndex() const override;
  raft::Index LastIndex() const override;
  absl::StatusOr<raft::SnapshotMeta> Snapshot() const override;

  // ---- the driver's write side ----
  // Persists one Ready in ONE synced batch: `snapshot` (replaces the whole
  // log; must be newer than the current one), then `entries` (overwriting any
  // stored entry at or after entries[0].index: a follower truncating a
  // conflicting suffix; entries covered by the snapshot are skipped), then
  // `hard_state`. InvalidArgument on a gap or non-consecutive entries.
  absl::Status Save(const std::optional<raft::SnapshotMeta>& snapshot,
                    const std::vector<raft::Entry>& entries,
                    const std::optional<raft::HardState>& hard_state);
  absl::Status Append(const std::vector<raft::Entry>& entries,
                      const std::optional<raft::HardState>& hard_state) {
    return Save(std::nullopt, entries, hard_state);
  }
  absl::Status ApplySnapshot(const raft::SnapshotMeta& meta) {
    return Save(meta, {}, std::nullopt);
  }

  // Records that the state machine at `index` (<= LastIndex) can be sent as
  // a snapshot with membership `conf`; keeps the entries. Returns the meta.
  absl::StatusOr<raft::SnapshotMeta> CreateSnapshot(raft::Index index, const raft::ConfState& conf);
  // Drops every entry up to and including `index` (<= the snapshot index),
  // keeping its term so Term(index) still answers.
  absl::Status Compact(raft::Index index);
  // RocksDB's estimate of the bytes entries lo..hi take (SST files and
  // memtables; nothing is read). For a size-based compaction trigger.
  uint64_t ApproximateBytes(raft::Index lo, raft::Index hi) const;
  // Initial member of a fresh group: writes raft::BootstrapEntries(voters)
  // and HardState{1, none, n}. FailedPrecondition if the log is not empty.
  absl::Status Bootstrap(const std::vector<raft::NodeId>& voters);

  raft::HardState hard_state() const;

 private:
  struct Point {
    raft::Index index = 0;
    raft::Term term = 0;
  };
  // The log's shape; copied, edited and swapped in by a write.
  struct View {
    raft::HardState hard_state;
    raft::SnapshotMeta snapshot;
    Point compacted;  // first index = compacted.index + 1
    raft::Index last = 0;
  };

  RaftLogStore(Engine* engine, RaftLogStoreOptions options) : engine_(engine), options_(options) {}

  absl::Status Load();
  absl::Status Reconcile();
  absl::StatusOr<raft::Entry> ReadEntry(raft::Index i) const;
  absl::StatusOr<std::vector<raft::Entry>> ReadRange(raft::Index lo, raft::Index hi,
                                                     uint64_t max_bytes, uint64_t* bytes) const;
  // The term from memory, or nullopt when the entry must be read from disk.
  std::optional<absl::StatusOr<raft::Term>> TermInMemory(raft::Index i) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Appends entries[skip..] to the cache (dropping a replaced suffix) and
  // trims it to the limits.
  void AddToCache(const std::vector<raft::Entry>& entries, size_t skip)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Engine* const engine_;
  const RaftLogStoreOptions options_;

  absl::Mutex write_mu_;  // one writer at a time, across RocksDB write + memory update
  mutable absl::Mutex mu_;
  View view_ ABSL_GUARDED_BY(mu_);
  std::deque<raft::Entry> cache_ ABSL_GUARDED_BY(mu_);  // consecutive, ends at view_.last
  uint64_t cache_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

v1::ConfState ToProto(const raft::ConfState& conf);
raft::ConfState FromProto(const v1::ConfState& conf);

namespace internal {
std::string EncodeLogEntry(const raft::Entry& e);
// DataLoss on a checksum mismatch or malformed value.
absl::StatusOr<raft::Entry> DecodeLogEntry(raft::Index index, std::string_view value);
}  // namespace internal

}  // namespace mailgrid::kv
