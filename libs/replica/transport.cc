#include "libs/replica/transport.h"

#include <algorithm>
#include <deque>
#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/alarm.h"
#include "grpcpp/client_context.h"
#include "grpcpp/completion_queue.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/kv/checksum.h"
#include "libs/raft/storage.h"
#include "libs/replica/channel.h"
#include "libs/replica/codec.h"
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

// ----------------------------------------------------------- peer sender ---

// One peer's queue and its calls: asynchronous RaftService.Send calls on this
// sender's own completion queue, one in flight at a time (so order is kept).
// An idle sender starts its call on the caller's thread (the raft loop), so
// a leader's append or a follower's ack leaves without waking another thread
// first: that wake was on every write's critical path, twice (leader append,
// follower ack). The sender's thread reaps finished calls, sends what queued
// meanwhile as the next call (batching), creates the channel, and times the
// pause after a failure (a grpc::Alarm on the same queue).
//
// Lifetime (why not gRPC's callback client, tried and taken back on
// 2026-11-27 after a shutdown abort inside gRPC with calls in flight): every
// call is owned here until its completion is reaped on this thread; Stop()
// cancels the calls (Transport::Stop), waits until none is in flight and no
// alarm is armed, then shuts the queue down and drains it before the thread
// ends. Nothing is started once stopping.
class PeerSender {
 public:
  PeerSender(Transport* transport, raft::NodeId peer) : t_(transport), peer_(peer) {
    thread_ = std::thread([this] { Run(); });
  }
  ~PeerSender() { Stop(); }

