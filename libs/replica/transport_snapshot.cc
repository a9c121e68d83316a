// Transport's snapshot sending: dump (or reuse the last dump), offer,
// stream the missing files in CRC-checked chunks, the raft message last
// (transport.h describes the protocol; the receiving side is
// snapshot_receiver.h).
#include <filesystem>
#include <fstream>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/client_context.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/kv/checksum.h"
#include "libs/replica/channel.h"
#include "libs/replica/codec.h"
#include "libs/replica/thread_name.h"
#include "libs/replica/transport.h"
#include "libs/rpc/status.h"
#include "mailgrid/raft/v1/raft.grpc.pb.h"

namespace mailgrid::replica {

namespace fs = std::filesystem;

// A dump of the state machine on disk, removed when the last user is done.
struct OutgoingSnapshot {
  kv::SnapshotInfo info;
  ~OutgoingSnapshot() {
    std::error_code ec;
    fs::remove_all(info.dir, ec);
  }
};

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
  NameThisThread("raft-snapshot");
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
