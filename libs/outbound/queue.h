// The durable outbound queue over store::Store (replicated when relayd runs
// on the replicated store; store::LocalStore in unit tests).
//
// Key layout (global space: one queue for the relay cluster; every entry
// carries its tenant_id and the admin API filters by it):
//   G("outq")      / queue_id                 -> relay.v1.QueueEntry (the record)
//   G("outq_body") / queue_id / U64(chunk)    -> raw message bytes, 512 KiB chunks
//   G("outq_due")  / I64(unix micros) / queue_id -> "" : the schedule index
// Invariant, kept by every write: an entry has exactly one due key, at
// ScheduleTime(entry) (its lease expiry while leased, else the earliest
// next_attempt_at of its pending recipients), or none when it is held. So
// finding work is one ordered range scan of due keys <= now (O(log n) per
// entry, no full scan), and an expired lease shows up as due by itself.
//
// Every write is one conditional kv Write (VERSION_EQUALS on the record, or
// MUST_NOT_EXIST at enqueue): two runners never hold the same lease, and an
// operator action racing a runner is retried on the fresh record.
//
// queue_id: 16 hex digits of creation micros + 8 random hex digits, so key
// order is age order (ListQueue is oldest first without an index).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/store/store.h"
#include "mailgrid/relay/v1/relay.pb.h"

namespace mailgrid::outbound {

using relay::v1::QueueEntry;
using relay::v1::QueueRecipient;
using relay::v1::SmtpReply;

// Exponential backoff and lifetime (Postfix-like defaults).
struct RetryPolicy {
  absl::Duration initial_backoff = absl::Minutes(5);
  absl::Duration max_backoff = absl::Hours(4);
  absl::Duration lifetime = absl::Hours(24 * 5);
  absl::Duration delay_warning_after = absl::Hours(4);  // InfiniteDuration(): never
};

// Delay before attempt number `attempts + 1`, after `attempts` failures
// (attempts >= 1): initial * 2^(attempts-1), capped at max.
absl::Duration BackoffAfter(const RetryPolicy& policy, uint32_t attempts);

struct QueueOptions {
  RetryPolicy retry;
  absl::Duration lease_duration = absl::Minutes(15);
  absl::Duration rpc_timeout = absl::Seconds(10);  // per store call
  // DueIds starts its range scan at a floor, not at the index's first key:
  // the due keys of entries already leased or rescheduled are deleted, and
  // RocksDB steps over every such tombstone until compaction drops it, so a
  // scan from the start costs O(recent churn), not O(log n) (measured by
  // bench/relay/queue_scale: 75 us -> 20 ms after 5,000 reschedules). The
  // floor is the previous scan's first due key, or its `now` minus
  // `due_scan_margin` (the clock skew between relayds plus a write's commit
  // latency: every due key is written at >= the writer's now, see
  // ClampDue), and a full scan from the start every `full_due_scan_every`
  // catches anything written later than that (so a relayd whose clock is
  // more than the margin behind sees its entries picked up within a
  // minute). A scan still steps over the tombstones of the last `margin`
  // seconds: cost O(log n + churn x margin), hence a small margin.
  absl::Duration due_scan_margin = absl::Seconds(5);
  absl::Duration full_due_scan_every = absl::Minutes(1);
  // A delivered message's removal (Complete of an entry whose recipients
  // are all final, with the lease as written) waits up to this long for the
  // next enqueue to carry it: its version check and deletes ride in the
  // enqueue's own WriteRequest, so a relayed message costs ONE replicated
  // write request after its enqueue instead of two (each request has its
  // idempotency record, condition reads and apply on every replica). With
  // no enqueue in time it is written alone. The entry stays leased until
  // the write commits, as before; only the window in which a crash leads to
  // a second delivery grows by at most this. Zero: always alone.
  absl::Duration completion_ride_wait = absl::Milliseconds(10);
  // At most this many removals ride in one enqueue.
  size_t max_riders = 64;
  // Called for every write request the queue sends ("enqueue": a new
  // entry, with or without riders; "update": any other state change sent
  // alone) and for every removal carried by an enqueue ("carried"): the
  // replicated write requests per relayed message are enqueue + update.
  std::function<void(const char* kind)> on_write;
};

// What Enqueue needs. Recipients are full addresses; they are grouped by
// domain (lower-cased part after the last '@').
struct NewMessage {
  std::string tenant_id;
  std::string envelope_from;  // "" = null sender (a DSN)
  std::vector<std::string> recipients;
  std::string body;  // the whole message, headers and body, CRLF
  // Non-empty: queued HELD with this reason ("moderation", "audit"): no
  // due key, so no runner touches it until DecideHold releases it.
  std::string hold_reason;
};

// A lease a runner holds on one entry. `version` is the record's version
// right after the lease was written; `expires_at` identifies the lease.
struct Lease {
  std::string queue_id;
  std::string holder;
  absl::Time expires_at;
  uint64_t version = 0;
  QueueEntry entry;  // as leased
};

// The result of one delivery attempt for one recipient.
struct RecipientOutcome {
  std::string address;
  enum class Kind { kDelivered, kDeferred, kBounced } kind = Kind::kDeferred;
  SmtpReply reply;
};

// What Complete did, so the runner can send DSNs.
struct CompletionReport {
  QueueEntry entry;                           // the record as written (or as last seen, if removed)
  std::vector<QueueRecipient> newly_bounced;  // bounced by this completion
  bool delay_warning_due = false;             // first time past delay_warning_after
  std::vector<QueueRecipient> delayed;        // the deferred ones, for the warning
  bool finished = false;                      // every recipient is final: removed
  std::string body;  // BounceQueueEntry only: the message, read before removal (for the DSN)
};

// Pure helpers (exposed for tests).
std::optional<absl::Time> ScheduleTime(const QueueEntry& entry);
std::string DomainOf(std::string_view address);

class Queue {
 public:
  Queue(store::Store* store, QueueOptions options) : store_(store), options_(options) {}

