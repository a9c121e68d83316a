#include "libs/replica/snapshot_receiver.h"

#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/kv/checksum.h"
#include "libs/kv/state_machine.h"
#include "libs/replica/codec.h"

namespace mailgrid::replica {
namespace {

namespace fs = std::filesystem;

// File names come from the network: plain names only, never a path.
bool SafeFileName(const std::string& name) {
  if (name.empty() || name.size() > 64 || name[0] == '.') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

bool FileMatches(const std::string& path, const kv::v1::SnapshotFile& f) {
  absl::StatusOr<kv::FileDigest> d = kv::Sha256File(path);
  return d.ok() && d->size == f.size() && kv::DigestBytes(d->sha256) == f.sha256();
}

void RemoveQuietly(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
}

}  // namespace

SnapshotReceiver::SnapshotReceiver(std::string incoming_dir)
    : incoming_dir_(std::move(incoming_dir)) {
  std::error_code ec;
  fs::create_directories(incoming_dir_, ec);
}

std::string SnapshotReceiver::DirFor(raft::Term term, raft::Index index) const {
  return absl::StrCat(incoming_dir_, "/", term, "-", index);
}

absl::Status SnapshotReceiver::Refuse(absl::Status why) {
  refused_.fetch_add(1);
  log::Warn("raft: snapshot data refused", {{"error", why}});
  return why;
}

raft::v1::SnapshotOfferReply SnapshotReceiver::Offer(const raft::v1::SnapshotOffer& offer) {
  absl::MutexLock lock(&stream_mu_);  // not while a stream writes these files
  raft::v1::SnapshotOfferReply reply;
  std::string dir = DirFor(offer.meta().term(), offer.meta().index());
  std::error_code ec;
  fs::create_directories(dir, ec);
  for (const kv::v1::SnapshotFile& f : offer.files()) {
    if (!SafeFileName(f.name())) continue;
    std::string path = absl::StrCat(dir, "/", f.name());
    if (!fs::exists(path, ec)) continue;
    if (FileMatches(path, f)) {
      reply.add_have_files(f.name());
      files_reused_.fetch_add(1);
    } else {
      RemoveQuietly(path);  // partial or stale: fetch it again
    }
  }
  return reply;
}

void SnapshotReceiver::Cleanup(raft::Index index) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(incoming_dir_, ec)) {
    std::vector<std::string> parts = absl::StrSplit(entry.path().filename().string(), '-');
    uint64_t staged = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &staged) || staged <= index) {
      RemoveQuietly(entry.path().string());
    }
  }
}

SnapshotReceiver::Stream::~Stream() {
  // A stream that ends mid-file leaves a partial file; the next offer sees
  // that it does not match and deletes it.
  if (out_.is_open()) out_.close();
}

void SnapshotReceiver::Stream::AbandonFile() {
  if (out_.is_open()) out_.close();
  if (!file_path_.empty()) RemoveQuietly(file_path_);
  file_path_.clear();
  written_ = 0;
}

absl::StatusOr<std::optional<raft::Message>> SnapshotReceiver::Stream::Add(
    const raft::v1::SnapshotChunk& chunk) {
  std::string dir = r_->DirFor(chunk.meta().term(), chunk.meta().index());
  if (!chunk.file_name().empty()) RETURN_IF_ERROR(AddData(dir, chunk));
  if (!chunk.has_message()) return std::optional<raft::Message>();
  ASSIGN_OR_RETURN(raft::Message m, Finish(dir, chunk));
  return std::optional<raft::Message>(std::move(m));
}

absl::Status SnapshotReceiver::Stream::AddData(const std::string& dir,
                                               const raft::v1::SnapshotChunk& chunk) {
  if (!SafeFileName(chunk.file_name())) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot chunk: bad file name '", chunk.file_name(), "'"));
  }
  std::string path = absl::StrCat(dir, "/", chunk.file_name());
  if (path != file_path_) {
    if (out_.is_open()) out_.close();
    if (chunk.offset() != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("snapshot chunk: ", chunk.file_name(), " must start at offset 0"));
    }
    std::error_code ec;
    fs::create_directories(dir, ec);
    out_.open(path, std::ios::binary | std::ios::trunc);
    if (!out_) return absl::InternalError(absl::StrCat("snapshot: cannot create ", path));
    file_path_ = path;
    written_ = 0;
  }
  if (chunk.offset() != written_) {
    AbandonFile();
    return absl::FailedPreconditionError(absl::StrCat("snapshot chunk: ", chunk.file_name(),
                                                      " offset ", chunk.offset(), ", expected ",
                                                      written_));
  }
  if (kv::Crc32c(chunk.data()) != chunk.crc32c()) {
    AbandonFile();
    return r_->Refuse(absl::DataLossError(absl::StrCat(
        "snapshot chunk: ", chunk.file_name(), " at ", chunk.offset(), ": CRC-32C mismatch")));
  }
  out_.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
  if (!out_) {
    AbandonFile();
    return absl::ResourceExhaustedError(absl::StrCat("snapshot: cannot write ", path));
  }
  written_ += chunk.data().size();
  if (!chunk.has_file()) return absl::OkStatus();
  // The file is complete: it must be exactly what the sender described.
  out_.close();
  if (!out_ || !FileMatches(path, chunk.file()) || chunk.file().name() != chunk.file_name()) {
    AbandonFile();
    return r_->Refuse(absl::DataLossError(
        absl::StrCat("snapshot file ", chunk.file_name(), ": SHA-256 or size mismatch")));
  }
  file_path_.clear();
  written_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<raft::Message> SnapshotReceiver::Stream::Finish(
    const std::string& dir, const raft::v1::SnapshotChunk& chunk) {
  if (out_.is_open()) AbandonFile();  // the last file never completed
  absl::StatusOr<kv::v1::SnapshotManifest> manifest = kv::StateMachine::VerifySnapshot(dir);
  if (!manifest.ok()) {
    RemoveQuietly(dir);
    return r_->Refuse(manifest.status());
  }
  ASSIGN_OR_RETURN(raft::Message m, FromProto(chunk.message()));
  if (m.type != raft::Message::Type::kSnapshot || manifest->applied_index() != m.snapshot.index ||
      manifest->applied_term() != m.snapshot.term || m.snapshot.index != chunk.meta().index() ||
      m.snapshot.term != chunk.meta().term()) {
    RemoveQuietly(dir);
    return r_->Refuse(absl::DataLossError(
        absl::StrCat("snapshot: data at ", manifest->applied_index(), "/", manifest->applied_term(),
                     " does not match its message at ", m.snapshot.index, "/", m.snapshot.term)));
  }
  return m;
}

}  // namespace mailgrid::replica
