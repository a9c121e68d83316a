#include "libs/replica/transport.h"

#include <algorithm>
#include <deque>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/alarm.h"
#include "grpcpp/client_context.h"
#include "grpcpp/completion_queue.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/raft/storage.h"
#include "libs/replica/channel.h"
#include "libs/replica/codec.h"
#include "libs/replica/thread_name.h"
#include "libs/replica/wire.h"
#include "libs/rpc/status.h"
#include "mailgrid/raft/v1/raft.grpc.pb.h"

namespace mailgrid::replica {

namespace fs = std::filesystem;

// ------------------------------------------------------------- test hooks ---

void TestHooks::SetDroppedPeers(std::set<raft::NodeId> peers) {
  absl::MutexLock lock(&mu_);
  dropped_ = std::move(peers);
}

bool TestHooks::Dropped(raft::NodeId peer) const {
  absl::MutexLock lock(&mu_);
  return dropped_.count(peer) > 0;
}

void TestHooks::CorruptSnapshotChunks(uint32_t in_transit, uint32_t at_source) {
  absl::MutexLock lock(&mu_);
  corrupt_in_transit_ = in_transit;
  corrupt_at_source_ = at_source;
}

int TestHooks::TakeCorruption() {
  absl::MutexLock lock(&mu_);
  if (corrupt_in_transit_ > 0) {
    --corrupt_in_transit_;
    return 1;
  }
  if (corrupt_at_source_ > 0) {
    --corrupt_at_source_;
    return 2;
  }
  return 0;
}

uint64_t ApproxMessageBytes(const raft::Message& m) {
  uint64_t n = 64;
  for (const raft::Entry& e : m.entries) n += raft::EntrySize(e);
  return n;
}

// ----------------------------------------------------------- peer sender ---

// One peer's queue and its sends, all on this sender's own completion queue.
//
// Normally ONE long-lived SendStream call per peer: each batch of queued
// messages is one write on it, one write in flight at a time (order kept).
// Against a peer without SendStream (UNIMPLEMENTED: an older replica during
// a rolling upgrade) it falls back to one asynchronous unary Send per batch,
// one in flight, until the peer's channel is made again. Either way an idle
// sender starts its write or call on the caller's thread (the raft loop), so
// a leader's append or a follower's ack leaves without waking another thread
// first: that wake was on every write's critical path, twice. The sender's
// thread reaps finished writes and calls, sends what queued meanwhile as the
// next one (batching), makes the channel, opens the stream, and wakes on an
// alarm for the pause after a failure and, while a stream is open, every
// kCheckPeriod to close a stream whose write is stuck past send_timeout (the
// unary call's deadline, which a stream has not) or whose channel left READY
// (the peer's server is draining: a graceful shutdown waits for calls in
// flight, and this one would never end on its own).
//
// Lifetime (why not gRPC's callback client, tried and taken back on
// 2026-11-27 after a shutdown abort inside gRPC with calls in flight): every
// call and stream is owned here until its last completion is reaped on this
// thread; Stop() cancels them (Transport::Stop), waits until no write or call
// is in flight, the stream's Finish is reaped and no alarm is armed, then
// shuts the queue down and drains it. Nothing is started once stopping.
class PeerSender {
 public:
  PeerSender(Transport* transport, raft::NodeId peer) : t_(transport), peer_(peer) {
    thread_ = std::thread([this] { Run(); });
  }
  ~PeerSender() { Stop(); }

  // Raft loop: queues `msgs` and, if nothing is in flight (and the peer is
  // not in its pause after a failure), sends them at once from this thread.
  void Enqueue(std::vector<raft::Message> msgs) {
    bool unary = false;
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      for (raft::Message& m : msgs) {
        if (queue_.size() >= t_->options_.max_queued_messages) DropOne();
        queue_.push_back(std::move(m));
      }
      if (busy_ || backoff_) return;  // sent when the write ends / the pause is over
      if (stub_ == nullptr || (!unary_ && stream_state_ != StreamState::kOpen)) {
        // First contact, or no stream open: the sender's thread makes the
        // channel / opens the stream (a stream starting or closing wakes it).
        if (stream_state_ == StreamState::kNone) WakeLocked(absl::Now());
        return;
      }
      busy_ = true;
      unary = unary_;
    }
    if (unary) {
      SendQueued();
    } else {
      WriteQueued();
    }
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      if (!stop_) {
        stop_ = true;
        queue_.clear();
        WakeLocked(absl::Now());
      }
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  static constexpr absl::Duration kCheckPeriod = absl::Milliseconds(500);