  const QueueOptions& options() const { return options_; }

  // Writes record, body and due key in one conditional write. Returns the
  // queue id once committed (only then may the submitter get its 250).
  absl::StatusOr<std::string> Enqueue(const NewMessage& message, absl::Time now);

  // Enqueue with the lease already taken by `holder` in the same write (the
  // due key is the lease expiry): the relayd that accepted the message
  // delivers it at once, without a scan, a lease write or a body read
  // (Postfix's cleanup → qmgr hand-off). If that relayd dies, the lease
  // expires and any runner takes the entry over, as after a crash mid-delivery.
  absl::StatusOr<Lease> EnqueueLeased(const NewMessage& message, std::string_view holder,
                                      absl::Time now);

  // Up to `limit` ids whose due time is <= now (oldest due first).
  absl::StatusOr<std::vector<std::string>> DueIds(absl::Time now, size_t limit);

  // One key of the schedule index.
  struct DueKey {
    absl::Time due;
    std::string queue_id;
  };
  // Up to `limit` due keys <= now, read LINEARIZABLY (from the leader after
  // a ReadIndex round) over the whole index, no floor: what the index holds
  // for every write acknowledged so far. For checks and diagnostics (tells a
  // lagging replica's DueIds answer from the index's truth); runners use
  // DueIds.
  absl::StatusOr<std::vector<DueKey>> DueKeysFromLeader(absl::Time now, size_t limit);

  // Takes the lease on `queue_id` for `holder` if the entry is due, not held
  // and not leased by someone else (or that lease expired). NOT_FOUND when
  // gone; FAILED_PRECONDITION when not available (not due, held, leased, or
  // another runner won the race).
  absl::StatusOr<Lease> TryLease(std::string_view queue_id, std::string_view holder,
                                 absl::Time now);

  // Records outcomes under the lease and releases it. ABORTED when the lease
  // was lost (expired and taken by another runner): the caller must not
  // report anything. Recipients past the lifetime that are deferred again
  // bounce. An entry whose recipients are all final is removed (with body).
  absl::StatusOr<CompletionReport> Complete(const Lease& lease,
                                            const std::vector<RecipientOutcome>& outcomes,
                                            absl::Time now);

  // Extends a lease this runner holds to now + lease_duration (one
  // version-checked write, no read unless an operator wrote meanwhile; the
  // due key moves to the new expiry). A delivery longer than the lease
  // renews it while it works, so no other runner takes the entry over and
  // sends it twice. ABORTED when the lease was lost (expired and taken, or
  // the entry removed); *lease is updated on success.
  absl::Status RenewLease(Lease* lease, absl::Time now);

  // Releases a lease without outcomes (e.g. shutting down), due now.
  absl::Status Abandon(const Lease& lease, absl::Time now);

  absl::StatusOr<std::string> ReadBody(std::string_view queue_id);

  // Removals waiting for an enqueue to carry them (tests, metrics).
  size_t RemovalsWaiting() {
    absl::MutexLock lock(&ride_mu_);
    return riders_.size();
  }

  // The decision on an audit or moderation hold (`kind` = the entry's
  // hold_reason): approve → the hold is cleared and the entry is due now;
  // reject → the entry is removed (the caller notifies the sender).
  // FAILED_PRECONDITION when the entry is not held for `kind`.
  absl::StatusOr<QueueEntry> DecideHold(std::string_view queue_id, std::string_view kind,
                                        bool approve, std::string_view tenant_filter,
                                        absl::Time now);

