// Linearizable reads (raft loop thread): ReadIndex, batched. Every read
// that arrives in one loop iteration shares one ReadIndex round (one
// heartbeat quorum), then waits until the local apply point reaches the
// confirmed index; the caller reads the state machine itself.
#include <algorithm>
#include <utility>

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
    for (ReadRequest& r : reads) r.done(NotLeader());
    return;
  }
  std::string ctx = absl::StrCat(options_.id, "/", ++read_seq_);
  absl::Status s = node_->ReadIndex(ctx);
  if (!s.ok()) {
    for (ReadRequest& r : reads) r.done(absl::UnavailableError(s.message()));
    return;
  }
  ReadBatch& batch = read_batches_[ctx];
  batch.started = absl::Now();
  for (ReadRequest& r : reads) batch.waiters.push_back(std::move(r));
}

void Replica::AnswerRead(ReadCallback done, absl::StatusOr<raft::Index> r) {
  completer_.Add([done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
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
    AnswerRead(std::move(it->second.done), it->first);
    it = confirmed_reads_.erase(it);
  }
  if (read_batches_.empty()) return;
  const absl::Time expired = absl::Now() - kReadBatchExpiry;
  for (auto b = read_batches_.begin(); b != read_batches_.end();) {
    if (b->second.started < expired) {
      for (ReadRequest& w : b->second.waiters) {
        AnswerRead(std::move(w.done), absl::UnavailableError("read index dropped"));
      }
      b = read_batches_.erase(b);
    } else {
      ++b;
    }
  }
}

void Replica::FailReads(const absl::Status& why) {
  for (auto& [ctx, batch] : read_batches_) {
    for (ReadRequest& w : batch.waiters) w.done(why);
  }
  read_batches_.clear();
  for (auto& [index, w] : confirmed_reads_) w.done(why);
  confirmed_reads_.clear();
}

void Replica::ExpireReads(absl::Time now) {
  const absl::Status late =
      absl::DeadlineExceededError("linearizable read: not confirmed before the deadline");
  for (auto& [ctx, batch] : read_batches_) {
    std::vector<ReadRequest>& w = batch.waiters;
    for (ReadRequest& r : w) {
      if (r.done && r.deadline <= now) AnswerRead(std::exchange(r.done, nullptr), late);
    }
    w.erase(std::remove_if(w.begin(), w.end(), [](const ReadRequest& r) { return !r.done; }),
            w.end());
  }
  for (auto it = confirmed_reads_.begin(); it != confirmed_reads_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    AnswerRead(std::move(it->second.done), late);
    it = confirmed_reads_.erase(it);
  }
}

}  // namespace mailgrid::replica