  // A unary call in flight (the fallback): everything gRPC needs until its
  // completion is reaped.
  struct Call {
    grpc::ClientContext ctx;
    raft::v1::MessageBatch req;
    raft::v1::SendAck ack;
    grpc::Status status;
    std::shared_ptr<raft::v1::RaftService::Stub> stub;
    std::unique_ptr<grpc::ClientAsyncResponseReader<raft::v1::SendAck>> reader;
  };

  // The open SendStream call. Its three tags are the addresses of the chars.
  struct Stream {
    grpc::ClientContext ctx;
    raft::v1::SendAck ack;
    grpc::Status status;
    std::shared_ptr<raft::v1::RaftService::Stub> stub;
    std::unique_ptr<grpc::ClientAsyncWriter<raft::v1::MessageBatch>> writer;
    // Written by the holder of busy_ only.
    raft::v1::MessageBatch req;  // reused: the batch being written
    int in_flight = 0;           // messages of the write in flight
    bool first = true;           // the first batch carries from_address
    // Under the sender's mu_.
    bool closed_by_us = false;  // channel left READY: not the peer's failure
    bool stalled = false;       // a write outlived send_timeout: a failure
    char start_tag = 0, write_tag = 0, finish_tag = 0;
  };
  enum class StreamState { kNone, kStarting, kOpen, kClosing };

  // The peer is not keeping up (or is down): drop the oldest append, which
  // Raft will resend from the follower's acknowledged point, before anything
  // small and stateful (votes, heartbeats).
  void DropOne() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = std::find_if(queue_.begin(), queue_.end(), [](const raft::Message& m) {
      return m.type == raft::Message::Type::kAppend;
    });
    if (it == queue_.end()) it = queue_.begin();
    queue_.erase(it);
    t_->metrics_->messages_dropped->Increment();
  }

