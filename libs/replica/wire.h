// The raft wire: replica-to-replica messages over plain TCP, beside gRPC.
//
// Why (docs/benchmarks.md, stops 27-29): on gRPC 1.51 every received batch
// reached the raft loop through the callback poller's thread hand-offs, and
// every stream write's completion woke the peer's sender thread to reap it:
// at one client, 67 context switches per replicated write over the four
// processes, on a VM where each costs tens of microseconds. gRPC has no
// option that removes them. On the wire a connection's reader thread wakes
// once per batch and hands it to the loop; a send is one non-blocking
// write(2) on the loop's own thread, with no completion to reap.
//
// What stays on gRPC: snapshots (InstallSnapshot), the admin RPCs, and every
// message to a peer whose wire is not open (not yet learned, connecting,
// broken, a peer from before the wire, TLS): Transport::Send tries the
// wire first and falls back to the gRPC sender, so the wire is an
// optimisation that can fail at any time without losing more than the
// messages on it, which Raft sends again.
//
// Discovery: a replica's listener takes a port (--raft-wire-port, 0: any
// free port) and announces it in MessageBatch.wire_port on the first batch
// of each stream or connection; a peer that hears it connects to the host
// of the replica's raft address and that port. One connection per direction
// and peer: the sender only writes (after the handshake's one-byte answer),
// the receiver only reads. Framing and handshake: wire_frame.h.
//
// Trust: as RaftService on a plain-text listener (every batch names group and
// addressee). TLS between replicas is not on the wire yet: a replica whose
// peers talk TLS runs no wire listener and sends everything over gRPC.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/raft/types.h"
#include "libs/replica/metrics.h"
#include "mailgrid/raft/v1/raft.pb.h"

namespace mailgrid::replica {

class TestHooks;
struct TransportOptions;

// A file descriptor closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset();

 private:
  int fd_ = -1;
};

// The receiving side: accepts connections and hands every batch, the hello
// included, to `deliver` (Replica::DeliverBatch: checks group, addressee and
// messages, then queues them for the raft loop). One reader thread per
// connection; a batch `deliver` refuses closes its connection.
class WireListener {
 public:
  using Deliver = std::function<absl::Status(raft::v1::MessageBatch* batch)>;

  // Listens on host:port (port 0: any free port); connections wait in the
  // backlog until Start.
  static absl::StatusOr<std::unique_ptr<WireListener>> Listen(const std::string& host, int port);
  // Accepts connections and delivers their batches. Once.
  void Start(Deliver deliver);
  ~WireListener();
  WireListener(const WireListener&) = delete;
  WireListener& operator=(const WireListener&) = delete;

  uint16_t port() const { return port_; }
  // Closes the listener and every connection; joins the threads. Idempotent.
  void Stop();

 private:
  WireListener(Fd listen_fd, uint16_t port) : listen_fd_(std::move(listen_fd)), port_(port) {}
  void AcceptLoop();
  void ReadConnection(Fd conn);
  // Appends what one read brings (waiting for it until `deadline`) to
  // `buf`; false when the connection closed, the deadline passed or the
  // listener stops. `chunk`: kReadChunk bytes.
  bool ReadMore(int fd, std::string& buf, char* chunk, absl::Time deadline);
  void ReapFinishedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  static constexpr size_t kMaxConnections = 64;

  Fd listen_fd_;
  Fd stop_fd_;  // an eventfd every poll() also waits on
  const uint16_t port_;
  Deliver deliver_;  // set by Start, before the accept thread starts
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;
  struct Reader {
    std::thread thread;
    bool done = false;
  };
  absl::Mutex mu_;
  std::list<Reader> readers_ ABSL_GUARDED_BY(mu_);
};

// The sending side towards one peer. The raft loop calls TrySend; the
// sender's own thread connects (address lookup, connect, handshake), writes
// what a full socket buffer left over, notices a closed or stuck connection
// and connects again after a pause (100 ms doubling to 5 s).
class WireSender {
 public:
  // `peer_address`: the peer's raft address (its host is the wire's);
  // `on_open`: called on the sender's thread after each connection opened.
  WireSender(const TransportOptions& options, raft::NodeId peer, ReplicaMetrics* metrics,
             TestHooks* hooks, std::function<std::string()> peer_address,
             std::function<void()> on_open = nullptr);
  ~WireSender();
  WireSender(const WireSender&) = delete;
  WireSender& operator=(const WireSender&) = delete;

  // The peer's wire port as it announced it (any thread).
  void SetPort(uint16_t port);

  // Raft loop: sends `msgs` (no snapshots) if the connection is open and the
  // batch fits a frame; the messages are then consumed (lost with the
  // connection if it breaks, as on gRPC). False, `msgs` untouched: send them
  // over gRPC.
  bool TrySend(std::vector<raft::Message>& msgs);

  void Stop();

 private:
  void Run();
  absl::StatusOr<Fd> Connect(uint16_t port);
  // Writes as much of pending_ as the socket takes; false on a broken connection.
  bool FlushLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BreakLocked(const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountSent(size_t messages);
  void Wake();

  const TransportOptions& options_;
  const raft::NodeId peer_;
  ReplicaMetrics* const metrics_;
  TestHooks* const hooks_;
  const std::function<std::string()> peer_address_;
  const std::function<void()> on_open_;
  Fd wake_fd_;  // eventfd: the thread's poll() wakes on it
  std::thread thread_;

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  uint16_t port_ ABSL_GUARDED_BY(mu_) = 0;
  // Made and closed by the sender's thread only; the loop may shut it down
  // (BreakLocked), never close it, so the thread's poll() never sees its
  // number reused.
  Fd conn_ ABSL_GUARDED_BY(mu_);
  std::string pending_ ABSL_GUARDED_BY(mu_);  // bytes the socket did not take yet
  size_t pending_messages_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time pending_since_ ABSL_GUARDED_BY(mu_);
  bool open_ ABSL_GUARDED_BY(mu_) = false;  // handshake done, not broken since
  raft::v1::MessageBatch batch_ ABSL_GUARDED_BY(mu_);  // reused
  std::string frame_ ABSL_GUARDED_BY(mu_);             // reused
};

// Sets what the first batch of a stream or connection announces about its
// sender: address, state-machine format, wire port.
void AnnounceSelf(const TransportOptions& options, raft::v1::MessageBatch* batch);

}  // namespace mailgrid::replica
