#include "libs/kv/state_machine.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
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
  AppendString(&out, id.client_id());
  AppendUint64(&out, id.seq());
  return out;
}

bool HasRequestId(const v1::RequestId& id) { return !id.client_id().empty(); }

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

std::string RequestRecordKey(const v1::RequestId& id) {
  return absl::StrCat(ToAbsl(meta_keys::kSmRequest), RequestIdSuffix(id));
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<StateMachine>> StateMachine::Open(Engine* engine,
                                                                 StateMachineOptions options) {
  auto sm = std::unique_ptr<StateMachine>(new StateMachine(engine, options));
  RETURN_IF_ERROR(sm->LoadApplied());
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
    rocksdb::ColumnFamilyHandle* data, std::string_view key) const {
  rocksdb::PinnableSlice raw;
  rocksdb::Status s = engine_->db()->Get(rocksdb::ReadOptions(), data, S(key), &raw);
  if (s.IsNotFound()) return std::optional<VersionedValue>();
  if (!s.ok()) return FromRocks(s, "read data");
  ASSIGN_OR_RETURN(VersionedValue v, internal::DecodeValue(raw.ToStringView()));
  return std::optional<VersionedValue>(std::move(v));
}

absl::StatusOr<std::optional<v1::WriteResponse>> StateMachine::ReadRecord(
    const std::string& record_key) const {
  std::string raw;
  rocksdb::Status s = engine_->db()->Get(rocksdb::ReadOptions(), engine_->meta(), record_key, &raw);
  if (s.IsNotFound()) return std::optional<v1::WriteResponse>();
  if (!s.ok()) return FromRocks(s, "read idempotency record");
  v1::IdempotencyRecord record;
  if (!record.ParseFromString(raw)) return absl::DataLossError("meta: bad idempotency record");
  return std::optional<v1::WriteResponse>(std::move(*record.mutable_response()));
}

absl::StatusOr<v1::WriteResponse> StateMachine::Evaluate(rocksdb::ColumnFamilyHandle* data,
                                                         uint64_t index,
                                                         const v1::WriteRequest& request,
                                                         rocksdb::WriteBatch* batch) {
  // Every condition sees the state before this entry: nothing is written
  // until the batch commits.
  for (int i = 0; i < request.conditions_size(); ++i) {
    const v1::Condition& c = request.conditions(i);
    ASSIGN_OR_RETURN(std::optional<VersionedValue> current, ReadData(data, c.key()));
    if (!Holds(c, current)) return ConditionFailure(i, current);
  }
  for (const v1::Op& op : request.ops()) {
    switch (op.op_case()) {
      case v1::Op::kPut:
        batch->Put(data, op.put().key(), internal::EncodeValue(index, op.put().value()));
        break;
      case v1::Op::kDelete:
        batch->Delete(data, op.delete_().key());
        break;
      case v1::Op::kDeleteRange:
        batch->DeleteRange(data, op.delete_range().start(), op.delete_range().end());
        break;
      case v1::Op::OP_NOT_SET:
        break;  // unreachable after validation
    }
  }
  v1::WriteResponse resp;
  resp.mutable_ok();
  return resp;
}

absl::StatusOr<std::string> StateMachine::PruneRecords(uint64_t index, rocksdb::WriteBatch* batch) {
  if (index <= options_.idempotency_window) return prune_cursor_;
  // Records written at index <= cutoff have expired.
  uint64_t cutoff = index - options_.idempotency_window;
  std::string lower = std::max(prune_cursor_, std::string(meta_keys::kSmRequestExpiry));
  std::string upper = absl::StrCat(ToAbsl(meta_keys::kSmRequestExpiry), EncodeUint64(cutoff + 1));
  if (lower >= upper) return prune_cursor_;
  rocksdb::Slice lower_slice(lower), upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_lower_bound = &lower_slice;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(engine_->db()->NewIterator(ro, engine_->meta()));
  std::string cursor = prune_cursor_;
  int pruned = 0;
  for (it->Seek(lower_slice); it->Valid() && pruned < kPruneBatch; it->Next(), ++pruned) {
    std::string_view exp_key = it->key().ToStringView();
    // exp key = prefix + 8-byte index + request id suffix.
    std::string_view suffix = exp_key.substr(meta_keys::kSmRequestExpiry.size() + 8);
    batch->Delete(engine_->meta(), S(exp_key));
    batch->Delete(engine_->meta(), absl::StrCat(ToAbsl(meta_keys::kSmRequest), ToAbsl(suffix)));
    cursor = Successor(exp_key);
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scan idempotency expiry"));
  return cursor;
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

absl::StatusOr<v1::WriteResponse> StateMachine::Apply(uint64_t index, uint64_t term,
                                                      std::string_view command) {
  v1::WriteRequest request;
  bool parsed = command.size() <= kMaxWriteRequestBytes &&
                request.ParseFromArray(command.data(), static_cast<int>(command.size()));
  std::string record_key;
  if (parsed && HasRequestId(request.request_id())) {
    record_key = internal::RequestRecordKey(request.request_id());
  }

  if (index <= applied_index()) {
    // Re-delivered entry: report what it did if we still know.
    std::optional<v1::WriteResponse> recorded;
    if (!record_key.empty()) {
      ASSIGN_OR_RETURN(recorded, ReadRecord(record_key));
    }
    v1::WriteResponse resp = recorded.value_or(v1::WriteResponse());
    if (!recorded.has_value()) resp.set_applied_index(index);
    resp.set_replayed(true);
    return resp;
  }
  RETURN_IF_ERROR(CheckNext(index));

  rocksdb::WriteBatch batch;
  v1::WriteResponse resp;
  if (!record_key.empty()) {
    ASSIGN_OR_RETURN(std::optional<v1::WriteResponse> recorded, ReadRecord(record_key));
    if (recorded.has_value()) {
      // A retry of a request applied at an earlier index: same outcome,
      // nothing applied again.
      RETURN_IF_ERROR(Commit(index, term, nullptr, &batch));
      recorded->set_replayed(true);
      return *std::move(recorded);
    }
  }

  {
    absl::ReaderMutexLock data_lock(&engine_->data_mutex());
    absl::Status valid = parsed ? ValidateWriteRequest(request)
                                : absl::InvalidArgumentError("command is not a WriteRequest");
    if (valid.ok()) {
      ASSIGN_OR_RETURN(resp, Evaluate(engine_->data(), index, request, &batch));
    } else {
      resp.mutable_rejected()->set_reason(std::string(valid.message()));
    }
  }
  resp.set_applied_index(index);

  if (!record_key.empty()) {
    v1::IdempotencyRecord record;
    *record.mutable_response() = resp;
    batch.Put(engine_->meta(), record_key, record.SerializeAsString());
    batch.Put(engine_->meta(),
              absl::StrCat(ToAbsl(meta_keys::kSmRequestExpiry), EncodeUint64(index),
                           RequestIdSuffix(request.request_id())),
              rocksdb::Slice());
  }
  ASSIGN_OR_RETURN(std::string cursor, PruneRecords(index, &batch));
  RETURN_IF_ERROR(Commit(index, term, nullptr, &batch));
  prune_cursor_ = std::move(cursor);  // only once the deletes are committed
  return resp;
}

absl::Status StateMachine::ApplyNoop(uint64_t index, uint64_t term) {
  if (index <= applied_index()) return absl::OkStatus();
  RETURN_IF_ERROR(CheckNext(index));
  rocksdb::WriteBatch batch;
  return Commit(index, term, nullptr, &batch);
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
  ASSIGN_OR_RETURN(std::optional<VersionedValue> v, ReadData(engine_->data(), key));
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
  return ReadRecord(internal::RequestRecordKey(id));
}

}  // namespace mailgrid::kv
