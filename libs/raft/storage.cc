// MemoryStorage: the in-memory log used by tests and the simulation. Its
// behaviour at the edges (compacted vs unavailable, the dummy entry at the
// snapshot index) is the reference for every Storage implementation.
#include "libs/raft/storage.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace mailgrid::raft {

absl::Status CompactedError(Index index) {
  return absl::OutOfRangeError(absl::StrCat("raft log: index ", index, " is compacted"));
}

absl::Status UnavailableError(Index index) {
  return absl::NotFoundError(absl::StrCat("raft log: index ", index, " is unavailable"));
}

absl::Status SnapshotTemporarilyUnavailableError() {
  return absl::UnavailableError("raft log: snapshot temporarily unavailable");
}

uint64_t EntrySize(const Entry& e) {
  // Payload plus a fixed allowance for term, index and type, so a stream of
  // empty entries still counts against the limits.
  return e.data.size() + 24;
}

MemoryStorage::MemoryStorage() { entries_.push_back(Entry{}); }

absl::StatusOr<InitialState> MemoryStorage::GetInitialState() const {
  return InitialState{hard_state_, snapshot_.conf};
}

Index MemoryStorage::FirstIndex() const { return entries_[0].index + 1; }

Index MemoryStorage::LastIndex() const { return entries_[0].index + entries_.size() - 1; }

absl::StatusOr<raft::Term> MemoryStorage::Term(Index i) const {
  const Index offset = entries_[0].index;
  if (i < offset) return CompactedError(i);
  if (i - offset >= entries_.size()) return UnavailableError(i);
  return entries_[i - offset].term;
}

absl::StatusOr<std::vector<Entry>> MemoryStorage::Entries(Index lo, Index hi,
                                                          uint64_t max_bytes) const {
  const Index offset = entries_[0].index;
  if (lo <= offset) return CompactedError(lo);
  if (hi > LastIndex() + 1) return UnavailableError(hi - 1);
  std::vector<Entry> out;
  uint64_t bytes = 0;
  for (Index i = lo; i < hi; ++i) {
    const Entry& e = entries_[i - offset];
    bytes += EntrySize(e);
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

absl::StatusOr<SnapshotMeta> MemoryStorage::Snapshot() const { return snapshot_; }

absl::Status MemoryStorage::Append(const std::vector<Entry>& entries) {
  if (entries.empty()) return absl::OkStatus();
  const Index first = FirstIndex();
  const Index last_new = entries.back().index;
  if (last_new < first) return absl::OkStatus();  // all covered by the snapshot
  if (entries[0].index > LastIndex() + 1) {
    return absl::InvalidArgumentError(absl::StrCat("raft log: append at ", entries[0].index,
                                                   " leaves a gap after ", LastIndex()));
  }
  // Skip what the snapshot already covers, then truncate the conflicting
  // suffix and append.
  size_t skip = entries[0].index < first ? first - entries[0].index : 0;
  const Index start = entries[skip].index;
  entries_.resize(start - entries_[0].index);
  entries_.insert(entries_.end(), entries.begin() + skip, entries.end());
  return absl::OkStatus();
}

absl::Status MemoryStorage::ApplySnapshot(const SnapshotMeta& meta) {
  if (meta.index <= snapshot_.index && snapshot_.index != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("raft log: snapshot at ", meta.index, " older than ", snapshot_.index));
  }
  snapshot_ = meta;
  entries_.assign(1, Entry{meta.term, meta.index, Entry::Type::kNormal, ""});
  return absl::OkStatus();
}

absl::StatusOr<SnapshotMeta> MemoryStorage::CreateSnapshot(Index index, const ConfState& conf) {
  if (index <= snapshot_.index) {
    return absl::FailedPreconditionError(
        absl::StrCat("raft log: snapshot at ", index, " not newer than ", snapshot_.index));
  }
  if (index > LastIndex()) return UnavailableError(index);
  snapshot_ = SnapshotMeta{index, entries_[index - entries_[0].index].term, conf};
  return snapshot_;
}

absl::Status MemoryStorage::Compact(Index index) {
  const Index offset = entries_[0].index;
  if (index <= offset) return CompactedError(index);
  if (index > snapshot_.index) {
    return absl::FailedPreconditionError(
        absl::StrCat("raft log: compact to ", index, " beyond snapshot ", snapshot_.index));
  }
  // entries_[index - offset] becomes the new dummy; its data is not needed.
  entries_.erase(entries_.begin(), entries_.begin() + (index - offset));
  entries_[0].data.clear();
  entries_[0].type = Entry::Type::kNormal;
  return absl::OkStatus();
}

std::vector<Entry> BootstrapEntries(const std::vector<NodeId>& voters) {
  std::vector<Entry> out;
  for (NodeId id : voters) {
    Entry e;
    e.term = 1;
    e.index = out.size() + 1;
    e.type = Entry::Type::kConfChange;
    e.data = EncodeConfChange(ConfChange{ConfChange::Type::kAddVoter, id});
    out.push_back(std::move(e));
  }
  return out;
}

absl::Status MemoryStorage::Bootstrap(const std::vector<NodeId>& voters) {
  if (LastIndex() != 0 || hard_state_.term != 0) {
    return absl::FailedPreconditionError("raft log: bootstrap of a non-empty log");
  }
  if (voters.empty()) return absl::InvalidArgumentError("raft log: bootstrap with no voters");
  auto entries = BootstrapEntries(voters);
  hard_state_ = HardState{1, kNoNode, entries.size()};
  return Append(entries);
}

}  // namespace mailgrid::raft
