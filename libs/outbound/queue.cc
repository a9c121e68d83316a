#include "libs/outbound/queue.h"

#include <openssl/rand.h>
#include <zstd.h>

#include <algorithm>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libs/base/status.h"
#include "libs/kv/keys.h"
#include "libs/kv/requests.h"
#include "libs/outbound/time_util.h"

namespace mailgrid::outbound {
namespace {

constexpr size_t kBodyChunk = 512 << 10;
constexpr int kMaxConflictRetries = 16;
// Chunks of a compressed body have this bit set in their index, so a body
// read knows from the keys alone (which only this file writes, unlike the
// bytes, which a sender chooses) whether to decompress.
constexpr uint64_t kCompressedChunk = uint64_t{1} << 63;
// Below this a body is stored as is: the saving would not pay for the call.
constexpr size_t kMinCompressBytes = 1024;

namespace keys {
std::string Entry(std::string_view id) {
  return kv::KeyBuilder(kv::GlobalPrefix("outq")).Str(id).Build();
}
std::string BodyPrefix(std::string_view id) {
  return kv::KeyBuilder(kv::GlobalPrefix("outq_body")).Str(id).Build();
}
std::string BodyChunk(std::string_view id, uint64_t i) {
  return kv::KeyBuilder(BodyPrefix(id)).U64(i).Build();
}
std::string DuePrefix() { return kv::GlobalPrefix("outq_due"); }
std::string Due(absl::Time at, std::string_view id) {
  return kv::KeyBuilder(DuePrefix()).I64(absl::ToUnixMicros(at)).Str(id).Build();
}
}  // namespace keys

std::string NewQueueId(absl::Time now) {
  uint32_t random = 0;
  RAND_bytes(reinterpret_cast<unsigned char*>(&random), sizeof(random));
  return absl::StrFormat("%016x%08x", static_cast<uint64_t>(absl::ToUnixMicros(now)), random);
}

bool IsFinal(relay::v1::RecipientState s) {
  return s == relay::v1::RECIPIENT_STATE_DELIVERED || s == relay::v1::RECIPIENT_STATE_BOUNCED ||
         s == relay::v1::RECIPIENT_STATE_DROPPED;
}

bool AllFinal(const QueueEntry& e) {
  return std::all_of(e.recipients().begin(), e.recipients().end(),
                     [](const QueueRecipient& r) { return IsFinal(r.state()); });
}

void AddPut(kv::v1::WriteRequest* w, std::string key, std::string value) {
  auto* put = w->add_ops()->mutable_put();
  put->set_key(std::move(key));
  put->set_value(std::move(value));
}
void AddDelete(kv::v1::WriteRequest* w, std::string key) {
  w->add_ops()->mutable_delete_()->set_key(std::move(key));
}

// The body as stored: zstd level 1 (~10-20 us for 5 KB) when that saves at
// least an eighth. Every stored byte is written to the Raft log and the
// state machine on each of three replicas, sent twice to the followers and
// compacted later; the queue keeps it only until delivery. Returns "" to
// store the body as is.
std::string CompressBody(const std::string& body) {
  if (body.size() < kMinCompressBytes) return "";
  thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(),
                                                                         ZSTD_freeCCtx);
  if (cctx == nullptr) return "";
  std::string out(ZSTD_compressBound(body.size()), '\0');
  size_t n = ZSTD_compressCCtx(cctx.get(), out.data(), out.size(), body.data(), body.size(), 1);
  if (ZSTD_isError(n) || n > body.size() - body.size() / 8) return "";
  out.resize(n);
  return out;
}

absl::StatusOr<std::string> DecompressBody(const std::string& stored) {
  unsigned long long size = ZSTD_getFrameContentSize(stored.data(), stored.size());
  if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR ||
      size > kv::kMaxWriteRequestBytes) {
    return absl::DataLossError("queue body: bad zstd frame");
  }
  std::string out(size, '\0');
  size_t n = ZSTD_decompress(out.data(), out.size(), stored.data(), stored.size());
  if (ZSTD_isError(n) || n != size) return absl::DataLossError("queue body: zstd");
  return out;
}

