#include "libs/kv/state_machine.h"

#include <algorithm>
#include <functional>
#include <map>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/arena.h"
#include "libs/base/status.h"
#include "libs/base/strings.h"
#include "libs/kv/keys.h"
#include "rocksdb/iterator.h"
#include "rocksdb/slice.h"

namespace mailgrid::kv {
namespace {

constexpr char kValueFormat = 0x01;
// Idempotency records dropped per applied entry at most; each entry adds at
// most one, so pruning keeps up while bounding the work of one apply.
constexpr int kPruneBatch = 8;

rocksdb::Slice S(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

std::string EncodeApplied(uint64_t index, uint64_t term) {
  std::string out = EncodeUint64(index);
  AppendUint64(&out, term);
  return out;
}

std::string RequestIdSuffix(const v1::RequestId& id) {
  std::string out;
  out.reserve(id.client_id().size() + 12);
  AppendString(&out, id.client_id());
  AppendUint64(&out, id.seq());
  return out;
}

bool HasRequestId(const v1::RequestId& id) { return !id.client_id().empty(); }

// The request ids of a batch entry's records, as its one expiry key holds
// them (RequestIdSuffix after RequestIdSuffix), one at a time.
absl::Status ForEachEntryId(std::string_view ids,
                            const std::function<absl::Status(std::string_view)>& fn) {
  KeyReader r(ids);
  while (!r.done()) {
    const std::string_view before = r.rest();
    if (!r.Str().ok() || !r.U64().ok()) return absl::DataLossError("meta: bad expiry record");
    RETURN_IF_ERROR(fn(before.substr(0, before.size() - r.rest().size())));
  }
  return absl::OkStatus();
}

v1::WriteResponse ConditionFailure(int i, const std::optional<VersionedValue>& current) {
  v1::WriteResponse resp;
  v1::ConditionFailed* f = resp.mutable_condition_failed();
  f->set_condition_index(static_cast<uint32_t>(i));
  f->set_exists(current.has_value());
  if (current.has_value()) {
    f->set_current_value(current->value);
    f->set_current_version(current->version);
  }
  return resp;
}

bool Holds(const v1::Condition& c, const std::optional<VersionedValue>& current) {
  switch (c.kind()) {
    case v1::Condition::MUST_EXIST:
      return current.has_value();
    case v1::Condition::MUST_NOT_EXIST:
      return !current.has_value();
    case v1::Condition::VALUE_EQUALS:
      return current.has_value() && current->value == c.value();
    case v1::Condition::VERSION_EQUALS:
      return (current.has_value() ? current->version : 0) == c.version();
    default:
      return false;  // unreachable after validation
  }
}

}  // namespace

namespace internal {

std::string EncodeValue(uint64_t version, std::string_view value) {
  std::string out(1, kValueFormat);
  AppendUint64(&out, version);
  out.append(value);
  return out;
}

absl::StatusOr<VersionedValue> DecodeValue(std::string_view stored) {
  if (stored.size() < 9 || stored[0] != kValueFormat) {
    return absl::DataLossError("stored value has an unknown format");
  }
  KeyReader r(stored.substr(1, 8));
  ASSIGN_OR_RETURN(uint64_t version, r.U64());
  return VersionedValue{std::string(stored.substr(9)), version};
}

absl::StatusOr<uint32_t> ParseFormat(std::string_view value) {
  uint32_t format = 0;
  if (!absl::SimpleAtoi(ToAbsl(value), &format) || format == 0) {
    return absl::DataLossError("data: bad state-machine format record");
  }
  return format;
}

std::string RequestRecordKey(const v1::RequestId& id) {
  // Built in place: one per write on every replica.
  std::string out;
  out.reserve(meta_keys::kSmRequest.size() + id.client_id().size() + 12);
  out.append(meta_keys::kSmRequest);
  AppendString(&out, id.client_id());
  AppendUint64(&out, id.seq());
  return out;
}

std::string SessionKey(std::string_view client_id) {
  std::string out;
  out.reserve(meta_keys::kSmSession.size() + client_id.size() + 2);
  out.append(meta_keys::kSmSession);
  AppendString(&out, client_id);
  return out;
}

// The effects of one ApplyBatch call before they are committed: the
// WriteBatch, and per key the last thing it did (a value; nullopt for a
// delete), so that later writes of the same call read them as if committed.
// Hash maps rather than WriteBatchWithIndex's skiplist index: this is on
// every write's path on every replica, and the index's inserts and lookups
// cost about as much as the RocksDB lookups themselves (issue 3 profile).
class PendingBatch {
 public:
  using Value = std::optional<std::string>;

  explicit PendingBatch(rocksdb::ColumnFamilyHandle* meta) : meta_(meta) {}

