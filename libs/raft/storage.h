// The read side of the durable Raft log. The driver WRITES it (from each
// Ready, before Advance); the core only READS it. MemoryStorage is the
// in-memory implementation for tests and the deterministic simulation; the
// production one is the RocksDB log in libs/kv.
//
// Error codes (every implementation must use these, the core relies on them):
//   kOutOfRange   compacted: the entry is covered by the snapshot. Term() of
//                 the snapshot index itself must still succeed.
//   kNotFound     unavailable: the index is beyond LastIndex().
//   kUnavailable  Snapshot() only: a snapshot is being prepared, try later.
//   anything else a real storage failure (I/O, corruption); the core treats
//                 the affected operation as failed and retries later.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/raft/types.h"

namespace mailgrid::raft {

absl::Status CompactedError(Index index);
absl::Status UnavailableError(Index index);
absl::Status SnapshotTemporarilyUnavailableError();
inline bool IsLogCompacted(const absl::Status& s) { return absl::IsOutOfRange(s); }
inline bool IsLogUnavailable(const absl::Status& s) { return absl::IsNotFound(s); }

struct InitialState {
  HardState hard_state;
  ConfState conf_state;  // membership as of Config::applied
};

class Storage {
 public:
  virtual ~Storage() = default;

  virtual absl::StatusOr<InitialState> GetInitialState() const = 0;

  // Entries in [lo, hi), at most max_bytes of data (but always at least one
  // entry if any is in range). lo <= snapshot index -> compacted;
  // hi > LastIndex() + 1 -> unavailable.
  virtual absl::StatusOr<std::vector<Entry>> Entries(Index lo, Index hi,
                                                     uint64_t max_bytes) const = 0;

  // Term of entry i, for i in [FirstIndex() - 1, LastIndex()]: the entry at
  // FirstIndex() - 1 is the snapshot's last entry, whose term is kept.
  virtual absl::StatusOr<raft::Term> Term(Index i) const = 0;

  // First index still in the log (snapshot index + 1); 1 for a fresh log.
  virtual Index FirstIndex() const = 0;
  // Last index in the log; FirstIndex() - 1 when it holds no entry.
  virtual Index LastIndex() const = 0;

  // The most recent snapshot (its data is fetched out of band).
  virtual absl::StatusOr<SnapshotMeta> Snapshot() const = 0;
};

// Approximate size used by the max_bytes limits.
uint64_t EntrySize(const Entry& e);

// An in-memory Storage. Not thread-safe (the simulation is single-threaded).
class MemoryStorage final : public Storage {
 public:
  MemoryStorage();

  absl::StatusOr<InitialState> GetInitialState() const override;
  absl::StatusOr<std::vector<Entry>> Entries(Index lo, Index hi, uint64_t max_bytes) const override;
  absl::StatusOr<raft::Term> Term(Index i) const override;
  Index FirstIndex() const override;
  Index LastIndex() const override;
  absl::StatusOr<SnapshotMeta> Snapshot() const override;

  // --- the driver's write side ---
  void SetHardState(const HardState& hs) { hard_state_ = hs; }
  const HardState& hard_state() const { return hard_state_; }

  // Appends entries, first overwriting any stored entry at or after
  // entries[0].index (a follower truncating a conflicting suffix). Entries
  // already covered by the snapshot are skipped. Error if it leaves a gap.
  absl::Status Append(const std::vector<Entry>& entries);

  // Replaces the whole log with a received snapshot. Error if older.
  absl::Status ApplySnapshot(const SnapshotMeta& meta);

  // Records that the state machine at `index` (<= LastIndex) was saved as a
  // snapshot with membership `conf`; does not drop entries.
  absl::StatusOr<SnapshotMeta> CreateSnapshot(Index index, const ConfState& conf);

  // Drops entries before `index` (index <= snapshot index is required so the
  // log can always be rebuilt from the snapshot).
  absl::Status Compact(Index index);

  // Fresh-cluster bootstrap for an initial member: writes entries 1..n, each
  // a committed kConfChange adding one of `voters` as a voter, at term 1.
  // Membership lives in the log, so a replica that joins later and replays
  // the log from index 1 learns the full history. Error if not empty.
  absl::Status Bootstrap(const std::vector<NodeId>& voters);

 private:
  HardState hard_state_;
  SnapshotMeta snapshot_;
  // entries_[0] is a dummy standing for the snapshot's last entry (its index
  // and term), so Term(FirstIndex() - 1) needs no special case.
  std::vector<Entry> entries_;
};

// The bootstrap log for `voters` (see MemoryStorage::Bootstrap); a durable
// driver writes these entries and HardState{term 1, commit n} itself.
std::vector<Entry> BootstrapEntries(const std::vector<NodeId>& voters);

}  // namespace mailgrid::raft