// The body's chunks are deleted one key each, not by a DeleteRange: the
// record knows its size, so the chunk keys are known, and a write without a
// DeleteRange may be coalesced by the kv client with other writes into one
// Raft entry (WriteMany: a batched write may not hold a DeleteRange). Every
// completion used to be its own Raft round for that reason alone. A range
// tombstone per message also made every later read of the store consult it
// until compaction.
void AddBodyDeletes(kv::v1::WriteRequest* w, const QueueEntry& entry) {
  const std::string& id = entry.queue_id();
  if (entry.size_bytes() == 0) {  // not written by EnqueueImpl: delete whatever is there
    std::string prefix = keys::BodyPrefix(id);
    auto* range = w->add_ops()->mutable_delete_range();
    range->set_start(prefix);
    range->set_end(kv::PrefixEnd(prefix));
    return;
  }
  const bool compressed = entry.body_stored_bytes() > 0;
  const uint64_t stored = compressed ? entry.body_stored_bytes() : entry.size_bytes();
  for (uint64_t i = 0; i * kBodyChunk < stored; ++i) {
    AddDelete(w, keys::BodyChunk(id, compressed ? (i | kCompressedChunk) : i));
  }
}

std::string HeaderValue(std::string_view message, std::string_view name) {
  // Only for display: first occurrence, unfolded, in the header block.
  size_t pos = 0;
  while (pos < message.size()) {
    size_t eol = message.find('\n', pos);
    if (eol == std::string_view::npos) eol = message.size();
    std::string_view line = message.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;
    if (line.size() > name.size() && line[name.size()] == ':' &&
        absl::EqualsIgnoreCase(ToAbslView(line.substr(0, name.size())), ToAbslView(name))) {
      std::string value(absl::StripAsciiWhitespace(ToAbslView(line.substr(name.size() + 1))));
      size_t next = eol + 1;
      while (next < message.size() && (message[next] == ' ' || message[next] == '\t')) {
        size_t e2 = message.find('\n', next);
        if (e2 == std::string_view::npos) e2 = message.size();
        std::string_view cont = message.substr(next, e2 - next);
        if (!cont.empty() && cont.back() == '\r') cont.remove_suffix(1);
        absl::StrAppend(&value, " ", absl::StripAsciiWhitespace(ToAbslView(cont)));
        next = e2 + 1;
      }
      return value.substr(0, 998);
    }
    pos = eol + 1;
  }
  return "";
}

}  // namespace

void ClampDue(QueueEntry* entry, absl::Time now) {
  for (auto& r : *entry->mutable_recipients()) {
    if (IsFinal(r.state())) continue;
    if (FromProto(r.next_attempt_at()) < now) ToProto(now, r.mutable_next_attempt_at());
  }
}

absl::Duration BackoffAfter(const RetryPolicy& policy, uint32_t attempts) {
  absl::Duration d = policy.initial_backoff;
  for (uint32_t i = 1; i < attempts && d < policy.max_backoff; ++i) d *= 2;
  return std::min(d, policy.max_backoff);
}

std::string DomainOf(std::string_view address) {
  size_t at = address.rfind('@');
  if (at == std::string_view::npos) return "";
  return absl::AsciiStrToLower(ToAbslView(address.substr(at + 1)));
}

std::optional<absl::Time> ScheduleTime(const QueueEntry& entry) {
  if (!entry.hold_reason().empty()) return std::nullopt;
  if (!entry.lease_holder().empty()) return FromProto(entry.lease_expires_at());
  std::optional<absl::Time> earliest;
  for (const auto& r : entry.recipients()) {
    if (IsFinal(r.state())) continue;
    absl::Time t = FromProto(r.next_attempt_at());
    if (!earliest || t < *earliest) earliest = t;
  }
  return earliest;
}

