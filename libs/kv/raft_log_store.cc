#include "libs/kv/raft_log_store.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/kv/checksum.h"
#include "libs/kv/keys.h"
#include "libs/kv/state_machine.h"
#include "rocksdb/iterator.h"

namespace mailgrid::kv {
namespace {

constexpr std::string_view kLogCompacted = "log/compacted";
constexpr size_t kEntryHeader = 4 + 8 + 1;  // crc, term, type

rocksdb::Slice S(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

uint32_t EntryCrc(std::string_view key, std::string_view body) {
  return Crc32cExtend(Crc32c(key), body);
}

std::string EncodeHardState(const raft::HardState& hs) {
  std::string out = EncodeUint64(hs.term);
  AppendUint64(&out, hs.vote);
  AppendUint64(&out, hs.commit);
  return out;
}

std::string EncodeSnapshotMeta(const raft::SnapshotMeta& m) {
  std::string out = EncodeUint64(m.index);
  AppendUint64(&out, m.term);
  out += ToProto(m.conf).SerializeAsString();
  return out;
}

std::string EncodePoint(raft::Index index, raft::Term term) {
  std::string out = EncodeUint64(index);
  AppendUint64(&out, term);
  return out;
}

// Reads an optional meta record; *found says whether it exists.
absl::Status GetMeta(const Engine& engine, std::string_view key, std::string* value, bool* found) {
  rocksdb::Status s = engine.db()->Get(rocksdb::ReadOptions(), engine.meta(), S(key), value);
  *found = s.ok();
  if (s.IsNotFound()) return absl::OkStatus();
  return FromRocks(s, "read raft meta");
}

absl::StatusOr<uint64_t> IndexFromKey(std::string_view key) {
  KeyReader r(key);
  ASSIGN_OR_RETURN(uint64_t index, r.U64());
  if (!r.done()) return absl::DataLossError("raft log: malformed key");
  return index;
}

}  // namespace

v1::ConfState ToProto(const raft::ConfState& conf) {
  v1::ConfState out;
  for (raft::NodeId id : conf.voters) out.add_voters(id);
  for (raft::NodeId id : conf.learners) out.add_learners(id);
  return out;
}

raft::ConfState FromProto(const v1::ConfState& conf) {
  raft::ConfState out;
  out.voters.assign(conf.voters().begin(), conf.voters().end());
  out.learners.assign(conf.learners().begin(), conf.learners().end());
  std::sort(out.voters.begin(), out.voters.end());
  std::sort(out.learners.begin(), out.learners.end());
  return out;
}

namespace internal {

std::string EncodeLogEntry(const raft::Entry& e) {
  std::string body = EncodeUint64(e.term);
  body.push_back(static_cast<char>(e.type));
  body += e.data;
  uint32_t crc = EntryCrc(EncodeUint64(e.index), body);
  std::string out;
  out.reserve(4 + body.size());
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((crc >> shift) & 0xFF));
  out += body;
  return out;
}

absl::StatusOr<raft::Entry> DecodeLogEntry(raft::Index index, std::string_view value) {
  if (value.size() < kEntryHeader) {
    return absl::DataLossError(absl::StrCat("raft log: entry ", index, " truncated"));
  }
  uint32_t stored = 0;
  for (int i = 0; i < 4; ++i) stored = (stored << 8) | static_cast<uint8_t>(value[i]);
  std::string_view body = value.substr(4);
  if (EntryCrc(EncodeUint64(index), body) != stored) {
    return absl::DataLossError(absl::StrCat("raft log: entry ", index, " checksum mismatch"));
  }
  KeyReader r(body);
  ASSIGN_OR_RETURN(uint64_t term, r.U64());
  uint8_t type = static_cast<uint8_t>(body[8]);
  if (type > static_cast<uint8_t>(raft::Entry::Type::kNoop)) {
    return absl::DataLossError(absl::StrCat("raft log: entry ", index, " has unknown type"));
  }
  return raft::Entry{term, index, static_cast<raft::Entry::Type>(type),
                     std::string(body.substr(9))};
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<RaftLogStore>> RaftLogStore::Open(Engine* engine,
                                                                 RaftLogStoreOptions options) {
  auto store = std::unique_ptr<RaftLogStore>(new RaftLogStore(engine, options));
  RETURN_IF_ERROR(store->Load());
  RETURN_IF_ERROR(store->Reconcile());
  return store;
}

absl::Status RaftLogStore::Load() {
  View view;
  std::string raw;
  bool found = false;
  RETURN_IF_ERROR(GetMeta(*engine_, meta_keys::kLogHardState, &raw, &found));
  if (found) {
    KeyReader r(raw);
    auto term = r.U64(), vote = r.U64(), commit = r.U64();
    if (!term.ok() || !vote.ok() || !commit.ok())
      return absl::DataLossError("raft: bad hard state");
    view.hard_state = raft::HardState{*term, *vote, *commit};
  }
  RETURN_IF_ERROR(GetMeta(*engine_, meta_keys::kLogSnapshot, &raw, &found));
  if (found) {
    KeyReader r(raw);
    auto index = r.U64(), term = r.U64();
    v1::ConfState conf;
    if (!index.ok() || !term.ok() || !conf.ParseFromArray(r.rest().data(), r.rest().size())) {
      return absl::DataLossError("raft: bad snapshot record");
    }
    view.snapshot = raft::SnapshotMeta{*index, *term, FromProto(conf)};
  }
  RETURN_IF_ERROR(GetMeta(*engine_, kLogCompacted, &raw, &found));
  if (found) {
    KeyReader r(raw);
    auto index = r.U64(), term = r.U64();
    if (!index.ok() || !term.ok()) return absl::DataLossError("raft: bad compaction record");
    view.compacted = Point{*index, *term};
  }
  view.last = view.compacted.index;
  std::unique_ptr<rocksdb::Iterator> it(
      engine_->db()->NewIterator(rocksdb::ReadOptions(), engine_->raft_log()));
  it->SeekToLast();
  if (it->Valid()) {
    ASSIGN_OR_RETURN(uint64_t last, IndexFromKey(it->key().ToStringView()));
    view.last = std::max(view.last, last);
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "raft log: seek last"));
  absl::MutexLock lock(&mu_);
  view_ = std::move(view);
  return absl::OkStatus();
}

absl::Status RaftLogStore::Reconcile() {
  ASSIGN_OR_RETURN(AppliedState applied, ReadAppliedState(*engine_));
  View view;
  {
    absl::ReaderMutexLock lock(&mu_);
    view = view_;
  }
  if (applied.index > 0 && applied.index < view.compacted.index) {
    return absl::DataLossError(absl::StrCat("raft log compacted to ", view.compacted.index,
                                            " but the state machine is only at ", applied.index));
  }
  if (applied.index > view.compacted.index) {
    bool in_log = false;
    if (applied.index <= view.last) {
      // A damaged entry here is an error, not a reason to discard the log.
      ASSIGN_OR_RETURN(raft::Entry e, ReadEntry(applied.index));
      in_log = e.term == applied.term;
    }
    if (!in_log) {
      log::Warn("kv: finishing an interrupted snapshot install",
                {{"applied_index", applied.index}, {"log_last", view.last}});
      RETURN_IF_ERROR(
          ApplySnapshot(raft::SnapshotMeta{applied.index, applied.term, FromProto(applied.conf)}));
    }
  }
  // What the state machine applied was committed; a term it saw was reached.
  raft::HardState hs = hard_state();
  if (hs.commit < applied.index || hs.term < applied.term) {
    hs.commit = std::max(hs.commit, applied.index);
    hs.term = std::max(hs.term, applied.term);
    RETURN_IF_ERROR(Save(std::nullopt, {}, hs));
  }
  return absl::OkStatus();
}

raft::HardState RaftLogStore::hard_state() const {
  absl::ReaderMutexLock lock(&mu_);
  return view_.hard_state;
}

absl::StatusOr<raft::InitialState> RaftLogStore::GetInitialState() const {
  ASSIGN_OR_RETURN(AppliedState applied, ReadAppliedState(*engine_));
  absl::ReaderMutexLock lock(&mu_);
  raft::InitialState out;
  out.hard_state = view_.hard_state;
  out.conf_state = applied.index > 0 ? FromProto(applied.conf) : view_.snapshot.conf;
  return out;
}

raft::Index RaftLogStore::FirstIndex() const {
  absl::ReaderMutexLock lock(&mu_);
  return view_.compacted.index + 1;
}

raft::Index RaftLogStore::LastIndex() const {
  absl::ReaderMutexLock lock(&mu_);
  return view_.last;
}

absl::StatusOr<raft::SnapshotMeta> RaftLogStore::Snapshot() const {
  absl::ReaderMutexLock lock(&mu_);
  return view_.snapshot;
}

absl::StatusOr<raft::Entry> RaftLogStore::ReadEntry(raft::Index i) const {
  std::string value;
  rocksdb::Status s =
      engine_->db()->Get(rocksdb::ReadOptions(), engine_->raft_log(), EncodeUint64(i), &value);
  if (s.IsNotFound()) {
    if (i <= FirstIndex() - 1) return raft::CompactedError(i);  // raced a compaction
    return absl::DataLossError(absl::StrCat("raft log: entry ", i, " missing"));
  }
  RETURN_IF_ERROR(FromRocks(s, "raft log: read"));
  return internal::DecodeLogEntry(i, value);
}

absl::StatusOr<std::vector<raft::Entry>> RaftLogStore::ReadRange(raft::Index lo, raft::Index hi,
                                                                 uint64_t max_bytes,
                                                                 uint64_t* bytes) const {
  std::vector<raft::Entry> out;
  std::string lower = EncodeUint64(lo), upper = EncodeUint64(hi);
  rocksdb::Slice lower_slice(lower), upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_lower_bound = &lower_slice;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(engine_->db()->NewIterator(ro, engine_->raft_log()));
  raft::Index want = lo;
  for (it->Seek(lower_slice); it->Valid() && want < hi; it->Next(), ++want) {
    ASSIGN_OR_RETURN(uint64_t index, IndexFromKey(it->key().ToStringView()));
    if (index != want) break;  // a hole: reported below
    ASSIGN_OR_RETURN(raft::Entry e, internal::DecodeLogEntry(index, it->value().ToStringView()));
    *bytes += raft::EntrySize(e);
    if (!out.empty() && *bytes > max_bytes) return out;
    out.push_back(std::move(e));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "raft log: scan"));
  if (want < hi) {
    if (want <= FirstIndex() - 1) return raft::CompactedError(want);  // raced a compaction
    return absl::DataLossError(absl::StrCat("raft log: entry ", want, " missing"));
  }
  return out;
}

absl::StatusOr<std::vector<raft::Entry>> RaftLogStore::Entries(raft::Index lo, raft::Index hi,
                                                               uint64_t max_bytes) const {
  raft::Index cache_first;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (lo <= view_.compacted.index) return raft::CompactedError(lo);
    if (hi > view_.last + 1) return raft::UnavailableError(hi - 1);
    if (lo >= hi) return std::vector<raft::Entry>();
    cache_first = cache_.empty() ? view_.last + 1 : cache_.front().index;
    if (lo >= cache_first) {
      std::vector<raft::Entry> out;
      uint64_t bytes = 0;
      for (raft::Index i = lo; i < hi; ++i) {
        const raft::Entry& e = cache_[i - cache_first];
        bytes += raft::EntrySize(e);
        if (!out.empty() && bytes > max_bytes) break;
        out.push_back(e);
      }
      return out;
    }
  }
  // Older entries come from RocksDB (checksummed); the rest, if the byte
  // budget allows, from a second call that hits the cache.
  uint64_t bytes = 0;
  raft::Index db_hi = std::min(hi, cache_first);
  ASSIGN_OR_RETURN(std::vector<raft::Entry> out, ReadRange(lo, db_hi, max_bytes, &bytes));
  if (out.size() < db_hi - lo || db_hi == hi || bytes >= max_bytes) return out;
  absl::StatusOr<std::vector<raft::Entry>> rest = Entries(db_hi, hi, max_bytes - bytes);
  if (!rest.ok()) return out;  // the log moved under us: the prefix is still valid
  for (raft::Entry& e : *rest) {
    bytes += raft::EntrySize(e);
    if (bytes > max_bytes) break;
    out.push_back(std::move(e));
  }
  return out;
}