  absl::Status Put(rocksdb::ColumnFamilyHandle* cf, std::string_view key, std::string value) {
    RETURN_IF_ERROR(FromRocks(batch_.Put(cf, S(key), S(value)), "batch put"));
    Remember(cf, key, std::move(value));
    return absl::OkStatus();
  }
  absl::Status Delete(rocksdb::ColumnFamilyHandle* cf, std::string_view key) {
    RETURN_IF_ERROR(FromRocks(batch_.Delete(cf, S(key)), "batch delete"));
    Remember(cf, key, std::nullopt);
    return absl::OkStatus();
  }
  // Not readable back: ApplyBatch ends a call after the entry that has one.
  absl::Status DeleteRange(rocksdb::ColumnFamilyHandle* cf, std::string_view start,
                           std::string_view end) {
    return FromRocks(batch_.DeleteRange(cf, S(start), S(end)), "batch delete range");
  }
  // nullptr when this batch did not touch `key`.
  const Value* Find(rocksdb::ColumnFamilyHandle* cf, std::string_view key) const {
    const Map& m = cf == meta_ ? meta_map_ : data_map_;
    auto it = m.find(absl::string_view(key.data(), key.size()));
    return it == m.end() ? nullptr : &it->second;
  }
  // The expiry keys (meta) this batch wrote or deleted, in key order, for
  // PruneRecords to merge with the DB's.
  const std::map<std::string, Value, std::less<>>& expiry() const { return expiry_; }
  rocksdb::WriteBatch* batch() { return &batch_; }

  // Client sessions read or changed by this call, by key (nullopt: none /
  // deleted). Written into the batch once, by FlushSessions, however many
  // entries of the call touched them: one insert per session per call.
  struct CachedSession {
    std::optional<v1::ClientSession> session;
    bool dirty = false;
  };
  absl::flat_hash_map<std::string, CachedSession>& sessions() { return sessions_; }
  absl::Status FlushSessions() {
    for (auto& [key, cached] : sessions_) {
      if (!cached.dirty) continue;
      rocksdb::Status s = cached.session.has_value()
                              ? batch_.Put(meta_, S(key), cached.session->SerializeAsString())
                              : batch_.Delete(meta_, S(key));
      RETURN_IF_ERROR(FromRocks(s, "batch session"));
      cached.dirty = false;
    }
    return absl::OkStatus();
  }

 private:
  using Map = absl::flat_hash_map<std::string, Value>;

  void Remember(rocksdb::ColumnFamilyHandle* cf, std::string_view key, Value value) {
    if (cf == meta_ && key.starts_with(meta_keys::kSmRequestExpiry)) {
      expiry_.insert_or_assign(std::string(key), std::move(value));
      return;
    }
    Map& m = cf == meta_ ? meta_map_ : data_map_;
    m.insert_or_assign(std::string(key), std::move(value));
  }

  rocksdb::ColumnFamilyHandle* const meta_;
  rocksdb::WriteBatch batch_;
  Map data_map_;
  Map meta_map_;
  std::map<std::string, Value, std::less<>> expiry_;
  absl::flat_hash_map<std::string, CachedSession> sessions_;
};

}  // namespace internal

using internal::PendingBatch;

absl::StatusOr<std::unique_ptr<StateMachine>> StateMachine::Open(Engine* engine,
                                                                 StateMachineOptions options) {
  auto sm = std::unique_ptr<StateMachine>(new StateMachine(engine, options));
  RETURN_IF_ERROR(sm->LoadApplied());
  RETURN_IF_ERROR(sm->LoadFormat());
  return sm;
}

absl::StatusOr<AppliedState> ReadAppliedState(const Engine& engine, const rocksdb::Snapshot* at) {
  AppliedState state;
  rocksdb::ReadOptions ro;
  ro.snapshot = at;
  std::string raw;
  rocksdb::Status s = engine.db()->Get(ro, engine.meta(), S(meta_keys::kSmApplied), &raw);
  if (s.ok()) {
    KeyReader r(raw);
    absl::StatusOr<uint64_t> index = r.U64();
    absl::StatusOr<uint64_t> term = r.U64();
    if (!index.ok() || !term.ok()) return absl::DataLossError("meta: bad applied record");
    state.index = *index;
    state.term = *term;
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "read applied index");
  }
  s = engine.db()->Get(ro, engine.meta(), S(meta_keys::kSmConf), &raw);
  if (s.ok()) {
    if (!state.conf.ParseFromString(raw)) return absl::DataLossError("meta: bad conf record");
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "read conf state");
  }
  return state;
}

absl::Status StateMachine::LoadApplied() {
  ASSIGN_OR_RETURN(AppliedState state, ReadAppliedState(*engine_));
  absl::MutexLock lock(&mu_);
  applied_ = std::move(state);
  applied_index_.store(applied_.index, std::memory_order_release);
  return absl::OkStatus();
}