  // The thread wakes at `when` at the latest. One alarm: an earlier need
  // cancels it (it fires at once) and OnAlarm arms it again for what is left.
  void WakeLocked(absl::Time when) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!alarm_armed_) {
      alarm_armed_ = true;
      alarm_when_ = when;
      alarm_.Set(&cq_, absl::ToChronoTime(when), &alarm_tag_);
    } else if (when < alarm_when_) {
      alarm_when_ = absl::InfinitePast();  // cancelled: fires now
      alarm_.Cancel();
    }
  }

  // Gives up the right to send; a stopping sender's thread must hear of it
  // (it waits for nothing in flight before shutting the queue down).
  void ReleaseBusyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    busy_ = false;
    if (stop_) WakeLocked(absl::Now());
  }

  // Takes a batch off the queue (caller holds busy_ and mu_).
  std::vector<raft::Message> TakeBatchLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<raft::Message> batch;
    uint64_t bytes = 0;
    while (!queue_.empty() && (batch.empty() || bytes < t_->options_.max_batch_bytes)) {
      bytes += ApproxMessageBytes(queue_.front());
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    return batch;
  }

  // Fills `out` with the batch's messages; snapshots go to their own thread.
  // False when nothing is left to send (or a test partition drops it).
  bool Encode(std::vector<raft::Message>& batch, raft::v1::MessageBatch* out) {
    out->clear_messages();
    for (raft::Message& m : batch) {
      if (m.type == raft::Message::Type::kSnapshot) {
        t_->StartSnapshot(std::move(m));
        continue;
      }
      ToProto(std::move(m), out->add_messages());  // the batch is ours: no copy
    }
    if (out->messages_size() == 0 || t_->hooks_->Dropped(peer_)) return false;
    out->set_group_id(t_->options_.group_id);
    out->set_from(t_->options_.self);
    out->set_to(peer_);
    return true;
  }

  // Caller holds busy_ with the stream open: writes what is queued as one
  // batch, or releases busy_ if there is nothing to write (or it may not be
  // written now).
  void WriteQueued() {
    while (true) {
      std::vector<raft::Message> batch;
      Stream* s = nullptr;
      {
        absl::MutexLock lock(&mu_);
        if (stop_ || backoff_ || queue_.empty() || stream_state_ != StreamState::kOpen) {
          writing_ = false;
          ReleaseBusyLocked();
          return;
        }
        batch = TakeBatchLocked();
        s = stream_.get();
        writing_ = true;  // from here the stuck-write check times it
        write_started_ = absl::Now();
      }
      if (!Encode(batch, &s->req)) continue;
      if (s->first) {
        AnnounceSelf(t_->options_, &s->req);
        s->first = false;
      } else {
        s->req.clear_from_address();
        s->req.clear_max_format();
        s->req.clear_wire_port();
      }
      s->in_flight = s->req.messages_size();
      s->writer->Write(s->req, &s->write_tag);
      return;  // busy_ stays set until the write is reaped
    }
  }

  // The unary fallback; caller holds busy_: sends what is queued as one
  // call, or releases busy_.
  void SendQueued() {
    while (true) {
      std::vector<raft::Message> batch;
      std::shared_ptr<raft::v1::RaftService::Stub> stub;
      {
        absl::MutexLock lock(&mu_);
        if (stop_ || backoff_ || queue_.empty() || stub_ == nullptr || !unary_) {
          if (!stop_ && !backoff_ && !queue_.empty()) WakeLocked(absl::Now());
          ReleaseBusyLocked();
          return;
        }
        batch = TakeBatchLocked();
        stub = stub_;
      }
      auto call = std::make_unique<Call>();
      if (!Encode(batch, &call->req)) continue;
      AnnounceSelf(t_->options_, &call->req);
      call->ctx.set_deadline(absl::ToChronoTime(absl::Now() + t_->options_.send_timeout));
      if (!t_->RegisterCall(&call->ctx)) {  // the transport is stopping
        absl::MutexLock lock(&mu_);
        ReleaseBusyLocked();
        return;
      }
      call->stub = std::move(stub);
      call->reader = call->stub->PrepareAsyncSend(&call->ctx, call->req, &cq_);
      call->reader->StartCall();
      Call* raw = call.release();  // owned by the queue until Run reaps it
      raw->reader->Finish(&raw->ack, &raw->status, raw);
      return;  // busy_ stays set until the call is reaped
    }
  }

  // Sender thread: starts the stream's Finish (every op reaped or failing).
  void FinishStreamLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    stream_state_ = StreamState::kClosing;
    stream_->writer->Finish(&stream_->status, &stream_->finish_tag);
  }

  // Sender thread: opens the stream. The first batch goes when it is open.
  void StartStream() {
    std::shared_ptr<raft::v1::RaftService::Stub> stub;
    {
      absl::MutexLock lock(&mu_);
      stub = stub_;
      stream_state_ = StreamState::kStarting;
    }
    auto s = std::make_unique<Stream>();
    if (!t_->RegisterCall(&s->ctx)) {  // the transport is stopping
      absl::MutexLock lock(&mu_);
      stream_state_ = StreamState::kNone;
      return;
    }
    s->stub = std::move(stub);
    s->writer = s->stub->PrepareAsyncSendStream(&s->ctx, &s->ack, &cq_);
    s->writer->StartCall(&s->start_tag);
    t_->metrics_->send_streams_opened->Increment();
    absl::MutexLock lock(&mu_);
    stream_ = std::move(s);
  }

  // Sender thread, nothing of ours in flight: send what waits, by the
  // channel's mode (stream or unary), opening the stream if needed.
  void Pump() {
    enum { kNothing, kStart, kWrite, kUnary } what = kNothing;
    {
      absl::MutexLock lock(&mu_);
      if (stop_ || busy_ || backoff_ || stub_ == nullptr || queue_.empty()) return;
      if (unary_) {
        busy_ = true;
        what = kUnary;
      } else if (stream_state_ == StreamState::kNone) {
        what = kStart;
      } else if (stream_state_ == StreamState::kOpen) {
        busy_ = true;
        what = kWrite;
      }
    }
    if (what == kStart) StartStream();
    if (what == kWrite) WriteQueued();
    if (what == kUnary) SendQueued();
  }

  void OnAlarm() {
    bool need_stub = false;
    {
      absl::MutexLock lock(&mu_);
      alarm_armed_ = false;
      const absl::Time now = absl::Now();
      if (backoff_ && now >= backoff_until_) backoff_ = false;
      need_stub = !stop_ && !backoff_ && stub_ == nullptr && !queue_.empty();
      if (stream_ != nullptr) CheckStreamLocked(now);
    }
    if (need_stub) {
      absl::Status made = MakeStub();
      if (!made.ok()) {
        int dropped = 0;
        {
          absl::MutexLock lock(&mu_);
          dropped = static_cast<int>(queue_.size());
          queue_.clear();
        }
        Fail(dropped, made);
        absl::MutexLock lock(&mu_);
        if (!stop_) StartBackoffLocked();
      }
    }
    Pump();
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    if (backoff_) {
      WakeLocked(backoff_until_);
    } else if (stream_ != nullptr) {
      WakeLocked(absl::Now() + kCheckPeriod);
    }
  }

  // Closes the stream when stopping, when its write is stuck, or when the
  // channel left READY; a write in flight fails at the cancel and its
  // completion starts the Finish.
  void CheckStreamLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stream_state_ != StreamState::kOpen) return;  // starting or closing: its tag comes
    bool close = stop_;
    if (!close && writing_ && write_started_ + t_->options_.send_timeout < now) {
      stream_->stalled = close = true;
    }
    if (!close && channel_ != nullptr && channel_->GetState(false) != GRPC_CHANNEL_READY) {
      stream_->closed_by_us = close = true;
    }
    if (!close) return;
    stream_->ctx.TryCancel();
    if (!busy_) FinishStreamLocked();
  }

  void OnStreamStarted(bool ok) {
    {
      absl::MutexLock lock(&mu_);
      if (!ok || stop_) {
        FinishStreamLocked();
        return;
      }
      stream_state_ = StreamState::kOpen;
      WakeLocked(absl::Now() + kCheckPeriod);
    }
    Pump();
  }

  void OnWriteDone(bool ok) {
    if (ok) {
      t_->metrics_->messages_sent->Increment(stream_->in_flight);
      stream_->in_flight = 0;
      NoteReachable();
      WriteQueued();  // we hold busy_: the next batch, or release it
      return;
    }
    absl::MutexLock lock(&mu_);
    writing_ = false;
    ReleaseBusyLocked();
    FinishStreamLocked();  // the status says why
  }

  void OnStreamFinished() {
    std::unique_ptr<Stream> s;
    bool stopping = false;
    {
      absl::MutexLock lock(&mu_);
      s = std::move(stream_);
      stream_state_ = StreamState::kNone;
      stopping = stop_;
    }
    t_->UnregisterCall(&s->ctx);
    const int lost = s->in_flight;  // the last write's messages, if it failed
    if (stopping) {
      // A stream cancelled because we stop is no failure of the peer.
    } else if (s->status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      log::Info("raft: peer has no SendStream, using unary Send",
                {{"peer", peer_}, {"address", address_}});
      t_->metrics_->send_stream_fallbacks->Increment();
      absl::MutexLock lock(&mu_);
      unary_ = true;
    } else if (s->closed_by_us && !s->stalled) {
      // The channel left READY (the peer drains or the connection broke):
      // the next batch opens a new stream, whose outcome tells which.
    } else {
      Fail(lost, s->stalled ? absl::DeadlineExceededError("stream write stuck")
                            : rpc::FromGrpc(s->status));
      absl::MutexLock lock(&mu_);
      ResetStubLocked();
      StartBackoffLocked();
      WakeLocked(backoff_until_);
    }
    Pump();
  }

  void OnCallDone(std::unique_ptr<Call> call) {
    t_->UnregisterCall(&call->ctx);
    if (call->status.ok()) {
      t_->metrics_->messages_sent->Increment(call->req.messages_size());
      NoteReachable();
      SendQueued();  // we hold busy_: the next batch, or release it
      return;
    }
    bool stopping = false;
    {
      absl::MutexLock lock(&mu_);
      stopping = stop_;
    }
    // A call cancelled because we stop is no failure of the peer.
    if (!stopping) Fail(call->req.messages_size(), rpc::FromGrpc(call->status));
    absl::MutexLock lock(&mu_);
    // Look the address up again next time: the member may have moved (and
    // may have been upgraded: the new channel tries a stream first).
    ResetStubLocked();
    if (!stop_) {
      StartBackoffLocked();
      WakeLocked(backoff_until_);
    }
    ReleaseBusyLocked();
  }

  void Run() {
    NameThisThread("raft-send");
    bool shut = false;
    void* tag = nullptr;
    bool ok = false;
    while (cq_.Next(&tag, &ok)) {
      Stream* s = stream_.get();  // only this thread replaces stream_
      if (tag == &alarm_tag_) {
        OnAlarm();
      } else if (s != nullptr && tag == &s->start_tag) {
        OnStreamStarted(ok);
      } else if (s != nullptr && tag == &s->write_tag) {
        OnWriteDone(ok);
      } else if (s != nullptr && tag == &s->finish_tag) {
        OnStreamFinished();
      } else {
        OnCallDone(std::unique_ptr<Call>(static_cast<Call*>(tag)));
      }
      absl::MutexLock lock(&mu_);
      if (stop_ && !busy_ && stream_ != nullptr && stream_state_ == StreamState::kOpen) {
        FinishStreamLocked();  // cancelled by Transport::Stop: returns at once
      }
      if (stop_ && !busy_ && !alarm_armed_ && stream_ == nullptr && !shut) {
        shut = true;
        cq_.Shutdown();  // Next drains what is left, then returns false
      }
    }
  }

  // Unreachable: wait a little (queued messages keep accumulating, up to the
  // bound) instead of hammering a dead connection.
  // Sender thread.
  void StartBackoffLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    backoff_ = true;
    backoff_until_ = absl::Now() + next_backoff_;
    next_backoff_ = std::min(next_backoff_ * 2, absl::Seconds(1));
  }

  void ResetStubLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    stub_.reset();
    channel_.reset();
  }

  // Sender thread, without mu_ held (reads certificates for TLS).
  absl::Status MakeStub() {
    std::string address = t_->host_->PeerAddress(peer_);
    if (address.empty()) return absl::NotFoundError("no address known");
    address_ = address;
    // Keepalive pings no more often than a gRPC server accepts them on a
    // connection where it sends nothing (5 min, else it answers GOAWAY
    // "too_many_pings"): a stream's server never answers until it ends. A
    // dead peer is noticed by the stuck-write check instead.
    ASSIGN_OR_RETURN(auto channel, MakeReplicaChannel(address, t_->options_.tls,
                                                      /*keepalive_ms=*/6 * 60 * 1000));
    std::shared_ptr<raft::v1::RaftService::Stub> stub = raft::v1::RaftService::NewStub(channel);
    absl::MutexLock lock(&mu_);
    stub_ = std::move(stub);
    channel_ = std::move(channel);
    unary_ = !t_->options_.stream;  // a new channel (maybe an upgraded peer) tries a stream
    return absl::OkStatus();
  }

  // Sender thread.
  void NoteReachable() {
    next_backoff_ = absl::Milliseconds(50);
    if (failing_) {
      log::Info("raft: peer reachable again", {{"peer", peer_}, {"address", address_}});
      failing_ = false;
    }
  }

  void Fail(int messages, const absl::Status& why) {
    t_->metrics_->send_failures->Increment();
    t_->metrics_->messages_dropped->Increment(messages);
    if (!failing_) {
      log::Warn("raft: peer unreachable", {{"peer", peer_}, {"address", address_}, {"error", why}});
      failing_ = true;
    }
    t_->host_->ReportUnreachable(peer_);
  }

  Transport* const t_;
  const raft::NodeId peer_;
  // A polling queue: gRPC 1.51 asserts that a client call's queue has a
  // pollset (GRPC_CQ_NON_POLLING, tried 2026-11-28 to keep this thread out of
  // the epoll1 poller hand-offs, aborts in polling_entity.cc).
  grpc::CompletionQueue cq_;  // declared before alarm_: outlives it
  grpc::Alarm alarm_;
  char alarm_tag_ = 0;  // its address tags the alarm's events
  absl::Mutex mu_;
  std::deque<raft::Message> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool busy_ ABSL_GUARDED_BY(mu_) = false;     // a write or call in flight, or being started
  bool backoff_ ABSL_GUARDED_BY(mu_) = false;  // pausing after a failure
  absl::Time backoff_until_ ABSL_GUARDED_BY(mu_);
  bool alarm_armed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time alarm_when_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<raft::v1::RaftService::Stub> stub_ ABSL_GUARDED_BY(mu_);
  bool unary_ ABSL_GUARDED_BY(mu_) = false;  // this channel's peer has no SendStream
  // Replaced only by this sender's thread (StartStream, OnStreamFinished);
  // the loop thread touches it only while holding busy_ with it open.
  std::unique_ptr<Stream> stream_;
  StreamState stream_state_ ABSL_GUARDED_BY(mu_) = StreamState::kNone;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;  // a stream write taken off the queue, unfinished
  absl::Time write_started_ ABSL_GUARDED_BY(mu_);
  // Sender thread only.
  std::string address_;
  bool failing_ = false;
  absl::Duration next_backoff_ = absl::Milliseconds(50);
  std::thread thread_;
};

