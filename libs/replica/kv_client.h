// KvClient: how a service talks to its replica group (KvService) given the
// replicas' addresses. Thread-safe; one per process is enough.
//
//  * finds the leader and follows NOT_LEADER redirects (trailing metadata
//    `mailgrid-leader`), remembering the leader for the next call;
//  * retries UNAVAILABLE (election in progress, replica down, leadership
//    lost), RESOURCE_EXHAUSTED (that replica's disk is full: another may
//    lead and write) and per-attempt timeouts with jittered backoff, at
//    another replica, until the call's deadline;
//  * makes writes idempotent: a request without request_id gets
//    (client_id, seq) with a random client_id per KvClient and an increasing
//    seq, so a write retried after a lost answer is applied at most once;
//  * client sessions (kv.proto RequestId.first_unacked; offered from format
//    3, libs/kv README "The floor defect"): once a response says the group
//    takes them (WriteResponse.sessions), every
//    write with an id of its own making carries the lowest seq it still
//    waits for, so the group keeps ONE record per client instead of one per
//    write (three RocksDB inserts fewer per write on every replica). A
//    write keeps its form across its retries; a caller's own request_id
//    (NextRequestId) is never a session write, since its caller may retry
//    it after this client has forgotten it; a write made while the client
//    still waits for one kv::kMaxSessionOutcomes seqs older takes its own
//    record too (libs/kv/client_seqs.h says why);
//  * coalesces concurrent writes (coalesce_writes, the default): while one
//    call carries writes to the group, writes from other threads queue, and
//    when it returns, everything queued leaves in ONE WriteMany call (one
//    Raft entry), sent by one of the waiting callers (no extra thread, no
//    timer: a lone writer's write leaves at once as a plain Write, so one
//    client sees no added latency; 64 concurrent writers share a few calls).
//    Under continuous load the sender first waits, briefly, until as many
//    writes are queued as the last call carried (AwaitCompany says why).
//    Each write keeps its own request_id, conditions and result. With
//    several calls in flight (max_calls_in_flight), a caller that holds a
//    turn sends its own write in its own call: no other call takes it. A
//    write with a DeleteRange always goes alone. Against a server without
//    WriteMany (UNIMPLEMENTED) the client falls back to one Write each;
//  * errors: the last error once the deadline passes (DEADLINE_EXCEEDED for
//    a write whose outcome is unknown, its message carrying the last error,
//    e.g. "disk full"); INVALID_ARGUMENT, DATA_LOSS and plain
//    FAILED_PRECONDITION are returned at once.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/kv/client_seqs.h"
#include "libs/replica/channel.h"
#include "mailgrid/kv/v1/kv.grpc.pb.h"

namespace mailgrid::replica {

// How concurrent writes travel (see the header comment).
enum class WriteBatching {
  kCoalesce,    // queued writes leave together in one WriteMany call
  kOnePerCall,  // one Write RPC per write (the raw per-call path, e.g. bench/raft)
};

// Whether writes use the group's client sessions when it offers them.
enum class SessionUse {
  kWhenOffered,     // after a response said `sessions`
  kRecordPerWrite,  // never: one idempotency record per write (A/B, tests)
};

struct KvClientOptions {
  std::vector<std::string> addresses;                 // host:port of the group's replicas
  absl::Duration timeout = absl::Seconds(10);         // per call, when none is given
  absl::Duration attempt_timeout = absl::Seconds(3);  // per RPC attempt
  std::string client_id;                              // empty: random
  ReplicaTls tls;                                     // empty CA: plain text
  WriteBatching batching = WriteBatching::kCoalesce;
  SessionUse sessions = SessionUse::kWhenOffered;
  // Coalesced calls in flight at once (1: the next call leaves when the
  // previous one returns; 2 lets a call form while one waits for its fsyncs).
  // Keep 1 unless the group is short of latency, not CPU: a replicated
  // round costs about as much as 40 writes in it, and 2 calls split the
  // writers into smaller ones (measured, 3 replicas on 2 cores, session 23:
  // 2 calls = 0.76-0.84x writes/s, 1.24-1.38x server CPU per write at 16
  // and 64 writers).
  int max_calls_in_flight = 1;
  size_t max_writes_per_call = 256;     // a coalesced call's writes...
  size_t max_bytes_per_call = 4 << 20;  // ...and bytes (a bigger write goes alone)
};

class KvClient {
 public:
  static absl::StatusOr<std::unique_ptr<KvClient>> Create(KvClientOptions options);
  // "host:port,host:port,..."
  static absl::StatusOr<std::unique_ptr<KvClient>> Create(std::string_view addresses);

  absl::StatusOr<kv::v1::WriteResponse> Write(kv::v1::WriteRequest request);
  absl::StatusOr<kv::v1::WriteResponse> Write(kv::v1::WriteRequest request, absl::Duration timeout);
  absl::StatusOr<kv::v1::GetResponse> Get(const kv::v1::GetRequest& request);
  absl::StatusOr<kv::v1::GetResponse> Get(const kv::v1::GetRequest& request,
                                          absl::Duration timeout);
  absl::StatusOr<kv::v1::ScanResponse> Scan(const kv::v1::ScanRequest& request);
  absl::StatusOr<kv::v1::ScanResponse> Scan(const kv::v1::ScanRequest& request,
                                            absl::Duration timeout);