void DeriveState(QueueEntry* entry, absl::Time now) {
  using relay::v1::QueueState;
  QueueState state = relay::v1::QUEUE_STATE_QUEUED;
  bool deferred = std::any_of(
      entry->recipients().begin(), entry->recipients().end(),
      [](const QueueRecipient& r) { return r.state() == relay::v1::RECIPIENT_STATE_DEFERRED; });
  if (AllFinal(*entry)) {
    state = relay::v1::QUEUE_STATE_DONE;
  } else if (!entry->hold_reason().empty()) {
    state = relay::v1::QUEUE_STATE_HELD;
  } else if (!entry->lease_holder().empty() && FromProto(entry->lease_expires_at()) > now) {
    state = relay::v1::QUEUE_STATE_ACTIVE;
  } else if (deferred) {
    state = relay::v1::QUEUE_STATE_DEFERRED;
  }
  entry->set_state(state);
}

absl::StatusOr<std::string> Queue::Enqueue(const NewMessage& message, absl::Time now) {
  return EnqueueImpl(message, "", now, nullptr);
}

absl::StatusOr<Lease> Queue::EnqueueLeased(const NewMessage& message, std::string_view holder,
                                           absl::Time now) {
  if (holder.empty()) return absl::InvalidArgumentError("holder: EMPTY");
  if (!message.hold_reason.empty()) return absl::InvalidArgumentError("a held entry is not leased");
  Lease lease;
  ASSIGN_OR_RETURN(std::string id, EnqueueImpl(message, holder, now, &lease));
  (void)id;
  return lease;
}

absl::StatusOr<std::string> Queue::EnqueueImpl(const NewMessage& message, std::string_view holder,
                                               absl::Time now, Lease* lease) {
  if (message.recipients.empty()) return absl::InvalidArgumentError("recipients: EMPTY");
  if (message.body.empty()) return absl::InvalidArgumentError("body: EMPTY");
  if (message.body.size() > kv::kMaxWriteRequestBytes - (1 << 20)) {
    return absl::InvalidArgumentError("body: TOO_LARGE");
  }
  QueueEntry entry;
  entry.set_queue_id(NewQueueId(now));
  entry.set_tenant_id(message.tenant_id);
  entry.set_envelope_from(message.envelope_from);
  entry.set_size_bytes(message.body.size());
  entry.set_subject(HeaderValue(message.body, "Subject"));
  entry.set_message_id(HeaderValue(message.body, "Message-ID"));
  ToProto(now, entry.mutable_created_at());
  ToProto(now + options_.retry.lifetime, entry.mutable_expires_at());
  entry.set_hold_reason(message.hold_reason);
  // Grouped by destination domain: sorted by (domain, address), duplicates dropped.
  std::vector<std::pair<std::string, std::string>> rcpts;
  for (const auto& r : message.recipients) {
    std::string domain = DomainOf(r);
    if (domain.empty())
      return absl::InvalidArgumentError(absl::StrCat("recipients: BAD_ADDRESS ", r));
    rcpts.emplace_back(std::move(domain), r);
  }
  std::sort(rcpts.begin(), rcpts.end());
  rcpts.erase(std::unique(rcpts.begin(), rcpts.end()), rcpts.end());
  for (auto& [domain, address] : rcpts) {
    QueueRecipient* r = entry.add_recipients();
    r->set_address(address);
    r->set_domain(domain);
    r->set_state(relay::v1::RECIPIENT_STATE_PENDING);
    ToProto(now, r->mutable_next_attempt_at());
  }
  absl::Time lease_expires;
  if (!holder.empty()) {
    entry.set_lease_holder(std::string(holder));
    lease_expires = absl::FromUnixMicros(absl::ToUnixMicros(now + options_.lease_duration));
    ToProto(lease_expires, entry.mutable_lease_expires_at());
  }
  kv::v1::WriteRequest w;
  auto* cond = w.add_conditions();
  cond->set_key(keys::Entry(entry.queue_id()));
  cond->set_kind(kv::v1::Condition::MUST_NOT_EXIST);
  std::string compressed = CompressBody(message.body);
  const std::string& stored = compressed.empty() ? message.body : compressed;
  const uint64_t chunk_bit = compressed.empty() ? 0 : kCompressedChunk;
  entry.set_body_stored_bytes(compressed.size());
  AddPut(&w, keys::Entry(entry.queue_id()), entry.SerializeAsString());
  for (uint64_t i = 0; i * kBodyChunk < stored.size(); ++i) {
    AddPut(&w, keys::BodyChunk(entry.queue_id(), i | chunk_bit),
           stored.substr(i * kBodyChunk, kBodyChunk));
  }
  if (auto due = ScheduleTime(entry)) AddPut(&w, keys::Due(*due, entry.queue_id()), "");
  kv::v1::WriteRequest alone;
  std::vector<Rider*> riders;
  if (options_.completion_ride_wait > absl::ZeroDuration()) {
    alone = w;
    riders = TakeRiders(&w);
  }
  absl::StatusOr<kv::v1::WriteResponse> response = store_->Write(w, Deadline());
  Count("enqueue");
  if (!riders.empty()) {
    bool committed = response.ok() && response->has_ok();
    FinishRiders(riders, committed);
    if (committed) {
      for (size_t i = 0; i < riders.size(); ++i) Count("carried");
    }
    // A rider's version check failed (an operator wrote that entry
    // meanwhile): the message is written again alone, and each rider
    // writes itself (and merges) on its own.
    if (response.ok() && response->has_condition_failed()) {
      response = store_->Write(alone, Deadline());
      Count("enqueue");
    }
  }
  RETURN_IF_ERROR(response.status());
  if (!response->has_ok()) return absl::InternalError("queue id collision or rejected write");
  if (lease != nullptr) {
    lease->queue_id = entry.queue_id();
    lease->holder = std::string(holder);
    lease->expires_at = lease_expires;
    lease->version = response->applied_index();
    lease->entry = entry;
  }
  return entry.queue_id();
}