std::optional<absl::StatusOr<raft::Term>> RaftLogStore::TermInMemory(raft::Index i) const {
  if (i < view_.compacted.index) return raft::CompactedError(i);
  if (i == view_.compacted.index) return view_.compacted.term;
  if (i > view_.last) return raft::UnavailableError(i);
  if (!cache_.empty() && i >= cache_.front().index) return cache_[i - cache_.front().index].term;
  return std::nullopt;  // stored, not cached
}

absl::StatusOr<raft::Term> RaftLogStore::Term(raft::Index i) const {
  {
    absl::ReaderMutexLock lock(&mu_);
    std::optional<absl::StatusOr<raft::Term>> t = TermInMemory(i);
    if (t.has_value()) return *std::move(t);
  }
  ASSIGN_OR_RETURN(raft::Entry e, ReadEntry(i));
  return e.term;
}

absl::Status RaftLogStore::Save(const std::optional<raft::SnapshotMeta>& snapshot,
                                const std::vector<raft::Entry>& entries,
                                const std::optional<raft::HardState>& hard_state) {
  absl::MutexLock write_lock(&write_mu_);
  View view;
  {
    absl::ReaderMutexLock lock(&mu_);
    view = view_;
  }
  rocksdb::WriteBatch batch;
  rocksdb::ColumnFamilyHandle* log_cf = engine_->raft_log();
  rocksdb::ColumnFamilyHandle* meta_cf = engine_->meta();

  if (snapshot.has_value()) {
    if (view.snapshot.index != 0 && snapshot->index <= view.snapshot.index) {
      return absl::FailedPreconditionError(absl::StrCat("raft log: snapshot at ", snapshot->index,
                                                        " not newer than ", view.snapshot.index));
    }
    // The snapshot replaces the whole log.
    if (view.last > view.compacted.index) {
      batch.DeleteRange(log_cf, EncodeUint64(view.compacted.index + 1),
                        EncodeUint64(view.last + 1));
    }
    view.snapshot = *snapshot;
    view.compacted = Point{snapshot->index, snapshot->term};
    view.last = snapshot->index;
    batch.Put(meta_cf, S(meta_keys::kLogSnapshot), EncodeSnapshotMeta(view.snapshot));
    batch.Put(meta_cf, S(kLogCompacted), EncodePoint(snapshot->index, snapshot->term));
  }

  size_t skip = entries.size();  // entries[skip..] are written
  if (!entries.empty() && entries.back().index > view.compacted.index) {
    if (entries[0].index > view.last + 1) {
      return absl::InvalidArgumentError(absl::StrCat("raft log: append at ", entries[0].index,
                                                     " leaves a gap after ", view.last));
    }
    for (size_t i = 1; i < entries.size(); ++i) {
      if (entries[i].index != entries[i - 1].index + 1) {
        return absl::InvalidArgumentError("raft log: entries are not consecutive");
      }
    }
    skip =
        entries[0].index <= view.compacted.index ? view.compacted.index + 1 - entries[0].index : 0;
    for (size_t i = skip; i < entries.size(); ++i) {
      batch.Put(log_cf, EncodeUint64(entries[i].index), internal::EncodeLogEntry(entries[i]));
    }
    // A conflicting suffix beyond the new entries goes too.
    raft::Index new_last = entries.back().index;
    if (view.last > new_last) {
      batch.DeleteRange(log_cf, EncodeUint64(new_last + 1), EncodeUint64(view.last + 1));
    }
    view.last = new_last;
  }
  if (hard_state.has_value()) {
    view.hard_state = *hard_state;
    batch.Put(meta_cf, S(meta_keys::kLogHardState), EncodeHardState(*hard_state));
  }
  if (batch.Count() == 0) return absl::OkStatus();

  // One fsync for the whole Ready: group commit.
  RETURN_IF_ERROR(engine_->Write(&batch, /*sync=*/true));

  absl::MutexLock lock(&mu_);
  view_ = std::move(view);
  if (snapshot.has_value()) {
    cache_.clear();
    cache_bytes_ = 0;
  }
  if (skip < entries.size()) AddToCache(entries, skip);
  return absl::OkStatus();
}

