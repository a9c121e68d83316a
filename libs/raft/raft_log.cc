// The core's view of the log: Storage (durable) + Unstable (not yet
// persisted). See raft_log.h.
#include "libs/raft/raft_log.h"

#include <algorithm>

#include "libs/raft/check.h"

namespace mailgrid::raft {

// ----- Unstable -----

std::optional<Index> Unstable::MaybeFirstIndex() const {
  if (snapshot_) return snapshot_->index + 1;
  return std::nullopt;
}

std::optional<Index> Unstable::MaybeLastIndex() const {
  if (!entries_.empty()) return offset_ + entries_.size() - 1;
  if (snapshot_) return snapshot_->index;
  return std::nullopt;
}

std::optional<raft::Term> Unstable::MaybeTerm(Index i) const {
  if (i < offset_) {
    if (snapshot_ && snapshot_->index == i) return snapshot_->term;
    return std::nullopt;
  }
  auto last = MaybeLastIndex();
  if (!last || i > *last || entries_.empty()) return std::nullopt;
  return entries_[i - offset_].term;
}

void Unstable::StableTo(Index i, raft::Term t) {
  // Only if the entry persisted is still the one we hold: it may have been
  // replaced by a conflicting append after the Ready was handed out.
  auto term = MaybeTerm(i);
  if (!term || *term != t || i < offset_) return;
  entries_.erase(entries_.begin(), entries_.begin() + (i + 1 - offset_));
  offset_ = i + 1;
}

void Unstable::StableSnapTo(Index i) {
  if (snapshot_ && snapshot_->index == i) snapshot_.reset();
}

void Unstable::Restore(const SnapshotMeta& s) {
  offset_ = s.index + 1;
  entries_.clear();
  snapshot_ = s;
}

void Unstable::TruncateAndAppend(const std::vector<Entry>& entries) {
  const Index after = entries.front().index;
  if (after == offset_ + entries_.size()) {
    entries_.insert(entries_.end(), entries.begin(), entries.end());
  } else if (after <= offset_) {
    // Replaces everything unstable; the driver will overwrite the stored
    // entries from `after` on when it persists this Ready.
    offset_ = after;
    entries_ = entries;
  } else {
    entries_.resize(after - offset_);
    entries_.insert(entries_.end(), entries.begin(), entries.end());
  }
}

std::vector<Entry> Unstable::Slice(Index lo, Index hi) const {
  RAFT_CHECK(lo >= offset_ && hi <= offset_ + entries_.size() && lo <= hi,
             "unstable slice out of bounds");
  return std::vector<Entry>(entries_.begin() + (lo - offset_), entries_.begin() + (hi - offset_));
}

// ----- RaftLog -----

RaftLog::RaftLog(const Storage* storage) : storage_(storage), unstable_(storage->LastIndex() + 1) {
  committed_ = storage->FirstIndex() - 1;
  applied_ = committed_;
}

Index RaftLog::FirstIndex() const {
  if (auto i = unstable_.MaybeFirstIndex()) return *i;
  return storage_->FirstIndex();
}

Index RaftLog::LastIndex() const {
  if (auto i = unstable_.MaybeLastIndex()) return *i;
  return storage_->LastIndex();
}

absl::StatusOr<raft::Term> RaftLog::Term(Index i) const {
  const Index dummy = FirstIndex() - 1;
  if (i < dummy) return CompactedError(i);
  if (i > LastIndex()) return UnavailableError(i);
  if (auto t = unstable_.MaybeTerm(i)) return *t;
  return storage_->Term(i);
}

raft::Term RaftLog::TermOrZero(Index i) const {
  auto t = Term(i);
  return t.ok() ? *t : 0;
}

raft::Term RaftLog::LastTerm() const {
  auto t = Term(LastIndex());
  RAFT_CHECK(t.ok(), "term of the last entry is unreadable");
  return *t;
}

bool RaftLog::MatchTerm(Index i, raft::Term t) const {
  auto term = Term(i);
  return term.ok() && *term == t;
}

bool RaftLog::IsUpToDate(Index index, raft::Term term) const {
  const raft::Term last_term = LastTerm();
  return term > last_term || (term == last_term && index >= LastIndex());
}

std::optional<Index> RaftLog::MaybeAppend(Index index, raft::Term log_term, Index committed,
                                          const std::vector<Entry>& entries) {
  if (!MatchTerm(index, log_term)) return std::nullopt;
  const Index last_new = index + entries.size();
  const Index conflict = FindConflict(entries);
  if (conflict != 0) {
    RAFT_CHECK(conflict > committed_, "entry conflicts with a committed entry");
    Append(std::vector<Entry>(entries.begin() + (conflict - index - 1), entries.end()));
  }
  // Only up to what this message proved we share with the leader: entries
  // beyond last_new may still be a stale suffix.
  CommitTo(std::min(committed, last_new));
  return last_new;
}

Index RaftLog::Append(const std::vector<Entry>& entries) {
  if (entries.empty()) return LastIndex();
  RAFT_CHECK(entries.front().index > committed_, "append would overwrite committed entries");
  unstable_.TruncateAndAppend(entries);
  return LastIndex();
}

Index RaftLog::FindConflict(const std::vector<Entry>& entries) const {
  for (const Entry& e : entries) {
    if (!MatchTerm(e.index, e.term)) return e.index;
  }
  return 0;
}

std::pair<Index, raft::Term> RaftLog::FindConflictByTerm(Index index, raft::Term term) const {
  index = std::min(index, LastIndex());
  for (; index > 0; --index) {
    auto t = Term(index);
    if (!t.ok()) return {index, 0};
    if (*t <= term) return {index, *t};
  }
  return {0, 0};
}

absl::StatusOr<std::vector<Entry>> RaftLog::Slice(Index lo, Index hi, uint64_t max_bytes) const {
  if (lo < FirstIndex()) return CompactedError(lo);
  RAFT_CHECK(lo <= hi && hi <= LastIndex() + 1, "log slice out of bounds");
  std::vector<Entry> out;
  if (lo == hi) return out;
  const Index offset = unstable_.offset();
  if (lo < offset) {
    const Index stored_hi = std::min(hi, offset);
    auto stored = storage_->Entries(lo, stored_hi, max_bytes);
    if (!stored.ok()) return stored.status();
    out = std::move(*stored);
    if (out.size() < stored_hi - lo) return out;  // hit the size limit
  }
  if (hi > offset) {
    uint64_t bytes = 0;
    for (const Entry& e : out) bytes += EntrySize(e);
    for (Entry& e : unstable_.Slice(std::max(lo, offset), hi)) {
      bytes += EntrySize(e);
      if (!out.empty() && bytes > max_bytes) break;
      out.push_back(std::move(e));
    }
  }
  return out;
}

absl::StatusOr<std::vector<Entry>> RaftLog::EntriesFrom(Index i, uint64_t max_bytes) const {
  if (i > LastIndex()) return std::vector<Entry>{};
  return Slice(i, LastIndex() + 1, max_bytes);
}

bool RaftLog::HasNextCommittedEnts() const {
  // A pending snapshot must be installed before anything after it applies.
  if (unstable_.snapshot()) return false;
  return committed_ + 1 > std::max(applied_ + 1, FirstIndex());
}

std::vector<Entry> RaftLog::NextCommittedEnts(uint64_t max_bytes) const {
  if (!HasNextCommittedEnts()) return {};
  const Index lo = std::max(applied_ + 1, FirstIndex());
  auto entries = Slice(lo, committed_ + 1, max_bytes);
  RAFT_CHECK(entries.ok(), "committed entries are unreadable from storage");
  return std::move(*entries);
}

absl::StatusOr<SnapshotMeta> RaftLog::Snapshot() const {
  if (unstable_.snapshot()) return *unstable_.snapshot();
  return storage_->Snapshot();
}

void RaftLog::CommitTo(Index i) {
  if (committed_ >= i) return;
  RAFT_CHECK(i <= LastIndex(), "commit index beyond the last index");
  committed_ = i;
}

bool RaftLog::MaybeCommit(Index max_index, raft::Term term) {
  if (max_index > committed_ && TermOrZero(max_index) == term) {
    CommitTo(max_index);
    return true;
  }
  return false;
}

void RaftLog::AppliedTo(Index i) {
  if (i == 0) return;
  RAFT_CHECK(i <= committed_ && i >= applied_, "applied index out of range");
  applied_ = i;
}

void RaftLog::Restore(const SnapshotMeta& s) {
  committed_ = s.index;
  unstable_.Restore(s);
}

}  // namespace mailgrid::raft