absl::StatusOr<std::vector<std::string>> Queue::DueIds(absl::Time now, size_t limit) {
  std::optional<absl::Time> floor;
  {
    absl::MutexLock lock(&scan_mu_);
    // Full scan: first time, every full_due_scan_every, or when the caller's
    // clock went backwards (tests drive time by hand).
    bool full = !scan_floor_ || now < last_scan_now_ ||
                now - last_full_scan_ >= options_.full_due_scan_every;
    if (full) {
      last_full_scan_ = now;
    } else {
      floor = scan_floor_;
    }
    last_scan_now_ = now;
  }
  // A STALE read: candidates only. TryLease re-reads the record
  // (linearizable) and leases it with a version-checked write, so a lagging
  // answer costs at most a failed lease or a pick-up one scan later. A
  // linearizable scan would cost a ReadIndex round to the followers each time.
  ASSIGN_OR_RETURN(std::vector<DueKey> due, ScanDue(floor, now, limit, kv::v1::STALE));
  std::vector<std::string> ids;
  std::optional<absl::Time> first;
  for (DueKey& key : due) {
    if (!first) first = key.due;
    ids.push_back(std::move(key.queue_id));
  }
  // Below the first key found there are only tombstones (or nothing); keys
  // written from now on are >= now - margin. Found keys stay above the
  // floor until they move (a lease that fails is retried next scan).
  absl::Time next = now - options_.due_scan_margin;
  if (first) next = std::min(next, *first);
  absl::MutexLock lock(&scan_mu_);
  if (!floor || !scan_floor_ || *scan_floor_ <= next) scan_floor_ = next;
  return ids;
}

absl::StatusOr<std::vector<Queue::DueKey>> Queue::DueKeysFromLeader(absl::Time now,
                                                                   size_t limit) {
  return ScanDue(std::nullopt, now, limit, kv::v1::LINEARIZABLE);
}