void RaftLogStore::AddToCache(const std::vector<raft::Entry>& entries, size_t skip) {
  const raft::Index start = entries[skip].index;
  while (!cache_.empty() && cache_.back().index >= start) {
    cache_bytes_ -= raft::EntrySize(cache_.back());
    cache_.pop_back();
  }
  if (!cache_.empty() && cache_.back().index + 1 != start) {
    cache_.clear();  // not contiguous (cannot happen after a successful Save)
    cache_bytes_ = 0;
  }
  for (size_t i = skip; i < entries.size(); ++i) {
    cache_.push_back(entries[i]);
    cache_bytes_ += raft::EntrySize(entries[i]);
  }
  while (!cache_.empty() &&
         (cache_.size() > options_.cache_entries || cache_bytes_ > options_.cache_bytes)) {
    cache_bytes_ -= raft::EntrySize(cache_.front());
    cache_.pop_front();
  }
}

absl::StatusOr<raft::SnapshotMeta> RaftLogStore::CreateSnapshot(raft::Index index,
                                                                const raft::ConfState& conf) {
  absl::MutexLock write_lock(&write_mu_);
  raft::SnapshotMeta meta;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (index <= view_.snapshot.index) {
      return absl::FailedPreconditionError(
          absl::StrCat("raft log: snapshot at ", index, " not newer than ", view_.snapshot.index));
    }
    if (index > view_.last) return raft::UnavailableError(index);
  }
  ASSIGN_OR_RETURN(raft::Term term, Term(index));
  meta = raft::SnapshotMeta{index, term, conf};
  rocksdb::WriteBatch batch;
  batch.Put(engine_->meta(), S(meta_keys::kLogSnapshot), EncodeSnapshotMeta(meta));
  RETURN_IF_ERROR(engine_->Write(&batch, /*sync=*/true));
  absl::MutexLock lock(&mu_);
  view_.snapshot = meta;
  return meta;
}