  // ---- The RelayService queue RPCs (authorization is the caller's job:
  // pass tenant_filter = the caller's tenant for tenant admins, "" for
  // platform operators; another tenant's entry is NOT_FOUND).
  absl::StatusOr<relay::v1::ListQueueResponse> ListQueue(const relay::v1::ListQueueRequest& request,
                                                         std::string_view tenant_filter,
                                                         absl::Time now);
  absl::StatusOr<QueueEntry> GetQueueEntry(std::string_view queue_id,
                                           std::string_view tenant_filter, absl::Time now);
  absl::StatusOr<QueueEntry> RetryNow(const relay::v1::RetryNowRequest& request,
                                      std::string_view tenant_filter, absl::Time now);
  absl::StatusOr<QueueEntry> Hold(const relay::v1::HoldRequest& request,
                                  std::string_view tenant_filter, absl::Time now);
  absl::StatusOr<QueueEntry> Release(const relay::v1::ReleaseRequest& request,
                                     std::string_view tenant_filter, absl::Time now);
  absl::Status DeleteQueueEntry(const relay::v1::DeleteQueueEntryRequest& request,
                                std::string_view tenant_filter, absl::Time now);
  // Marks the pending recipients BOUNCED with `reason`; returns the entry
  // and the bounced recipients (the caller enqueues the DSN: see dsn.h).
  absl::StatusOr<CompletionReport> BounceQueueEntry(
      const relay::v1::BounceQueueEntryRequest& request, std::string_view tenant_filter,
      absl::Time now);

 private:
  struct Record {
    QueueEntry entry;
    uint64_t version = 0;
  };
  absl::StatusOr<Record> Load(std::string_view queue_id);
  // The due keys in [floor (nullopt: the index's start), now].
  absl::StatusOr<std::vector<DueKey>> ScanDue(std::optional<absl::Time> floor, absl::Time now,
                                              size_t limit, kv::v1::ReadConsistency consistency);
  // Writes `updated` over `old` (version-checked), moving the due key and
  // removing everything when `remove`. Returns false when the version moved.
  absl::StatusOr<bool> Store(const Record& old, const QueueEntry& updated, bool remove,
                             uint64_t* new_version, bool ride = false);
  // Read-modify-write with retry on version conflicts; `mutate` returns an
  // error to stop, or sets *remove.
  absl::StatusOr<QueueEntry> Mutate(
      std::string_view queue_id, std::string_view tenant_filter,
      const std::function<absl::Status(QueueEntry*, bool* remove)>& mutate);
  absl::Time Deadline() const { return absl::Now() + options_.rpc_timeout; }
  void Count(const char* kind) const {
    if (options_.on_write) options_.on_write(kind);
  }
  absl::StatusOr<std::string> EnqueueImpl(const NewMessage& message, std::string_view holder,
                                          absl::Time now, Lease* lease);

  // A removal waiting for an enqueue to carry it (see completion_ride_wait).
  struct Rider {
    kv::v1::WriteRequest write;  // its conditions and ops
    bool taken = false;          // an enqueue took it: wait for `done`
    bool done = false;
    bool committed = false;      // applied as part of that enqueue
  };
  // Waits for an enqueue to carry `write`: true when it committed that way;
  // false when the caller must write it alone (no enqueue in time, or the
  // shared write failed).
  bool RideNextEnqueue(const kv::v1::WriteRequest& write);
  // The riders an enqueue takes along (their ops appended to `w`).
  std::vector<Rider*> TakeRiders(kv::v1::WriteRequest* w);
  void FinishRiders(const std::vector<Rider*>& riders, bool committed);
  // Store's write, with `ride` = it may ride an enqueue.
  absl::StatusOr<bool> StoreWrite(const kv::v1::WriteRequest& w, bool ride,
                                  uint64_t* new_version);

  store::Store* store_;
  QueueOptions options_;
  absl::Mutex scan_mu_;  // the DueIds floor (see QueueOptions::due_scan_margin)
  std::optional<absl::Time> scan_floor_ ABSL_GUARDED_BY(scan_mu_);
  absl::Time last_full_scan_ ABSL_GUARDED_BY(scan_mu_) = absl::InfinitePast();
  absl::Time last_scan_now_ ABSL_GUARDED_BY(scan_mu_) = absl::InfinitePast();
  absl::Mutex ride_mu_;
  std::vector<Rider*> riders_ ABSL_GUARDED_BY(ride_mu_);
};

// Pending recipients whose next attempt is before `now` are set to `now`:
// an entry given back (Abandon) or released from a hold becomes due now, so
// every due key is written at or after its writer's clock (the DueIds floor
// relies on it).
void ClampDue(QueueEntry* entry, absl::Time now);

// The entry as the API shows it: state derived (ACTIVE while a live lease
// is held, HELD, DEFERRED after a failed attempt, QUEUED, DONE).
void DeriveState(QueueEntry* entry, absl::Time now);

}  // namespace mailgrid::outbound