absl::StatusOr<std::vector<Queue::DueKey>> Queue::ScanDue(std::optional<absl::Time> floor,
                                                          absl::Time now, size_t limit,
                                                          kv::v1::ReadConsistency consistency) {
  kv::v1::ScanRequest scan;
  scan.mutable_key_range()->set_start(
      floor ? kv::KeyBuilder(keys::DuePrefix()).I64(absl::ToUnixMicros(*floor)).Build()
            : keys::DuePrefix());
  // Every due key at or before `now`: the first key after now's micros.
  scan.mutable_key_range()->set_end(
      kv::KeyBuilder(keys::DuePrefix()).I64(absl::ToUnixMicros(now) + 1).Build());
  scan.set_limit(static_cast<uint32_t>(limit));
  scan.set_keys_only(true);
  scan.set_consistency(consistency);
  ASSIGN_OR_RETURN(auto response, store_->Scan(scan, Deadline()));
  std::vector<DueKey> due;
  for (const auto& kv_pair : response.entries()) {
    kv::KeyReader reader(std::string_view(kv_pair.key()));
    if (!reader.ConsumePrefix(keys::DuePrefix())) continue;
    absl::StatusOr<int64_t> micros = reader.I64();
    if (!micros.ok()) continue;
    auto id = reader.Str();
    if (!id.ok()) continue;
    due.push_back(DueKey{absl::FromUnixMicros(*micros), *std::move(id)});
  }
  return due;
}

absl::StatusOr<Queue::Record> Queue::Load(std::string_view queue_id) {
  kv::v1::GetRequest get;
  get.set_key(keys::Entry(queue_id));
  ASSIGN_OR_RETURN(auto response, store_->Get(get, Deadline()));
  if (!response.found()) return absl::NotFoundError("queue entry not found");
  Record record;
  if (!record.entry.ParseFromString(response.value())) {
    return absl::DataLossError("queue entry does not parse");
  }
  record.version = response.version();
  return record;
}

absl::StatusOr<bool> Queue::Store(const Record& old, const QueueEntry& updated, bool remove,
                                  uint64_t* new_version, bool ride) {
  const std::string& id = old.entry.queue_id();
  kv::v1::WriteRequest w;
  auto* cond = w.add_conditions();
  cond->set_key(keys::Entry(id));
  cond->set_kind(kv::v1::Condition::VERSION_EQUALS);
  cond->set_version(old.version);
  if (auto t = ScheduleTime(old.entry)) AddDelete(&w, keys::Due(*t, id));
  if (remove) {
    AddDelete(&w, keys::Entry(id));
    AddBodyDeletes(&w, old.entry);
  } else {
    AddPut(&w, keys::Entry(id), updated.SerializeAsString());
    if (auto t = ScheduleTime(updated)) AddPut(&w, keys::Due(*t, id), "");
  }
  return StoreWrite(w, ride && remove, new_version);
}

absl::StatusOr<bool> Queue::StoreWrite(const kv::v1::WriteRequest& w, bool ride,
                                       uint64_t* new_version) {
  // A rider's new version is not known (nobody needs it: the entry is gone).
  if (ride && new_version == nullptr && options_.completion_ride_wait > absl::ZeroDuration() &&
      RideNextEnqueue(w)) {
    return true;
  }
  ASSIGN_OR_RETURN(auto response, store_->Write(w, Deadline()));
  Count("update");
  if (response.has_condition_failed()) return false;
  if (!response.has_ok()) return absl::InternalError("queue write rejected");
  if (new_version != nullptr) *new_version = response.applied_index();
  return true;
}

bool Queue::RideNextEnqueue(const kv::v1::WriteRequest& write) {
  // A DeleteRange would keep the enqueue out of the kv client's coalesced
  // WriteMany (see AddBodyDeletes): such a removal goes alone.
  for (const auto& op : write.ops()) {
    if (op.has_delete_range()) return false;
  }
  Rider rider;
  rider.write = write;
  absl::MutexLock lock(&ride_mu_);
  if (riders_.size() >= options_.max_riders * 4) return false;  // enqueues are not keeping up
  riders_.push_back(&rider);
  // Wait for an enqueue to take it, or the ride wait to pass.
  ride_mu_.AwaitWithTimeout(absl::Condition(&rider.taken), options_.completion_ride_wait);
  if (!rider.taken) {
    riders_.erase(std::find(riders_.begin(), riders_.end(), &rider));
    return false;
  }
  // Taken: the enqueue's write is under way and ends with FinishRiders.
  ride_mu_.Await(absl::Condition(&rider.done));
  return rider.committed;
}