absl::Status RaftLogStore::Compact(raft::Index index) {
  absl::MutexLock write_lock(&write_mu_);
  View view;
  {
    absl::ReaderMutexLock lock(&mu_);
    view = view_;
  }
  if (index <= view.compacted.index) return raft::CompactedError(index);
  if (index > view.snapshot.index) {
    return absl::FailedPreconditionError(
        absl::StrCat("raft log: compact to ", index, " beyond snapshot ", view.snapshot.index));
  }
  ASSIGN_OR_RETURN(raft::Term term, Term(index));
  rocksdb::WriteBatch batch;
  batch.DeleteRange(engine_->raft_log(), EncodeUint64(view.compacted.index + 1),
                    EncodeUint64(index + 1));
  batch.Put(engine_->meta(), S(kLogCompacted), EncodePoint(index, term));
  // Synced: this also makes every apply before it durable, so the state
  // machine can never be behind a log that no longer has its entries.
  RETURN_IF_ERROR(engine_->Write(&batch, /*sync=*/true));
  absl::MutexLock lock(&mu_);
  view_.compacted = Point{index, term};
  while (!cache_.empty() && cache_.front().index <= index) {
    cache_bytes_ -= raft::EntrySize(cache_.front());
    cache_.pop_front();
  }
  return absl::OkStatus();
}

uint64_t RaftLogStore::ApproximateBytes(raft::Index lo, raft::Index hi) const {
  if (hi < lo) return 0;
  const std::string start = EncodeUint64(lo);
  const std::string limit = EncodeUint64(hi + 1);
  rocksdb::Range range(start, limit);
  rocksdb::SizeApproximationOptions options;
  options.include_memtables = true;
  options.include_files = true;
  uint64_t bytes = 0;
  rocksdb::Status s =
      engine_->db()->GetApproximateSizes(options, engine_->raft_log(), &range, 1, &bytes);
  return s.ok() ? bytes : 0;
}

absl::Status RaftLogStore::Bootstrap(const std::vector<raft::NodeId>& voters) {
  {
    absl::ReaderMutexLock lock(&mu_);
    if (view_.last != 0 || view_.hard_state.term != 0) {
      return absl::FailedPreconditionError("raft log: bootstrap of a non-empty log");
    }
  }
  if (voters.empty()) return absl::InvalidArgumentError("raft log: bootstrap with no voters");
  std::vector<raft::Entry> entries = raft::BootstrapEntries(voters);
  raft::HardState hs{1, raft::kNoNode, entries.back().index};
  return Save(std::nullopt, entries, hs);
}

}  // namespace mailgrid::kv