// -------------------------------------------------------------- transport ---

Transport::Transport(TransportOptions options, TransportHost* host, ReplicaMetrics* metrics,
                     TestHooks* hooks)
    : options_(std::move(options)), host_(host), metrics_(metrics), hooks_(hooks) {
  std::error_code ec;
  fs::remove_all(options_.snapshot_dir, ec);  // dumps of a previous run
  fs::create_directories(options_.snapshot_dir, ec);
}

Transport::~Transport() { Stop(); }

bool Transport::RegisterCall(grpc::ClientContext* ctx) {
  absl::MutexLock lock(&calls_mu_);
  if (stopping()) return false;
  calls_.insert(ctx);
  return true;
}

void Transport::UnregisterCall(grpc::ClientContext* ctx) {
  absl::MutexLock lock(&calls_mu_);
  calls_.erase(ctx);
}

void Transport::Stop() {
  {
    absl::MutexLock lock(&calls_mu_);
    if (stopping_.exchange(true)) return;
    for (grpc::ClientContext* ctx : calls_) ctx->TryCancel();
  }
  std::map<raft::NodeId, std::shared_ptr<PeerSender>> senders;
  std::map<raft::NodeId, std::unique_ptr<WireSender>> wires;
  std::map<raft::NodeId, std::thread> snapshots;
  {
    absl::MutexLock lock(&mu_);
    senders.swap(senders_);
    wires.swap(wires_);
    snapshots.swap(snapshot_threads_);
  }
  for (auto& [id, wire] : wires) wire->Stop();
  for (auto& [id, sender] : senders) sender->Stop();
  for (auto& [id, thread] : snapshots) {
    if (thread.joinable()) thread.join();
  }
  absl::MutexLock lock(&snapshot_mu_);
  cached_snapshot_.reset();
}

