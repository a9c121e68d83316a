// Linearizable reads (raft loop thread): ReadIndex, batched. Every read
// that arrives in one loop iteration shares one ReadIndex round (one
// heartbeat quorum), then waits until the local apply point reaches the
// confirmed index; the caller reads the state machine itself.
#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/replica/replica.h"

namespace mailgrid::replica {
namespace {

// A ReadIndex the core dropped (leadership changed hands quietly) is never
// answered; its callers time out long before this, so the batch is garbage.
constexpr absl::Duration kReadBatchExpiry = absl::Minutes(2);

}  // namespace

void Replica::StartReads(std::vector<ReadRequest> reads) {
  if (reads.empty()) return;
  if (soft_.role != raft::Role::kLeader) {
    for (ReadRequest& r : reads) r.done->Set(NotLeader());
    return;
  }
  std::string ctx = absl::StrCat(options_.id, "/", ++read_seq_);
  absl::Status s = node_->ReadIndex(ctx);
  if (!s.ok()) {
    for (ReadRequest& r : reads) r.done->Set(absl::UnavailableError(s.message()));
    return;
  }
  ReadBatch& batch = read_batches_[ctx];
  batch.started = absl::Now();
  for (ReadRequest& r : reads) batch.waiters.push_back(std::move(r.done));
}

void Replica::OnReadStates(const std::vector<raft::ReadState>& states) {
  for (const raft::ReadState& rs : states) {
    auto it = read_batches_.find(rs.context);
    if (it == read_batches_.end()) continue;
    for (auto& w : it->second.waiters) confirmed_reads_.emplace(rs.index, std::move(w));
    read_batches_.erase(it);
  }
}

void Replica::CompleteReads() {
  const raft::Index applied = sm_->applied_index();
  auto it = confirmed_reads_.begin();
  while (it != confirmed_reads_.end() && it->first <= applied) {
    it->second->Set(it->first);
    it = confirmed_reads_.erase(it);
  }
  if (read_batches_.empty()) return;
  const absl::Time expired = absl::Now() - kReadBatchExpiry;
  for (auto b = read_batches_.begin(); b != read_batches_.end();) {
    if (b->second.started < expired) {
      for (auto& w : b->second.waiters) w->Set(absl::UnavailableError("read index dropped"));
      b = read_batches_.erase(b);
    } else {
      ++b;
    }
  }
}

void Replica::FailReads(const absl::Status& why) {
  for (auto& [ctx, batch] : read_batches_) {
    for (auto& w : batch.waiters) w->Set(why);
  }
  read_batches_.clear();
  for (auto& [index, w] : confirmed_reads_) w->Set(why);
  confirmed_reads_.clear();
}

}  // namespace mailgrid::replica