absl::Status StateMachine::LoadFormat() {
  absl::ReaderMutexLock data_lock(&engine_->data_mutex());
  ASSIGN_OR_RETURN(std::optional<VersionedValue> v, ReadData(engine_->data(), kFormatKey, nullptr));
  uint32_t format = 1;
  if (v.has_value()) {
    ASSIGN_OR_RETURN(format, internal::ParseFormat(v->value));
  }
  format_.store(format, std::memory_order_release);
  // Refuse to run rather than apply entries of a format we cannot read.
  return CheckCommittedFormat();
}

absl::Status StateMachine::CheckCommittedFormat() const {
  const uint32_t format = committed_format();
  if (format <= options_.max_format) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("the group's committed state-machine format is ", format,
                   "; this binary applies formats up to ", options_.max_format,
                   ": upgrade it (libs/kv README \"Formats\")"));
}

absl::Status StateMachine::CheckApplicable(uint64_t index, const v1::WriteRequest& request) const {
  uint32_t needed = std::max(request.min_format(), request.set_format());
  for (const v1::WriteRequest& write : request.batch()) {
    needed = std::max(needed, write.min_format());
  }
  if (needed <= options_.max_format) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("entry ", index, " needs state-machine format ", needed,
                   "; this binary applies formats up to ", options_.max_format,
                   ": not applied; upgrade this replica (libs/kv README \"Formats\")"));
}

AppliedState StateMachine::applied() const {
  absl::MutexLock lock(&mu_);
  return applied_;
}