std::shared_ptr<PeerSender> Transport::Sender(raft::NodeId peer) {
  absl::MutexLock lock(&mu_);
  if (stopping()) return nullptr;
  auto& sender = senders_[peer];
  if (sender == nullptr) sender = std::make_shared<PeerSender>(this, peer);
  return sender;
}

void Transport::RetireGrpcSender(raft::NodeId peer) {
  std::shared_ptr<PeerSender> sender;
  {
    absl::MutexLock lock(&mu_);
    auto it = senders_.find(peer);
    if (it == senders_.end()) return;
    sender = std::move(it->second);
    senders_.erase(it);
  }
  sender->Stop();  // what it still queued is dropped: Raft resends what matters
}

WireSender* Transport::Wire(raft::NodeId peer) {
  absl::MutexLock lock(&mu_);
  auto it = wires_.find(peer);
  return it == wires_.end() ? nullptr : it->second.get();
}

void Transport::NoteWirePort(raft::NodeId peer, uint16_t port) {
  if (!options_.wire || port == 0 || peer == options_.self) return;
  absl::MutexLock lock(&mu_);  // held: Stop() must not destroy the sender meanwhile
  if (stopping()) return;
  auto& wire = wires_[peer];
  if (wire == nullptr) {
    wire = std::make_unique<WireSender>(
        options_, peer, metrics_, hooks_, [this, peer] { return host_->PeerAddress(peer); },
        [this, peer] { RetireGrpcSender(peer); });
  }
  wire->SetPort(port);
}

void Transport::Send(std::vector<raft::Message> messages) {
  // Per peer, so each peer's messages of one Ready leave as one call.
  std::map<raft::NodeId, std::vector<raft::Message>> by_peer;
  for (raft::Message& m : messages) {
    if (m.to == options_.self || m.to == raft::kNoNode) continue;
    by_peer[m.to].push_back(std::move(m));
  }
  for (auto& [peer, msgs] : by_peer) {
    const bool has_snapshot = std::any_of(msgs.begin(), msgs.end(), [](const raft::Message& m) {
      return m.type == raft::Message::Type::kSnapshot;
    });
    WireSender* wire = has_snapshot ? nullptr : Wire(peer);  // snapshots: gRPC's thread
    if (wire != nullptr && wire->TrySend(msgs)) continue;
    std::shared_ptr<PeerSender> sender = Sender(peer);
    if (sender == nullptr) return;
    sender->Enqueue(std::move(msgs));
  }
}

}  // namespace mailgrid::replica
