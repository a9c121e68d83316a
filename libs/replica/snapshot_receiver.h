// SnapshotReceiver: the receiving half of snapshot transfer (RaftService
// OfferSnapshot + InstallSnapshot). Files are staged under
// <incoming_dir>/<term>-<index>/, checked chunk by chunk (CRC-32C) and file
// by file (SHA-256), and the whole snapshot is verified
// (StateMachine::VerifySnapshot) before its raft message is released to the
// core. Anything that fails a check is deleted and refused, so it is fetched
// again on the next attempt and never applied. Complete, verified files
// survive a broken stream: the next offer of the same snapshot skips them.
//
// The raft loop installs a staged snapshot when the core hands it out
// (Ready::snapshot) and then calls Cleanup().
//
// Threads: gRPC handler threads; one stream at a time (a mutex).
#pragma once

#include <atomic>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "libs/raft/types.h"
#include "mailgrid/raft/v1/raft.pb.h"

namespace mailgrid::replica {

class SnapshotReceiver {
 public:
  explicit SnapshotReceiver(std::string incoming_dir);

  // Which of the offered files are already here, complete and verified.
  raft::v1::SnapshotOfferReply Offer(const raft::v1::SnapshotOffer& offer);

  // One InstallSnapshot stream. Add() each chunk in order; a chunk carrying
  // the raft message ends the stream: Add then returns that message, ready to
  // step, once the snapshot verified.
  class Stream {
   public:
    ~Stream();
    // nullopt: more chunks expected. Error: refuse the stream (the offending
    // data is already deleted).
    absl::StatusOr<std::optional<raft::Message>> Add(const raft::v1::SnapshotChunk& chunk);

   private:
    friend class SnapshotReceiver;
    explicit Stream(SnapshotReceiver* r) : r_(r), lock_(&r->stream_mu_) {}
    absl::Status AddData(const std::string& dir, const raft::v1::SnapshotChunk& chunk);
    absl::StatusOr<raft::Message> Finish(const std::string& dir,
                                         const raft::v1::SnapshotChunk& chunk);
    void AbandonFile();

    SnapshotReceiver* r_;
    absl::MutexLock lock_;
    std::string file_path_;  // the file being written
    std::ofstream out_;
    uint64_t written_ = 0;
  };
  std::unique_ptr<Stream> StartStream() { return std::unique_ptr<Stream>(new Stream(this)); }

  // Where the snapshot (term, index) is staged.
  std::string DirFor(raft::Term term, raft::Index index) const;

  // Removes staged snapshots at or below `index` (installed or obsolete).
  void Cleanup(raft::Index index);

  uint64_t refused() const { return refused_.load(); }
  // Files an offer found already here and verified (resumed transfers).
  uint64_t files_reused() const { return files_reused_.load(); }

 private:
  absl::Status Refuse(absl::Status why);

  const std::string incoming_dir_;
  absl::Mutex stream_mu_;
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> files_reused_{0};
};

}  // namespace mailgrid::replica