  // Raft loop: queues `msgs` and, if no call is in flight (and the peer is
  // not in its pause after a failure), sends them at once from this thread.
  void Enqueue(std::vector<raft::Message> msgs) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      for (raft::Message& m : msgs) {
        if (queue_.size() >= t_->options_.max_queued_messages) DropOne();
        queue_.push_back(std::move(m));
      }
      if (busy_ || backoff_) return;  // sent when the call ends / the pause is over
      if (stub_ == nullptr) {
        ArmAlarmLocked(absl::Now());  // first contact: the channel is made on our thread
        return;
      }
      busy_ = true;
    }
    SendQueued();
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      if (!stop_) {
        stop_ = true;
        queue_.clear();
        if (alarm_armed_) {
          alarm_.Cancel();  // fires now
        } else {
          ArmAlarmLocked(absl::Now());
        }
      }
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  // A call in flight: everything gRPC needs until its completion is reaped.
  struct Call {
    grpc::ClientContext ctx;
    raft::v1::MessageBatch req;
    raft::v1::SendAck ack;
    grpc::Status status;
    std::shared_ptr<raft::v1::RaftService::Stub> stub;
    std::unique_ptr<grpc::ClientAsyncResponseReader<raft::v1::SendAck>> reader;
  };

  static uint64_t Size(const raft::Message& m) {
    uint64_t n = 64;
    for (const raft::Entry& e : m.entries) n += raft::EntrySize(e);
    return n;
  }

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

  void ArmAlarmLocked(absl::Time when) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (alarm_armed_) return;
    alarm_armed_ = true;
    alarm_.Set(&cq_, absl::ToChronoTime(when), &alarm_tag_);
  }

  // Gives up the right to send; a stopping sender's thread must hear of it
  // (it waits for no call in flight before shutting the queue down).
  void ReleaseBusyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    busy_ = false;
    if (stop_) ArmAlarmLocked(absl::Now());
  }

  // Caller holds busy_ (the right to start the one call in flight): sends
  // what is queued as one call, or releases busy_ if there is nothing to
  // send (or it may not be sent now).
  void SendQueued() {
    while (true) {
      std::vector<raft::Message> batch;
      std::shared_ptr<raft::v1::RaftService::Stub> stub;
      {
        absl::MutexLock lock(&mu_);
        if (stop_ || backoff_ || queue_.empty() || stub_ == nullptr) {
          if (!stop_ && !backoff_ && !queue_.empty()) ArmAlarmLocked(absl::Now());
          ReleaseBusyLocked();
          return;
        }
        uint64_t bytes = 0;
        while (!queue_.empty() && (batch.empty() || bytes < t_->options_.max_batch_bytes)) {
          bytes += Size(queue_.front());
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        stub = stub_;
      }
      auto call = std::make_unique<Call>();
      for (raft::Message& m : batch) {
        if (m.type == raft::Message::Type::kSnapshot) {
          t_->StartSnapshot(std::move(m));
          continue;
        }
        ToProto(m, call->req.add_messages());
      }
      // Nothing for Send, or a partition that loses packets silently.
      if (call->req.messages_size() == 0 || t_->hooks_->Dropped(peer_)) continue;
      call->req.set_group_id(t_->options_.group_id);
      call->req.set_from(t_->options_.self);
      call->req.set_to(peer_);
      call->req.set_from_address(t_->options_.self_address);
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

  void Run() {
    absl::Duration backoff = absl::Milliseconds(50);
    bool shut = false;
    void* tag = nullptr;
    bool ok = false;
    while (cq_.Next(&tag, &ok)) {
      if (tag == &alarm_tag_) {
        bool need_stub = false;
        {
          absl::MutexLock lock(&mu_);
          alarm_armed_ = false;
          backoff_ = false;
          need_stub = !stop_ && stub_ == nullptr && !queue_.empty();
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
            if (!stop_) StartBackoffLocked(backoff);
          }
        }
        bool send = false;
        {
          absl::MutexLock lock(&mu_);
          if (!stop_ && !busy_ && !backoff_ && stub_ != nullptr && !queue_.empty()) {
            send = busy_ = true;
          }
        }
        if (send) SendQueued();
      } else {
        std::unique_ptr<Call> call(static_cast<Call*>(tag));
        t_->UnregisterCall(&call->ctx);
        if (call->status.ok()) {
          backoff = absl::Milliseconds(50);
          t_->metrics_->messages_sent->Increment(call->req.messages_size());
          if (failing_) {
            log::Info("raft: peer reachable again", {{"peer", peer_}, {"address", address_}});
            failing_ = false;
          }
          SendQueued();  // we hold busy_: the next batch, or release it
        } else {
          bool stopping = false;
          {
            absl::MutexLock lock(&mu_);
            stopping = stop_;
          }
          // A call cancelled because we stop is no failure of the peer.
          if (!stopping) Fail(call->req.messages_size(), rpc::FromGrpc(call->status));
          absl::MutexLock lock(&mu_);
          // Look the address up again next time: the member may have moved.
          stub_.reset();
          if (!stop_) StartBackoffLocked(backoff);
          ReleaseBusyLocked();
        }
      }
      absl::MutexLock lock(&mu_);
      if (stop_ && !busy_ && !alarm_armed_ && !shut) {
        shut = true;
        cq_.Shutdown();  // Next drains what is left, then returns false
      }
    }
  }

  // Unreachable: wait a little (queued messages keep accumulating, up to the
  // bound) instead of hammering a dead connection.
  void StartBackoffLocked(absl::Duration& backoff) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    backoff_ = true;
    ArmAlarmLocked(absl::Now() + backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }

  // Sender thread, without mu_ held (reads certificates for TLS).
  absl::Status MakeStub() {
    std::string address = t_->host_->PeerAddress(peer_);
    if (address.empty()) return absl::NotFoundError("no address known");
    address_ = address;
    ASSIGN_OR_RETURN(auto channel, MakeReplicaChannel(address, t_->options_.tls));
    std::shared_ptr<raft::v1::RaftService::Stub> stub = raft::v1::RaftService::NewStub(channel);
    absl::MutexLock lock(&mu_);
    stub_ = std::move(stub);
    return absl::OkStatus();
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
  grpc::CompletionQueue cq_;  // declared before alarm_: outlives it
  grpc::Alarm alarm_;
  char alarm_tag_ = 0;  // its address tags the alarm's events
  absl::Mutex mu_;
  std::deque<raft::Message> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool busy_ ABSL_GUARDED_BY(mu_) = false;     // a call in flight, or one being started
  bool backoff_ ABSL_GUARDED_BY(mu_) = false;  // pausing after a failure
  bool alarm_armed_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<raft::v1::RaftService::Stub> stub_ ABSL_GUARDED_BY(mu_);
  // Sender thread only.
  std::string address_;
  bool failing_ = false;
  std::thread thread_;
};

// -------------------------------------------------------------- transport ---

// A dump of the state machine on disk, removed when the last user is done.
struct OutgoingSnapshot {
  kv::SnapshotInfo info;
  ~OutgoingSnapshot() {
    std::error_code ec;
    fs::remove_all(info.dir, ec);
  }
};

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
  std::map<raft::NodeId, std::unique_ptr<PeerSender>> senders;
  std::map<raft::NodeId, std::thread> snapshots;
  {
    absl::MutexLock lock(&mu_);
    senders.swap(senders_);
    snapshots.swap(snapshot_threads_);
  }
  for (auto& [id, sender] : senders) sender->Stop();
  for (auto& [id, thread] : snapshots) {
    if (thread.joinable()) thread.join();
  }
  absl::MutexLock lock(&snapshot_mu_);
  cached_snapshot_.reset();
}

PeerSender* Transport::Sender(raft::NodeId peer) {
  absl::MutexLock lock(&mu_);
  if (stopping()) return nullptr;
  auto& sender = senders_[peer];
  if (sender == nullptr) sender = std::make_unique<PeerSender>(this, peer);
  return sender.get();
}

void Transport::Send(std::vector<raft::Message> messages) {
  // Per peer, so each peer's messages of one Ready leave as one call.
  std::map<raft::NodeId, std::vector<raft::Message>> by_peer;
  for (raft::Message& m : messages) {
    if (m.to == options_.self || m.to == raft::kNoNode) continue;
    by_peer[m.to].push_back(std::move(m));
  }
  for (auto& [peer, msgs] : by_peer) {
    PeerSender* sender = Sender(peer);
    if (sender == nullptr) return;
    sender->Enqueue(std::move(msgs));
  }
}

void Transport::StartSnapshot(raft::Message m) {
  absl::MutexLock lock(&mu_);
  if (stopping()) return;
  const raft::NodeId peer = m.to;
  // The core sends one snapshot at a time per follower; a second request
  // while one streams would only duplicate work.
  if (snapshot_in_progress_.count(peer) > 0) return;
  snapshot_in_progress_.insert(peer);
  auto it = snapshot_threads_.find(peer);
  if (it != snapshot_threads_.end() && it->second.joinable()) it->second.join();  // finished
  snapshot_threads_[peer] =
      std::thread([this, m = std::move(m)]() mutable { RunSnapshot(std::move(m)); });
}

void Transport::RunSnapshot(raft::Message m) {
  const raft::NodeId peer = m.to;
  absl::Status result;
  if (hooks_->Dropped(peer)) {
    result = absl::UnavailableError("peer partitioned (test hook)");
  } else {
    absl::StatusOr<std::shared_ptr<OutgoingSnapshot>> snap = SnapshotFor(m.snapshot.index);
    result = snap.ok() ? StreamSnapshot(m, **snap) : snap.status();
  }
  if (result.ok()) {
    metrics_->snapshot_sends_ok->Increment();
    log::Info("raft: snapshot sent", {{"peer", peer}});
  } else {
    metrics_->snapshot_sends_failed->Increment();
    log::Warn("raft: snapshot send failed", {{"peer", peer}, {"error", result}});
  }
  host_->ReportSnapshot(peer, result.ok());
  absl::MutexLock lock(&mu_);
  snapshot_in_progress_.erase(peer);
}

absl::StatusOr<std::shared_ptr<OutgoingSnapshot>> Transport::SnapshotFor(raft::Index at_least) {
  absl::MutexLock lock(&snapshot_mu_);
  // Reusing the previous dump is what makes a failed transfer resumable: the
  // receiver still holds the files it verified last time.
  if (cached_snapshot_ != nullptr && cached_snapshot_->info.applied.index >= at_least) {
    return cached_snapshot_;
  }
  std::string dir = absl::StrCat(options_.snapshot_dir, "/out-", ++snapshot_seq_);
  ASSIGN_OR_RETURN(kv::SnapshotInfo info, host_->CreateSnapshot(dir));
  auto snap = std::make_shared<OutgoingSnapshot>();
  snap->info = std::move(info);
  if (snap->info.applied.index < at_least) {
    return absl::FailedPreconditionError(absl::StrCat("state machine at ", snap->info.applied.index,
                                                      " is behind the snapshot point ", at_least));
  }
  log::Info("raft: snapshot dumped", {{"index", snap->info.applied.index},
                                      {"files", static_cast<int>(snap->info.files.size())}});
  cached_snapshot_ = snap;
  return snap;
}

namespace {

absl::Status StreamFile(grpc::ClientWriter<raft::v1::SnapshotChunk>* writer,
                        const raft::v1::SnapshotChunk& header, const std::string& dir,
                        const kv::v1::SnapshotFile& file, uint64_t chunk_bytes, int* corruption,
                        const std::atomic<bool>& stopping) {
  std::ifstream in(absl::StrCat(dir, "/", file.name()), std::ios::binary);
  if (!in) return absl::InternalError(absl::StrCat("snapshot: cannot read ", file.name()));
  std::string buf(chunk_bytes, '\0');
  uint64_t offset = 0;
  do {
    if (stopping.load()) return absl::CancelledError("transport stopping");
    in.read(buf.data(), static_cast<std::streamsize>(chunk_bytes));
    size_t n = static_cast<size_t>(in.gcount());
    raft::v1::SnapshotChunk chunk = header;
    chunk.set_file_name(file.name());
    chunk.set_offset(offset);
    std::string* data = chunk.mutable_data();
    data->assign(buf.data(), n);
    const int damage = n > 0 ? *corruption : 0;
    if (damage != 0) *corruption = 0;  // one damaged chunk per stream
    if (damage == 2) (*data)[n / 2] ^= 0x5a;
    chunk.set_crc32c(kv::Crc32c(*data));
    if (damage == 1) (*data)[n / 2] ^= 0x5a;
    offset += n;
    if (offset >= file.size()) *chunk.mutable_file() = file;
    if (!writer->Write(chunk)) return absl::UnavailableError("snapshot stream broken");
  } while (offset < file.size());
  return absl::OkStatus();
}

}  // namespace

absl::Status Transport::StreamSnapshot(raft::Message m, const OutgoingSnapshot& snap) {
  const kv::SnapshotInfo& info = snap.info;
  // The core asked for its log's snapshot point; the dump is at the state
  // machine's applied point, which is at least as new and equally valid
  // (committed and applied here). The follower continues from there.
  m.snapshot =
      raft::SnapshotMeta{info.applied.index, info.applied.term, FromProto(info.applied.conf)};
  raft::v1::SnapshotChunk header;
  header.set_group_id(options_.group_id);
  header.set_from(options_.self);
  header.set_to(m.to);
  ToProto(m.snapshot, header.mutable_meta());

  std::string address = host_->PeerAddress(m.to);
  if (address.empty()) return absl::NotFoundError("no address known for peer");
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   MakeReplicaChannel(address, options_.tls));
  auto stub = raft::v1::RaftService::NewStub(channel);

  raft::v1::SnapshotOffer offer;
  offer.set_group_id(options_.group_id);
  offer.set_from(options_.self);
  offer.set_to(m.to);
  *offer.mutable_meta() = header.meta();
  for (const kv::v1::SnapshotFile& f : info.files) *offer.add_files() = f;
  raft::v1::SnapshotOfferReply have;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.send_timeout));
    if (!RegisterCall(&ctx)) return absl::CancelledError("transport stopping");
    grpc::Status s = stub->OfferSnapshot(&ctx, offer, &have);
    UnregisterCall(&ctx);
    RETURN_IF_ERROR(rpc::FromGrpc(s));
  }
  std::set<std::string> skip(have.have_files().begin(), have.have_files().end());

  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.snapshot_timeout));
  if (!RegisterCall(&ctx)) return absl::CancelledError("transport stopping");
  struct Unregister {
    Transport* t;
    grpc::ClientContext* ctx;
    ~Unregister() { t->UnregisterCall(ctx); }
  } unregister{this, &ctx};
  raft::v1::InstallSnapshotReply reply;
  std::unique_ptr<grpc::ClientWriter<raft::v1::SnapshotChunk>> writer(
      stub->InstallSnapshot(&ctx, &reply));
  std::vector<const kv::v1::SnapshotFile*> to_send;
  for (const kv::v1::SnapshotFile& f : info.files) {
    if (skip.count(f.name()) == 0) to_send.push_back(&f);
  }
  // Test builds: damage this stream's LAST file, so that a retry shows the
  // files before it being resumed rather than sent again.
  int corruption = hooks_->TakeCorruption();
  int no_corruption = 0;
  absl::Status streamed;
  for (size_t i = 0; i < to_send.size() && streamed.ok(); ++i) {
    streamed =
        StreamFile(writer.get(), header, info.dir, *to_send[i], options_.snapshot_chunk_bytes,
                   i + 1 == to_send.size() ? &corruption : &no_corruption, stopping_);
  }
  const uint64_t sent_files = to_send.size();
  if (streamed.ok()) {
    raft::v1::SnapshotChunk last = header;
    ToProto(m, last.mutable_message());
    if (!writer->Write(last)) streamed = absl::UnavailableError("snapshot stream broken");
  }
  writer->WritesDone();
  // The server's status explains a broken stream better than Write's false.
  absl::Status finished = rpc::FromGrpc(writer->Finish());
  RETURN_IF_ERROR(finished);
  RETURN_IF_ERROR(streamed);
  if (!reply.installed()) return absl::InternalError("receiver did not take the snapshot");
  log::Info("raft: snapshot streamed", {{"peer", m.to},
                                        {"index", m.snapshot.index},
                                        {"files_sent", sent_files},
                                        {"files_resumed", static_cast<uint64_t>(skip.size())}});
  return absl::OkStatus();
}

}  // namespace mailgrid::replica
