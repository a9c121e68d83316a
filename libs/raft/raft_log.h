// Internal: the log as the core sees it, the durable part (Storage, written
// by the driver) followed by the unstable part (entries or a snapshot the
// core has accepted but the driver has not yet persisted). An entry moves
// from unstable to stable when the driver Advances the Ready that held it.
#pragma once

#include <optional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/raft/storage.h"
#include "libs/raft/types.h"

namespace mailgrid::raft {

class Unstable {
 public:
  explicit Unstable(Index offset) : offset_(offset) {}

  std::optional<Index> MaybeFirstIndex() const;
  std::optional<Index> MaybeLastIndex() const;
  std::optional<raft::Term> MaybeTerm(Index i) const;

  void StableTo(Index i, raft::Term t);
  void StableSnapTo(Index i);
  void Restore(const SnapshotMeta& s);
  void TruncateAndAppend(const std::vector<Entry>& entries);
  // Entries in [lo, hi), all of which must be unstable.
  std::vector<Entry> Slice(Index lo, Index hi) const;

  const std::vector<Entry>& entries() const { return entries_; }
  const std::optional<SnapshotMeta>& snapshot() const { return snapshot_; }
  Index offset() const { return offset_; }

 private:
  std::optional<SnapshotMeta> snapshot_;
  std::vector<Entry> entries_;
  Index offset_;  // index of entries_[0]
};

class RaftLog {
 public:
  explicit RaftLog(const Storage* storage);

  Index FirstIndex() const;
  Index LastIndex() const;
  raft::Term LastTerm() const;
  // OutOfRange if compacted, NotFound if beyond the last index.
  absl::StatusOr<raft::Term> Term(Index i) const;
  // The term of i, or 0 if it is not available (compacted or absent).
  raft::Term TermOrZero(Index i) const;
  bool MatchTerm(Index i, raft::Term t) const;
  // Election restriction (§5.4.1): is a log ending at (index, term) at
  // least as up to date as ours?
  bool IsUpToDate(Index index, raft::Term term) const;

  // Follower side of AppendEntries. Returns the last index of the new
  // entries if the log matched at (index, log_term), nullopt otherwise.
  std::optional<Index> MaybeAppend(Index index, raft::Term log_term, Index committed,
                                   const std::vector<Entry>& entries);
  // Appends (leader side); returns the new last index.
  Index Append(const std::vector<Entry>& entries);
  // The first index whose entry conflicts with ours or is new; 0 if none.
  Index FindConflict(const std::vector<Entry>& entries) const;
  // The largest index <= `index` whose term is <= `term` (and that term):
  // where a rejected leader's and our log may still match (fast backup).
  std::pair<Index, raft::Term> FindConflictByTerm(Index index, raft::Term term) const;

  // Entries in [lo, hi), at most max_bytes (at least one).
  absl::StatusOr<std::vector<Entry>> Slice(Index lo, Index hi, uint64_t max_bytes) const;
  // Entries from i to the end, at most max_bytes.
  absl::StatusOr<std::vector<Entry>> EntriesFrom(Index i, uint64_t max_bytes) const;

  std::vector<Entry> UnstableEntries() const { return unstable_.entries(); }
  bool HasUnstableEntries() const { return !unstable_.entries().empty(); }
  // The last index of the durable prefix that is still part of this log
  // (0 while a snapshot waits to be persisted).
  Index StableLastIndex() const {
    return unstable_.snapshot() ? 0 : unstable_.offset() - 1;
  }
  const std::optional<SnapshotMeta>& UnstableSnapshot() const { return unstable_.snapshot(); }
  bool HasNextCommittedEnts() const;
  std::vector<Entry> NextCommittedEnts(uint64_t max_bytes) const;
  absl::StatusOr<SnapshotMeta> Snapshot() const;

  Index committed() const { return committed_; }
  Index applied() const { return applied_; }
  void CommitTo(Index i);
  // Leader: commit up to max_index if that entry is from `term` (§5.4.2:
  // only entries of the current term are committed by counting replicas).
  bool MaybeCommit(Index max_index, raft::Term term);
  void AppliedTo(Index i);
  void StableTo(Index i, raft::Term t) { unstable_.StableTo(i, t); }
  void StableSnapTo(Index i) { unstable_.StableSnapTo(i); }
  // Follower: replace the log with a snapshot (committed jumps to it).
  void Restore(const SnapshotMeta& s);

 private:
  const Storage* storage_;
  Unstable unstable_;
  Index committed_ = 0;
  Index applied_ = 0;
};

}  // namespace mailgrid::raft