absl::Status StateMachine::CheckNext(uint64_t index) const {
  uint64_t applied = applied_index();
  if (index != applied + 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("apply out of order: entry ", index, " after applied ", applied));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<VersionedValue>> StateMachine::ReadData(
    rocksdb::ColumnFamilyHandle* data, std::string_view key, PendingBatch* pending) const {
  if (const PendingBatch::Value* v = pending != nullptr ? pending->Find(data, key) : nullptr) {
    if (!v->has_value()) return std::optional<VersionedValue>();
    ASSIGN_OR_RETURN(VersionedValue decoded, internal::DecodeValue(**v));
    return std::optional<VersionedValue>(std::move(decoded));
  }
  rocksdb::PinnableSlice raw;
  rocksdb::Status s = engine_->db()->Get(rocksdb::ReadOptions(), data, S(key), &raw);
  if (s.IsNotFound()) return std::optional<VersionedValue>();
  if (!s.ok()) return FromRocks(s, "read data");
  ASSIGN_OR_RETURN(VersionedValue v, internal::DecodeValue(raw.ToStringView()));
  return std::optional<VersionedValue>(std::move(v));
}

absl::StatusOr<std::optional<v1::WriteResponse>> StateMachine::ReadRecord(
    const std::string& record_key, PendingBatch* pending) const {
  rocksdb::PinnableSlice raw;
  std::string_view stored;
  if (const PendingBatch::Value* v =
          pending != nullptr ? pending->Find(engine_->meta(), record_key) : nullptr) {
    if (!v->has_value()) return std::optional<v1::WriteResponse>();
    stored = **v;
  } else {
    rocksdb::Status s =
        engine_->db()->Get(rocksdb::ReadOptions(), engine_->meta(), record_key, &raw);
    if (s.IsNotFound()) return std::optional<v1::WriteResponse>();
    if (!s.ok()) return FromRocks(s, "read idempotency record");
    stored = raw.ToStringView();
  }
  v1::IdempotencyRecord record;
  if (!record.ParseFromArray(stored.data(), static_cast<int>(stored.size()))) {
    return absl::DataLossError("meta: bad idempotency record");
  }
  return std::optional<v1::WriteResponse>(std::move(*record.mutable_response()));
}

absl::StatusOr<std::optional<v1::ClientSession>> StateMachine::ReadSession(
    std::string_view session_key) const {
  rocksdb::PinnableSlice raw;
  rocksdb::Status s =
      engine_->db()->Get(rocksdb::ReadOptions(), engine_->meta(), S(session_key), &raw);
  if (s.IsNotFound()) return std::optional<v1::ClientSession>();
  if (!s.ok()) return FromRocks(s, "read client session");
  v1::ClientSession session;
  if (!session.ParseFromArray(raw.data(), static_cast<int>(raw.size()))) {
    return absl::DataLossError("meta: bad client session");
  }
  return std::optional<v1::ClientSession>(std::move(session));
}

namespace {

// A session write's id (validation also requires its min_format).
bool IsSessionId(const v1::RequestId& id) {
  return id.first_unacked() != 0 && !id.client_id().empty();
}

// The outcome kept for `seq` (ascending outcomes), or nullptr.
const v1::ClientSession::Outcome* FindOutcome(const v1::ClientSession& session, uint64_t seq) {
  auto it =
      std::lower_bound(session.outcomes().begin(), session.outcomes().end(), seq,
                       [](const v1::ClientSession::Outcome& o, uint64_t s) { return o.seq() < s; });
  return it != session.outcomes().end() && it->seq() == seq ? &*it : nullptr;
}

}  // namespace

absl::StatusOr<std::optional<v1::WriteResponse>> StateMachine::FindSessionOutcome(
    const v1::RequestId& id) const {
  ASSIGN_OR_RETURN(std::optional<v1::ClientSession> session,
                   ReadSession(internal::SessionKey(id.client_id())));
  const v1::ClientSession::Outcome* o =
      session.has_value() ? FindOutcome(*session, id.seq()) : nullptr;
  if (o == nullptr) return std::optional<v1::WriteResponse>();
  return std::optional<v1::WriteResponse>(o->response());
}

absl::StatusOr<v1::WriteResponse> StateMachine::ApplySessionWrite(uint64_t index,
                                                                  const v1::WriteRequest& request,
                                                                  PendingBatch* batch,
                                                                  uint32_t format) {
  const v1::RequestId& id = request.request_id();
  std::string key = internal::SessionKey(id.client_id());
  auto [it, inserted] = batch->sessions().try_emplace(std::move(key));
  PendingBatch::CachedSession& cached = it->second;
  if (inserted) {
    ASSIGN_OR_RETURN(cached.session, ReadSession(it->first));
  }
  if (!cached.session.has_value()) cached.session.emplace();
  cached.dirty = true;
  v1::ClientSession& session = *cached.session;

  v1::WriteResponse resp;
  if (const v1::ClientSession::Outcome* o = FindOutcome(session, id.seq())) {
    // A retry of a write applied earlier (possibly in this very entry).
    resp = o->response();
    resp.set_replayed(true);
  } else if (id.seq() < session.floor()) {
    // Below the floor the client promised never to send it again: a stale
    // duplicate. Its outcome was answered and forgotten; never apply twice.
    resp.mutable_rejected()->set_reason(
        absl::StrCat("request ", id.seq(), " is below its session's floor ", session.floor(),
                     ": already answered, not applied again"));
    resp.set_applied_index(index);
  } else {
    {
      absl::ReaderMutexLock data_lock(&engine_->data_mutex());
      ASSIGN_OR_RETURN(resp, Evaluate(engine_->data(), index, request, batch));
    }
    resp.set_applied_index(index);
    auto* outcomes = session.mutable_outcomes();
    v1::ClientSession::Outcome* o = outcomes->Add();
    o->set_seq(id.seq());
    *o->mutable_response() = resp;
    // Kept ascending; seqs mostly arrive in order, so this rarely moves.
    for (int i = outcomes->size() - 1; i > 0 && outcomes->Get(i - 1).seq() > id.seq(); --i) {
      outcomes->SwapElements(i - 1, i);
    }
  }
  // Forget what the client has had answered, and bound what is kept.
  session.set_floor(std::max(session.floor(), id.first_unacked()));
  auto* outcomes = session.mutable_outcomes();
  int below = 0;
  while (below < outcomes->size() && outcomes->Get(below).seq() < session.floor()) ++below;
  const bool bounded = outcomes->size() - below > kMaxSessionOutcomes;
  if (bounded) below = outcomes->size() - kMaxSessionOutcomes;
  if (below > 0) {
    const uint64_t last_dropped = outcomes->Get(below - 1).seq();
    outcomes->DeleteSubrange(0, below);
    if (format >= kSessionFloorFormat) {
      // Dropped by the bound: the floor moves past them (never applied
      // twice), and no further: a lower seq still unapplied stays allowed.
      if (bounded) session.set_floor(std::max(session.floor(), last_dropped + 1));
    } else if (!outcomes->empty()) {
      // Format 2, kept so that every replica of a format-2 group applies
      // alike: past the first outcome kept, even when nothing was bounded,
      // which rejects a lower seq applied after a higher one (README).
      session.set_floor(std::max(session.floor(), outcomes->Get(0).seq()));
    }
  }
  session.set_last_index(index);
  return resp;
}

absl::Status StateMachine::SweepSessions(uint64_t index, PendingBatch* batch) {
  if (options_.session_sweep_interval == 0 || index % options_.session_sweep_interval != 0 ||
      index <= options_.idempotency_window) {
    return absl::OkStatus();
  }
  const uint64_t cutoff = index - options_.idempotency_window;  // idle since <= cutoff: expired
  auto expired = [cutoff](const v1::ClientSession& s) { return s.last_index() <= cutoff; };
  std::string lower(meta_keys::kSmSession);
  std::string upper = lower;
  upper.back() = static_cast<char>(upper.back() + 1);
  rocksdb::Slice lower_slice(lower), upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_lower_bound = &lower_slice;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(engine_->db()->NewIterator(ro, engine_->meta()));
  std::vector<std::string> drop;
  for (it->Seek(lower_slice); it->Valid(); it->Next()) {
    const std::string_view k = it->key().ToStringView();
    if (batch->sessions().contains(absl::string_view(k.data(), k.size()))) continue;  // below
    v1::ClientSession s;
    if (!s.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError("meta: bad client session");
    }
    if (expired(s)) drop.emplace_back(k);
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scan client sessions"));
  for (std::string& k : drop) {
    batch->sessions()[std::move(k)] = PendingBatch::CachedSession{std::nullopt, true};
  }
  for (auto& [k, cached] : batch->sessions()) {
    if (cached.session.has_value() && expired(*cached.session)) {
      cached.session.reset();
      cached.dirty = true;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::WriteResponse> StateMachine::Evaluate(rocksdb::ColumnFamilyHandle* data,
                                                         uint64_t index,
                                                         const v1::WriteRequest& request,
                                                         PendingBatch* batch) {
  // Every condition sees the state before this entry (including the earlier
  // entries of the same batch): this entry's own writes are added only after.
  for (int i = 0; i < request.conditions_size(); ++i) {
    const v1::Condition& c = request.conditions(i);
    ASSIGN_OR_RETURN(std::optional<VersionedValue> current, ReadData(data, c.key(), batch));
    if (!Holds(c, current)) return ConditionFailure(i, current);
  }
  for (const v1::Op& op : request.ops()) {
    switch (op.op_case()) {
      case v1::Op::kPut:
        RETURN_IF_ERROR(
            batch->Put(data, op.put().key(), internal::EncodeValue(index, op.put().value())));
        break;
      case v1::Op::kDelete:
        RETURN_IF_ERROR(batch->Delete(data, op.delete_().key()));
        break;
      case v1::Op::kDeleteRange: {
        // [start, end) as `start` and [KeyAfter(start), end): the range
        // tombstone must start at a key ending in '\0' (engine.h says why).
        // A PendingBatch cannot read a range deletion back, so it goes into
        // the batch unindexed. Safe because ApplyBatch
        // ends the batch with this entry: no later read of `data` needs it.
        const v1::DeleteRange& range = op.delete_range();
        RETURN_IF_ERROR(batch->Delete(data, range.start()));
        const std::string after = KeyAfter(range.start());
        if (after < range.end()) RETURN_IF_ERROR(batch->DeleteRange(data, after, range.end()));
        break;
      }
      case v1::Op::OP_NOT_SET:
        break;  // unreachable after validation
    }
  }
  v1::WriteResponse resp;
  resp.mutable_ok();
  return resp;
}

absl::Status StateMachine::PruneRecords(uint64_t index, PendingBatch* batch, std::string* cursor) {
  if (index <= options_.idempotency_window) return absl::OkStatus();
  // Records written at index <= cutoff have expired.
  uint64_t cutoff = index - options_.idempotency_window;
  std::string lower = std::max(*cursor, std::string(meta_keys::kSmRequestExpiry));
  std::string upper = absl::StrCat(ToAbsl(meta_keys::kSmRequestExpiry), EncodeUint64(cutoff + 1));
  if (lower >= upper) return absl::OkStatus();
  rocksdb::Slice lower_slice(lower), upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_lower_bound = &lower_slice;
  ro.iterate_upper_bound = &upper_slice;
  // The DB's expiry keys merged with this batch's own (a small window can
  // expire entries applied earlier in the same call; keys pruned earlier in
  // the call are below the cursor or marked deleted), so a call sees exactly
  // what separate applies would.
  std::unique_ptr<rocksdb::Iterator> it(engine_->db()->NewIterator(ro, engine_->meta()));
  auto mine = batch->expiry().lower_bound(lower);
  const auto mine_end = batch->expiry().lower_bound(upper);
  std::vector<std::pair<std::string, std::string>> expired;  // expiry key, value
  it->Seek(lower_slice);
  while (expired.size() < kPruneBatch && (it->Valid() || mine != mine_end)) {
    const int c = !it->Valid()       ? 1
                  : mine == mine_end ? -1
                                     : it->key().ToStringView().compare(mine->first);
    if (c < 0) {
      expired.emplace_back(it->key().ToString(), it->value().ToString());
      it->Next();
      continue;
    }
    if (mine->second.has_value()) expired.emplace_back(mine->first, *mine->second);
    if (c == 0) it->Next();
    ++mine;
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scan idempotency expiry"));
  it.reset();
  auto drop_record = [&](std::string_view suffix) {
    return batch->Delete(engine_->meta(),
                         absl::StrCat(ToAbsl(meta_keys::kSmRequest), ToAbsl(suffix)));
  };
  for (const auto& [exp_key, ids] : expired) {
    // A plain write's key: prefix + 8-byte index + its request id; a batch
    // entry's: prefix + 8-byte index, its writes' ids in the value.
    std::string_view suffix =
        std::string_view(exp_key).substr(meta_keys::kSmRequestExpiry.size() + 8);
    RETURN_IF_ERROR(batch->Delete(engine_->meta(), exp_key));
    RETURN_IF_ERROR(suffix.empty() ? ForEachEntryId(ids, drop_record) : drop_record(suffix));
    *cursor = Successor(exp_key);
  }
  return absl::OkStatus();
}

absl::Status StateMachine::Commit(uint64_t index, uint64_t term, const v1::ConfState* conf,
                                  rocksdb::WriteBatch* batch) {
  batch->Put(engine_->meta(), S(meta_keys::kSmApplied), EncodeApplied(index, term));
  if (conf != nullptr)
    batch->Put(engine_->meta(), S(meta_keys::kSmConf), conf->SerializeAsString());
  // Not synced: see the header. A crash loses at most applies that the raft
  // log replays.
  RETURN_IF_ERROR(engine_->Write(batch, /*sync=*/false));
  absl::MutexLock lock(&mu_);
  applied_.index = index;
  applied_.term = term;
  if (conf != nullptr) applied_.conf = *conf;
  applied_index_.store(index, std::memory_order_release);
  return absl::OkStatus();
}

absl::StatusOr<v1::WriteResponse> StateMachine::Recorded(uint64_t index,
                                                         const v1::WriteRequest& request) const {
  std::optional<v1::WriteResponse> recorded;
  if (IsSessionId(request.request_id())) {
    ASSIGN_OR_RETURN(recorded, FindSessionOutcome(request.request_id()));
  } else if (HasRequestId(request.request_id())) {
    ASSIGN_OR_RETURN(recorded,
                     ReadRecord(internal::RequestRecordKey(request.request_id()), nullptr));
  }
  v1::WriteResponse resp = recorded.value_or(v1::WriteResponse());
  if (!recorded.has_value()) resp.set_applied_index(index);
  resp.set_replayed(true);
  return resp;
}

absl::StatusOr<v1::WriteResponse> StateMachine::Apply(uint64_t index, uint64_t term,
                                                      std::string_view command) {
  if (index <= applied_index()) {
    // Re-delivered entry: report what it did if we still know.
    v1::WriteRequest request;
    bool parsed = command.size() <= kMaxWriteRequestBytes &&
                  request.ParseFromArray(command.data(), static_cast<int>(command.size()));
    if (parsed && IsBatch(request)) {
      v1::WriteResponse resp;
      resp.set_applied_index(index);
      resp.set_replayed(true);
      for (const v1::WriteRequest& write : request.batch()) {
        ASSIGN_OR_RETURN(*resp.add_batch(), Recorded(index, write));
      }
      return resp;
    }
    if (!parsed) request.Clear();
    return Recorded(index, request);
  }
  const ApplyInput in{index, term, ApplyInput::Kind::kCommand, command};
  ASSIGN_OR_RETURN(std::vector<v1::WriteResponse> out, ApplyBatch({&in, 1}));
  return std::move(out.front());
}

absl::StatusOr<v1::WriteResponse> StateMachine::ApplyWrite(uint64_t index,
                                                           const v1::WriteRequest& request,
                                                           const absl::Status& valid,
                                                           PendingBatch* batch,
                                                           std::string* entry_ids,
                                                           uint32_t format) {
  // A valid session write (validation checked its min_format and the
  // group's committed format): one record per client, not per write.
  if (valid.ok() && IsSessionId(request.request_id())) {
    return ApplySessionWrite(index, request, batch, format);
  }
  std::string record_key;
  if (HasRequestId(request.request_id())) {
    record_key = internal::RequestRecordKey(request.request_id());
    ASSIGN_OR_RETURN(std::optional<v1::WriteResponse> recorded, ReadRecord(record_key, batch));
    if (recorded.has_value()) {
      // A retry of a request applied at an earlier index (possibly earlier
      // in this batch, or in this very entry): same outcome, nothing applied
      // again.
      recorded->set_replayed(true);
      return *std::move(recorded);
    }
  }

  v1::WriteResponse resp;
  if (valid.ok()) {
    absl::ReaderMutexLock data_lock(&engine_->data_mutex());
    ASSIGN_OR_RETURN(resp, Evaluate(engine_->data(), index, request, batch));
  } else {
    resp.mutable_rejected()->set_reason(std::string(valid.message()));
  }
  resp.set_applied_index(index);

  if (!record_key.empty()) {
    // Swapped in and out rather than copied: the record is resp, wrapped.
    v1::IdempotencyRecord record;
    record.mutable_response()->Swap(&resp);
    std::string serialized = record.SerializeAsString();
    resp.Swap(record.mutable_response());
    RETURN_IF_ERROR(batch->Put(engine_->meta(), record_key, std::move(serialized)));
    if (entry_ids != nullptr) {
      entry_ids->append(std::string_view(record_key).substr(meta_keys::kSmRequest.size()));
    } else {
      RETURN_IF_ERROR(
          batch->Put(engine_->meta(),
                     absl::StrCat(ToAbsl(meta_keys::kSmRequestExpiry), EncodeUint64(index),
                                  RequestIdSuffix(request.request_id())),
                     std::string()));
    }
  }
  return resp;
}

namespace {

// An entry of a format the group has not committed: rejected, identically on
// every replica (the leader should not have emitted it).
absl::Status CheckCommitted(uint32_t min_format, uint32_t committed) {
  if (min_format <= committed) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("needs state-machine format ", min_format,
                                                    "; the group has committed ", committed,
                                                    " (mailctl raft set-format)"));
}

}  // namespace

absl::StatusOr<v1::WriteResponse> StateMachine::ApplyCommand(uint64_t index,
                                                             const v1::WriteRequest& request,
                                                             bool parsed, PendingBatch* batch,
                                                             std::string* prune_cursor,
                                                             uint32_t* format) {
  v1::WriteResponse resp;
  if (!parsed) {
    v1::WriteRequest empty;
    ASSIGN_OR_RETURN(
        resp, ApplyWrite(index, empty, absl::InvalidArgumentError("command is not a WriteRequest"),
                         batch, nullptr, *format));
  } else if (!IsBatch(request)) {
    absl::Status valid = ValidateWriteRequest(request);
    if (valid.ok()) valid = CheckCommitted(request.min_format(), *format);
    if (valid.ok() && request.set_format() != 0) {
      // Never lowers: an old or repeated SetFormat is a no-op.
      if (request.set_format() > *format) {
        absl::ReaderMutexLock data_lock(&engine_->data_mutex());
        RETURN_IF_ERROR(
            batch->Put(engine_->data(), kFormatKey,
                       internal::EncodeValue(index, std::to_string(request.set_format()))));
        *format = request.set_format();
      }
      resp.mutable_ok();
      resp.set_applied_index(index);
    } else {
      ASSIGN_OR_RETURN(resp, ApplyWrite(index, request, valid, batch, nullptr, *format));
      if (*format >= kSessionFloorFormat) resp.set_sessions(true);
    }
  } else if (absl::Status shape = ValidateBatchShape(request); !shape.ok()) {
    resp.mutable_rejected()->set_reason(std::string(shape.message()));
    resp.set_applied_index(index);
  } else if (absl::Status committed = CheckCommitted(request.min_format(), *format);
             !committed.ok()) {
    resp.mutable_rejected()->set_reason(std::string(committed.message()));
    resp.set_applied_index(index);
  } else {
    // One WriteMany call: each write as if it were its own entry at this
    // index (its own record, conditions that see the writes before it).
    resp.mutable_ok();
    resp.set_applied_index(index);
    resp.mutable_batch()->Reserve(request.batch_size());
    // One expiry key for the entry's records instead of one per write.
    std::string ids;
    for (const v1::WriteRequest& write : request.batch()) {
      absl::Status valid = ValidateBatchedWrite(write);
      if (valid.ok()) valid = CheckCommitted(write.min_format(), *format);
      v1::WriteResponse& one = *resp.add_batch();
      ASSIGN_OR_RETURN(one, ApplyWrite(index, write, valid, batch, &ids, *format));
      if (*format >= kSessionFloorFormat) one.set_sessions(true);
    }
    if (!ids.empty()) {
      RETURN_IF_ERROR(batch->Put(
          engine_->meta(), absl::StrCat(ToAbsl(meta_keys::kSmRequestExpiry), EncodeUint64(index)),
          std::move(ids)));
    }
  }
  RETURN_IF_ERROR(PruneRecords(index, batch, prune_cursor));
  return resp;
}

absl::StatusOr<std::vector<v1::WriteResponse>> StateMachine::ApplyBatch(
    std::span<const ApplyInput> entries) {
  std::vector<v1::WriteResponse> out;
  if (entries.empty()) return out;
  // A snapshot of a newer format may have been installed: apply nothing.
  RETURN_IF_ERROR(CheckCommittedFormat());
  PendingBatch batch(engine_->meta());
  // The entries' requests live on one arena per call: a batch entry parses
  // into hundreds of messages and strings, freed at once.
  google::protobuf::Arena arena;
  // Adopted only once the batch is committed (its deletes are in it).
  std::string cursor = prune_cursor_;
  uint32_t format = committed_format();  // adopted with the commit, like the cursor
  const uint64_t applied = applied_index();
  out.reserve(entries.size());
  for (const ApplyInput& in : entries) {
    const uint64_t expected = applied + out.size() + 1;
    if (in.index != expected) {
      if (!out.empty()) break;  // apply what is in order; the caller sees the count
      return absl::FailedPreconditionError(
          absl::StrCat("apply out of order: entry ", in.index, " after applied ", applied));
    }
    if (in.kind == ApplyInput::Kind::kNoop) {
      v1::WriteResponse& resp = out.emplace_back();
      resp.set_applied_index(in.index);
      RETURN_IF_ERROR(SweepSessions(in.index, &batch));
      continue;
    }
    v1::WriteRequest& request = *google::protobuf::Arena::CreateMessage<v1::WriteRequest>(&arena);
    const bool parsed =
        in.command.size() <= kMaxWriteRequestBytes &&
        request.ParseFromArray(in.command.data(), static_cast<int>(in.command.size()));
    // A range deletion cannot be read back through the batch's index (see
    // Evaluate), so an entry with one is the last of its batch, and starts a
    // new one unless it is first.
    const bool has_range =
        parsed && std::any_of(request.ops().begin(), request.ops().end(),
                              [](const v1::Op& op) { return op.has_delete_range(); });
    if (has_range && !out.empty()) break;
    if (parsed) {
      // An entry of a newer format than this binary applies: stop before
      // it (the entries before it still apply), never misapply it.
      absl::Status applicable = CheckApplicable(in.index, request);
      if (!applicable.ok()) {
        if (!out.empty()) break;
        return applicable;
      }
    }
    ASSIGN_OR_RETURN(v1::WriteResponse resp,
                     ApplyCommand(in.index, request, parsed, &batch, &cursor, &format));
    out.push_back(std::move(resp));
    RETURN_IF_ERROR(SweepSessions(in.index, &batch));
    if (has_range) break;
  }
  RETURN_IF_ERROR(batch.FlushSessions());
  const ApplyInput& last = entries[out.size() - 1];
  RETURN_IF_ERROR(Commit(last.index, last.term, nullptr, batch.batch()));
  prune_cursor_ = std::move(cursor);
  format_.store(format, std::memory_order_release);
  return out;
}

absl::Status StateMachine::ApplyNoop(uint64_t index, uint64_t term) {
  if (index <= applied_index()) return absl::OkStatus();
  const ApplyInput in{index, term, ApplyInput::Kind::kNoop, {}};
  return ApplyBatch({&in, 1}).status();
}

absl::Status StateMachine::ApplyConfState(uint64_t index, uint64_t term,
                                          const v1::ConfState& conf) {
  if (index <= applied_index()) return absl::OkStatus();
  RETURN_IF_ERROR(CheckNext(index));
  rocksdb::WriteBatch batch;
  return Commit(index, term, &conf, &batch);
}

absl::StatusOr<VersionedValue> StateMachine::Get(std::string_view key) const {
  absl::ReaderMutexLock data_lock(&engine_->data_mutex());
  ASSIGN_OR_RETURN(std::optional<VersionedValue> v, ReadData(engine_->data(), key, nullptr));
  if (!v.has_value()) return absl::NotFoundError("key not found");
  return *std::move(v);
}

absl::StatusOr<ScanResult> StateMachine::Scan(const ScanOptions& options) const {
  ScanResult result;
  result.applied_index = applied_index();
  if (!options.end.empty() && options.start >= options.end) return result;
  absl::ReaderMutexLock data_lock(&engine_->data_mutex());
  rocksdb::Slice lower(options.start), upper(options.end);
  rocksdb::ReadOptions ro;  // an iterator reads one implicit snapshot
  ro.iterate_lower_bound = &lower;
  if (!options.end.empty()) ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(engine_->db()->NewIterator(ro, engine_->data()));
  if (options.reverse) {
    it->SeekToLast();
  } else {
    it->Seek(lower);
  }
  size_t bytes = 0;
  for (; it->Valid(); options.reverse ? it->Prev() : it->Next()) {
    if (result.entries.size() >= options.limit ||
        (bytes >= options.max_bytes && !result.entries.empty())) {
      // Another entry exists: the caller must come back for it.
      const std::string& last = result.entries.back().key();
      result.continuation = options.reverse ? last : Successor(last);
      break;
    }
    ASSIGN_OR_RETURN(VersionedValue v, internal::DecodeValue(it->value().ToStringView()));
    v1::KeyValue& kv = result.entries.emplace_back();
    kv.set_key(it->key().data(), it->key().size());
    kv.set_version(v.version);
    if (!options.keys_only) kv.set_value(std::move(v.value));
    bytes += kv.key().size() + kv.value().size();
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scan"));
  return result;
}

absl::StatusOr<std::optional<v1::WriteResponse>> StateMachine::FindRecordedOutcome(
    const v1::RequestId& id) const {
  if (!HasRequestId(id)) return std::optional<v1::WriteResponse>();
  if (IsSessionId(id)) return FindSessionOutcome(id);
  return ReadRecord(internal::RequestRecordKey(id), nullptr);
}

}  // namespace mailgrid::kv