std::vector<Queue::Rider*> Queue::TakeRiders(kv::v1::WriteRequest* w) {
  std::vector<Rider*> taken;
  absl::MutexLock lock(&ride_mu_);
  size_t n = std::min(riders_.size(), options_.max_riders);
  taken.assign(riders_.begin(), riders_.begin() + static_cast<std::ptrdiff_t>(n));
  riders_.erase(riders_.begin(), riders_.begin() + static_cast<std::ptrdiff_t>(n));
  for (Rider* r : taken) {
    r->taken = true;
    for (const auto& c : r->write.conditions()) *w->add_conditions() = c;
    for (const auto& op : r->write.ops()) *w->add_ops() = op;
  }
  return taken;
}

void Queue::FinishRiders(const std::vector<Rider*>& riders, bool committed) {
  absl::MutexLock lock(&ride_mu_);
  for (Rider* r : riders) {
    r->committed = committed;
    r->done = true;
  }
}

absl::StatusOr<Lease> Queue::TryLease(std::string_view queue_id, std::string_view holder,
                                      absl::Time now) {
  ASSIGN_OR_RETURN(Record record, Load(queue_id));
  std::optional<absl::Time> due = ScheduleTime(record.entry);
  if (!due) return absl::FailedPreconditionError("held");
  if (*due > now) return absl::FailedPreconditionError("not due (or leased)");
  QueueEntry updated = record.entry;
  updated.set_lease_holder(std::string(holder));
  // Micros precision: the lease expiry identifies the lease (see Complete).
  absl::Time expires = absl::FromUnixMicros(absl::ToUnixMicros(now + options_.lease_duration));
  ToProto(expires, updated.mutable_lease_expires_at());
  Lease lease;
  ASSIGN_OR_RETURN(bool stored, Store(record, updated, false, &lease.version));
  if (!stored) return absl::FailedPreconditionError("another runner took it");
  lease.queue_id = std::string(queue_id);
  lease.holder = std::string(holder);
  lease.expires_at = expires;
  lease.entry = std::move(updated);
  return lease;
}

absl::StatusOr<CompletionReport> Queue::Complete(const Lease& lease,
                                                 const std::vector<RecipientOutcome>& outcomes,
                                                 absl::Time now) {
  const RetryPolicy& policy = options_.retry;
  for (int attempt = 0; attempt < kMaxConflictRetries; ++attempt) {
    Record record;
    if (attempt == 0 && lease.version != 0) {
      // First try the record as leased (no read): nobody wrote it since
      // unless an operator acted meanwhile, which the version check catches.
      record.entry = lease.entry;
      record.version = lease.version;
    } else {
      auto loaded = Load(lease.queue_id);
      if (absl::IsNotFound(loaded.status())) {
        // Deleted by an operator while we delivered.
        return absl::AbortedError("entry removed while leased");
      }
      RETURN_IF_ERROR(loaded.status());
      record = *std::move(loaded);
    }
    // Our lease still holds iff holder and expiry are ours: an operator may
    // have changed other fields (Hold), which we keep.
    if (record.entry.lease_holder() != lease.holder ||
        FromProto(record.entry.lease_expires_at()) != lease.expires_at) {
      return absl::AbortedError("lease lost");
    }
    CompletionReport report;
    QueueEntry updated = record.entry;
    updated.clear_lease_holder();
    updated.clear_lease_expires_at();
    bool expired = now >= FromProto(updated.expires_at());
    for (auto& r : *updated.mutable_recipients()) {
      if (IsFinal(r.state())) continue;
      auto it = std::find_if(outcomes.begin(), outcomes.end(),
                             [&](const RecipientOutcome& o) { return o.address == r.address(); });
      if (it == outcomes.end()) continue;
      r.set_attempts(r.attempts() + 1);
      ToProto(now, r.mutable_last_attempt_at());
      *r.mutable_last_reply() = it->reply;
      switch (it->kind) {
        case RecipientOutcome::Kind::kDelivered:
          r.set_state(relay::v1::RECIPIENT_STATE_DELIVERED);
          break;
        case RecipientOutcome::Kind::kBounced:
          r.set_state(relay::v1::RECIPIENT_STATE_BOUNCED);
          report.newly_bounced.push_back(r);
          break;
        case RecipientOutcome::Kind::kDeferred:
          if (expired) {
            r.set_state(relay::v1::RECIPIENT_STATE_BOUNCED);
            report.newly_bounced.push_back(r);
          } else {
            r.set_state(relay::v1::RECIPIENT_STATE_DEFERRED);
            absl::Time next =
                std::min(now + BackoffAfter(policy, r.attempts()), FromProto(updated.expires_at()));
            ToProto(next, r.mutable_next_attempt_at());
            report.delayed.push_back(r);
          }
          break;
      }
    }
    if (!report.delayed.empty() && !updated.delay_warning_sent() &&
        policy.delay_warning_after != absl::InfiniteDuration() &&
        now - FromProto(updated.created_at()) >= policy.delay_warning_after) {
      updated.set_delay_warning_sent(true);
      report.delay_warning_due = true;
    }
    report.finished = AllFinal(updated);
    ClampDue(&updated, now);  // an abandoned entry is due now, not in the past
    // The first try (the record as leased, no read) of a removal may ride
    // the next enqueue's write (QueueOptions::completion_ride_wait).
    const bool ride = attempt == 0 && lease.version != 0 && report.finished;
    ASSIGN_OR_RETURN(bool stored, Store(record, updated, report.finished, nullptr, ride));
    if (!stored) continue;  // an operator wrote in between: re-read and merge
    report.entry = std::move(updated);
    DeriveState(&report.entry, now);
    return report;
  }
  return absl::UnavailableError("queue entry kept changing");
}

