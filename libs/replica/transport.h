// Transport: carries the Raft core's messages to the other replicas of the
// group over RaftService (raft.proto), and streams snapshots. A peer that
// announced a raft wire (wire.h) gets its messages there instead while that
// connection is open (its gRPC sender below is then dropped, and made again
// for the first message the wire cannot carry).
//
// Threads: one sender thread per peer, with its own completion queue. Send()
// (called by the raft-loop thread) groups a Ready's messages per peer. Each
// peer has ONE long-lived SendStream call (opened by the peer's thread on
// first contact): a batch of messages is one write on it, no call set-up
// and no answer per batch. A peer with no write in flight gets the batch at
// once, the write started on the calling thread (no thread wake on a
// write's path); otherwise messages queue, and the peer's thread, when the
// write in flight ends, writes everything queued as the next batch. A peer
// without SendStream (UNIMPLEMENTED: an older replica) gets the same batches
// as unary Send calls, one in flight. On failure (a broken stream, a failed
// call, a write stuck past send_timeout) the peer is reported unreachable
// (the core falls back to probing it), what was in flight is lost (Raft
// retransmits whatever matters), the channel is made again and the peer's
// sends pause 50 ms .. 1 s. The queue is bounded; when a peer is down the
// oldest appends are dropped first. A stream whose channel leaves READY
// (the peer's server drains for a graceful shutdown) is closed by us and
// the next batch opens a new one.
//
// A kSnapshot message starts a snapshot thread for that peer: the state
// machine is dumped into a directory (or the last dump is reused, which
// makes an interrupted transfer resumable), the receiver is asked which
// files it already holds verified (OfferSnapshot), the missing ones are
// streamed in chunks with a CRC-32C each (InstallSnapshot), and the raft
// message travels in the last chunk. The result goes back to the core as
// ReportSnapshot(ok / failed).
//
// Trust: peers are other replicas of the same group (mTLS in the chart);
// every request names group and addressee so a misrouted one is refused.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/kv/state_machine.h"
#include "libs/raft/types.h"
#include "libs/replica/channel.h"
#include "libs/replica/metrics.h"

namespace grpc {
class ClientContext;
}

namespace mailgrid::replica {

// What the transport needs from the replica it serves. Called from the
// transport's threads; implementations must be thread-safe and must not
// block on the raft loop.
class TransportHost {
 public:
  virtual ~TransportHost() = default;
  // host:port of a member, "" when unknown.
  virtual std::string PeerAddress(raft::NodeId id) = 0;
  virtual void ReportUnreachable(raft::NodeId id) = 0;
  virtual void ReportSnapshot(raft::NodeId id, bool ok) = 0;
  // Dumps the state machine into `dir` (StateMachine::CreateSnapshot).
  virtual absl::StatusOr<kv::SnapshotInfo> CreateSnapshot(const std::string& dir) = 0;
};

struct TransportOptions {
  std::string group_id;
  raft::NodeId self = raft::kNoNode;
  std::string self_address;
  uint32_t self_max_format = 0;  // MessageBatch.max_format, sent with self_address
  uint16_t self_wire_port = 0;   // MessageBatch.wire_port: our wire listener (0: none)
  // Send over a peer's raft wire (wire.h) once it announced one; gRPC otherwise.
  bool wire = false;
  // Outgoing snapshot dumps live here (wiped at start).
  std::string snapshot_dir;
  size_t max_queued_messages = 8192;
  uint64_t max_batch_bytes = 8 << 20;
  uint64_t snapshot_chunk_bytes = 1 << 20;
  // A unary call's deadline; a stream write unfinished after it fails the stream.
  absl::Duration send_timeout = absl::Seconds(5);
  // false: unary Send calls only (the transport before SendStream; for A/B).
  bool stream = true;
  absl::Duration snapshot_timeout = absl::Minutes(30);
  ReplicaTls tls;  // towards the peers; empty CA: plain text
};

// Test-only fault injection shared by the sending and receiving side
// (MAILGRID_TEST_HOOKS builds; the RPC that sets it is refused otherwise).
class TestHooks {
 public:
  void SetDroppedPeers(std::set<raft::NodeId> peers);
  bool Dropped(raft::NodeId peer) const;
  void CorruptSnapshotChunks(uint32_t in_transit, uint32_t at_source);
  // Consumes one pending corruption for the snapshot stream about to start
  // (the first data chunk of its last file is damaged): 1 = in transit (flip after the CRC),
  // 2 = at the source (flip before the CRC), 0 = none.
  int TakeCorruption();