  // The request id the next idempotent write gets (for callers that record
  // it, e.g. to retry across their own restarts).
  kv::v1::RequestId NextRequestId();
  const std::string& client_id() const { return options_.client_id; }
  // The replica last seen leading ("" before the first success).
  std::string leader() const;
  // A response said the group takes session writes (and SessionUse allows).
  bool using_sessions() const { return sessions_offered_.load(std::memory_order_relaxed); }

 private:
  explicit KvClient(KvClientOptions options) : options_(std::move(options)) {}

  // A write waiting in (or sent from) the coalescing queue. Its flags are
  // set under write_mu_; a waiting writer is then woken through its own
  // `woken` and the shared wake_cv_ (once: it waits only once), never
  // through write_mu_ itself.
  struct PendingWrite {
    kv::v1::WriteRequest request;
    size_t bytes = 0;
    absl::Time deadline;
    bool done = false;    // `result` is final
    bool sender = false;  // this caller sends the next call
    bool alone = false;   // the server lacks WriteMany: send it with Write
    absl::StatusOr<kv::v1::WriteResponse> result;
    std::atomic<bool> woken{false};  // set once, after the flags above (WakeWriters)
  };
  // Sets `woken` on each of `writers` and wakes them all with ONE broadcast
  // (kv_client.cc says why); AwaitWoken returns false if the write's
  // deadline passed first.
  void WakeWriters(const std::vector<std::shared_ptr<PendingWrite>>& writers);
  bool AwaitWoken(const PendingWrite& mine);

  absl::StatusOr<kv::v1::WriteResponse> WriteOne(const kv::v1::WriteRequest& request,
                                                 absl::Duration timeout);
  absl::StatusOr<kv::v1::WriteResponse> WriteCoalesced(kv::v1::WriteRequest request,
                                                       absl::Duration timeout);
  // The sender's turn: takes a call's worth from the queue (`mine` first),
  // sends it, hands out the results and passes the turn on.
  absl::StatusOr<kv::v1::WriteResponse> SendQueued(const std::shared_ptr<PendingWrite>& mine);
  // `mine` and the oldest queued writes that no other sender holds, up to a
  // call's limits, taken out of the queue.
  std::vector<std::shared_ptr<PendingWrite>> TakeBatch(const std::shared_ptr<PendingWrite>& mine);
  // Before a call leaves: waits (briefly) until as many writes are queued
  // as the last call carried.
  static constexpr absl::Duration kMaxCompanyWait = absl::Milliseconds(2);
  void AwaitCompany(const PendingWrite& mine);
  // Returns the write now holding the turn (to be woken), or nullptr.
  std::shared_ptr<PendingWrite> PassTurnLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  void SendMany(const std::vector<std::shared_ptr<PendingWrite>>& batch);

  // Gives `request` a fresh id: a session write's (returns its seq, awaited
  // until answered) or, outside the session window, a plain one (returns 0).
  uint64_t MakeSessionId(kv::v1::WriteRequest* request);
  void NoteSessions(const kv::v1::WriteResponse& response);

  enum class CallKind { kRead, kWrite };  // what the deadline's error says
  using Attempt = std::function<grpc::Status(kv::v1::KvService::Stub*, grpc::ClientContext*)>;
  absl::Status Call(const Attempt& attempt, absl::Duration timeout, CallKind kind);
  absl::StatusOr<std::shared_ptr<kv::v1::KvService::Stub>> Stub(const std::string& address);
  std::string PickTarget(size_t* rotation);

  KvClientOptions options_;
  kv::ClientSeqs seqs_;  // every id's seq; the session writes awaited
  mutable absl::Mutex mu_;
  std::string leader_ ABSL_GUARDED_BY(mu_);
  // Shared: a call in flight keeps its stub while another thread drops it.
  std::map<std::string, std::shared_ptr<kv::v1::KvService::Stub>> stubs_ ABSL_GUARDED_BY(mu_);

  // Coalescing (see the header comment).
  absl::Mutex write_mu_;
  std::mutex wake_mu_;  // only for wake_cv_; never taken while holding write_mu_
  std::condition_variable wake_cv_;
  std::deque<std::shared_ptr<PendingWrite>> write_queue_ ABSL_GUARDED_BY(write_mu_);
  int calls_in_flight_ ABSL_GUARDED_BY(write_mu_) = 0;
  // The last call (AwaitCompany): its writes, when it ended, how long it took.
  size_t last_call_writes_ ABSL_GUARDED_BY(write_mu_) = 1;
  absl::Time last_call_end_ ABSL_GUARDED_BY(write_mu_);
  absl::Duration last_call_time_ ABSL_GUARDED_BY(write_mu_);
  std::atomic<bool> write_many_unsupported_{false};

  std::atomic<bool> sessions_offered_{false};
};

// Splits "a:1, b:2" into addresses; InvalidArgument if empty.
absl::StatusOr<std::vector<std::string>> ParseAddressList(std::string_view list);

}  // namespace mailgrid::replica