absl::Status Queue::RenewLease(Lease* lease, absl::Time now) {
  absl::Time expires = absl::FromUnixMicros(absl::ToUnixMicros(now + options_.lease_duration));
  if (expires <= lease->expires_at) return absl::OkStatus();
  for (int attempt = 0; attempt < kMaxConflictRetries; ++attempt) {
    Record record;
    if (attempt == 0 && lease->version != 0) {
      record.entry = lease->entry;
      record.version = lease->version;
    } else {
      auto loaded = Load(lease->queue_id);
      if (absl::IsNotFound(loaded.status()))
        return absl::AbortedError("entry removed while leased");
      RETURN_IF_ERROR(loaded.status());
      record = *std::move(loaded);
    }
    if (record.entry.lease_holder() != lease->holder ||
        FromProto(record.entry.lease_expires_at()) != lease->expires_at) {
      return absl::AbortedError("lease lost");
    }
    QueueEntry updated = record.entry;
    ToProto(expires, updated.mutable_lease_expires_at());
    uint64_t version = 0;
    ASSIGN_OR_RETURN(bool stored, Store(record, updated, false, &version));
    if (!stored) continue;  // an operator wrote in between: re-read and merge
    lease->expires_at = expires;
    lease->version = version;
    lease->entry = std::move(updated);
    return absl::OkStatus();
  }
  return absl::UnavailableError("queue entry kept changing");
}

absl::Status Queue::Abandon(const Lease& lease, absl::Time now) {
  return Complete(lease, {}, now).status();
}

absl::StatusOr<std::string> Queue::ReadBody(std::string_view queue_id) {
  kv::v1::ScanRequest scan;
  scan.set_prefix(keys::BodyPrefix(queue_id));
  const std::string prefix = keys::BodyPrefix(queue_id);
  std::string body, compressed;
  do {
    ASSIGN_OR_RETURN(auto response, store_->Scan(scan, Deadline()));
    for (const auto& e : response.entries()) {
      kv::KeyReader reader(std::string_view(e.key()));
      absl::StatusOr<uint64_t> index =
          reader.ConsumePrefix(prefix) ? reader.U64() : absl::StatusOr<uint64_t>(0);
      if (index.ok() && (*index & kCompressedChunk) != 0) {
        compressed += e.value();
      } else {
        body += e.value();
      }
    }
    scan.set_continuation(response.continuation());
  } while (!scan.continuation().empty());
  if (!compressed.empty()) return DecompressBody(compressed);
  if (body.empty()) return absl::NotFoundError("queue body not found");
  return body;
}

}  // namespace mailgrid::outbound