 private:
  mutable absl::Mutex mu_;
  std::set<raft::NodeId> dropped_ ABSL_GUARDED_BY(mu_);
  uint32_t corrupt_in_transit_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t corrupt_at_source_ ABSL_GUARDED_BY(mu_) = 0;
};

// A message's size for batching limits: its entries plus a fixed overhead
// (both senders bound their batches with it).
uint64_t ApproxMessageBytes(const raft::Message& m);

class PeerSender;
class WireSender;
struct OutgoingSnapshot;

class Transport {
 public:
  Transport(TransportOptions options, TransportHost* host, ReplicaMetrics* metrics,
            TestHooks* hooks);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Queues messages for their peers; never blocks on the network. A peer
  // whose raft wire is open gets them there, any other over gRPC.
  void Send(std::vector<raft::Message> messages);

  // A peer announced its wire listener's port (MessageBatch.wire_port).
  void NoteWirePort(raft::NodeId peer, uint16_t port);

  // Stops every thread; queued messages are dropped. Idempotent.
  void Stop();

  const TransportOptions& options() const { return options_; }

 private:
  friend class PeerSender;

  std::shared_ptr<PeerSender> Sender(raft::NodeId peer);
  WireSender* Wire(raft::NodeId peer);
  // The peer's wire opened: its gRPC sender (thread, channel, stream) goes,
  // so that an idle thread of ours takes no part in gRPC's polling (each one
  // waiting in a completion queue is a poller gRPC hands events through).
  // Made again by the next message the wire cannot carry.
  void RetireGrpcSender(raft::NodeId peer);
  void StartSnapshot(raft::Message m);
  void RunSnapshot(raft::Message m);
  absl::StatusOr<std::shared_ptr<OutgoingSnapshot>> SnapshotFor(raft::Index at_least);
  absl::Status StreamSnapshot(raft::Message m, const OutgoingSnapshot& snap);
  bool stopping() const { return stopping_.load(); }
  // Calls in flight, cancelled by Stop() so it never waits out a deadline.
  // Register returns false once stopping (the call must not start).
  bool RegisterCall(grpc::ClientContext* ctx);
  void UnregisterCall(grpc::ClientContext* ctx);

  const TransportOptions options_;
  TransportHost* const host_;
  ReplicaMetrics* const metrics_;
  TestHooks* const hooks_;
  std::atomic<bool> stopping_{false};

  absl::Mutex mu_;
  // shared: the loop may be enqueueing on one that a wire thread retires.
  std::map<raft::NodeId, std::shared_ptr<PeerSender>> senders_ ABSL_GUARDED_BY(mu_);
  std::map<raft::NodeId, std::unique_ptr<WireSender>> wires_ ABSL_GUARDED_BY(mu_);
  std::map<raft::NodeId, std::thread> snapshot_threads_ ABSL_GUARDED_BY(mu_);
  std::set<raft::NodeId> snapshot_in_progress_ ABSL_GUARDED_BY(mu_);
  absl::Mutex calls_mu_;
  std::set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(calls_mu_);

  absl::Mutex snapshot_mu_;  // serialises dumps; guards the cache
  std::shared_ptr<OutgoingSnapshot> cached_snapshot_ ABSL_GUARDED_BY(snapshot_mu_);
  uint64_t snapshot_seq_ ABSL_GUARDED_BY(snapshot_mu_) = 0;
};

}  // namespace mailgrid::replica
