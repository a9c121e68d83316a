// Applying committed entries (raft loop thread), resolving the writers and
// membership changes that wait for them, and compacting the log.
#include <algorithm>
#include <span>

#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/replica/codec.h"
#include "libs/replica/replica.h"

namespace mailgrid::replica {
namespace {

absl::Status LostLeadership() {
  return absl::UnavailableError(
      "lost leadership before the write committed; safe to retry with the same request_id");
}

}  // namespace

bool Replica::ApplyCommitted(std::span<const raft::Entry> entries) {
  size_t i = 0;
  while (i < entries.size()) {
    const raft::Entry& e = entries[i];
    // Already applied before a restart (the state machine skips it too).
    if (e.index <= sm_->applied_index()) {
      ++i;
      continue;
    }
    if (e.type == raft::Entry::Type::kConfChange) {
      if (!RetryStorage("apply", [&] { return ApplyConfChange(e); })) return false;
      ++i;
      continue;
    }
    // A run of commands and noops up to the next membership change: one
    // RocksDB write for all of them (the state machine may take a prefix).
    size_t end = i;
    while (end < entries.size() && end - i < kMaxApplyBatch &&
           entries[end].type != raft::Entry::Type::kConfChange) {
      ++end;
    }
    size_t applied = 0;
    if (!RetryStorage("apply", [&] { return ApplyRun(entries.subspan(i, end - i), &applied); })) {
      return false;
    }
    i += applied;
  }
  return true;
}

absl::Status Replica::ApplyRun(std::span<const raft::Entry> run, size_t* applied) {
  std::vector<kv::ApplyInput> inputs;
  inputs.reserve(run.size());
  for (const raft::Entry& e : run) {
    inputs.push_back(kv::ApplyInput{e.index, e.term,
                                    e.type == raft::Entry::Type::kNoop
                                        ? kv::ApplyInput::Kind::kNoop
                                        : kv::ApplyInput::Kind::kCommand,
                                    e.data});
  }
  ASSIGN_OR_RETURN(std::vector<kv::v1::WriteResponse> results, sm_->ApplyBatch(inputs));
  // Each writer gets its own entry's outcome, in log order.
  for (size_t k = 0; k < results.size(); ++k) {
    const raft::Entry& e = run[k];
    if (e.type == raft::Entry::Type::kNoop) {
      CompleteWrite(e.index, e.term, LostLeadership());
    } else {
      CompleteWrite(e.index, e.term, std::move(results[k]));
    }
  }
  *applied = results.size();
  return absl::OkStatus();
}

absl::Status Replica::ApplyConfChange(const raft::Entry& e) {
  absl::StatusOr<raft::ConfChange> cc = raft::DecodeConfChange(e.data);
  if (!cc.ok()) {
    // Every replica decodes the same bytes and skips them alike (as the
    // core does), so the membership stays identical everywhere.
    log::Error("raft: malformed membership change skipped",
               {{"index", e.index}, {"error", cc.status()}});
    RETURN_IF_ERROR(sm_->ApplyNoop(e.index, e.term));
    CompleteConf(e.index, e.term);
    return absl::OkStatus();
  }
  raft::ConfState next = raft::ApplyConfChange(conf_, *cc);
  kv::v1::ConfState wire;
  ToProto(next, &wire);
  RETURN_IF_ERROR(sm_->ApplyConfState(e.index, e.term, wire));
  conf_ = std::move(next);
  {
    absl::MutexLock lock(&status_mu_);  // visible to Status() at once
    published_.conf = conf_;
  }
  log::Info("raft: membership changed", {{"index", e.index},
                                         {"type", static_cast<int>(cc->type)},
                                         {"node", cc->node},
                                         {"voters", static_cast<int>(conf_.voters.size())},
                                         {"learners", static_cast<int>(conf_.learners.size())}});
  CompleteConf(e.index, e.term);
  CompleteWrite(e.index, e.term, LostLeadership());
  return absl::OkStatus();
}

void Replica::CompleteWrite(raft::Index index, raft::Term term,
                            absl::StatusOr<kv::v1::WriteResponse> result) {
  // Waiters at lower indexes can no longer be matched: their entries were
  // replaced by a newer leader's (indexes apply in order, without gaps).
  auto it = write_waiters_.begin();
  while (it != write_waiters_.end() && it->first <= index) {
    // Answered from the completer thread (see completer.h).
    WriteWaiter& w = it->second;
    const bool mine = it->first == index && w.term == term;
    absl::StatusOr<kv::v1::WriteResponse> r = mine ? std::move(result) : LostLeadership();
    if (mine) {
      const absl::Time applied = absl::Now();
      using WS = ReplicaMetrics::WriteStage;
      ReplicaMetrics* m = metrics_.get();
      auto since = [&](absl::Time from, absl::Time to) {
        return from == absl::InfinitePast() ? 0.0 : absl::ToDoubleSeconds(to - from);
      };
      m->AddWriteStage(WS::kQueue, since(w.queued, w.proposed));
      if (w.persisted != absl::InfinitePast()) {
        m->AddWriteStage(WS::kPersist, since(w.proposed, w.persisted));
      }
      if (w.acked != absl::InfinitePast()) m->AddWriteStage(WS::kAck, since(w.proposed, w.acked));
      m->AddWriteStage(WS::kCommit, since(w.proposed, std::max(ready_started_, w.proposed)));
      m->AddWriteStage(WS::kApply, since(std::max(ready_started_, w.proposed), applied));
      m->write_stage_writes->Increment();
      w.done = [done = std::move(w.done), applied, m](absl::StatusOr<kv::v1::WriteResponse> resp) {
        m->AddWriteStage(WS::kAnswer, absl::ToDoubleSeconds(absl::Now() - applied));
        done(std::move(resp));
      };
    }
    AnswerWrite(std::move(w.done), std::move(r));
    it = write_waiters_.erase(it);
  }
}

void Replica::NoteAck(raft::Index index, absl::Time now) {
  for (auto it = write_waiters_.begin(); it != write_waiters_.end() && it->first <= index; ++it) {
    if (it->second.acked == absl::InfinitePast()) it->second.acked = now;
  }
}

void Replica::AnswerWrite(WriteCallback done, absl::StatusOr<kv::v1::WriteResponse> r) {
  if (options_.pipeline) {
    // Inlinable: a writer's callback is short (WriteAsync's contract).
    completer_.Add([done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); },
                   /*inlinable=*/true);
  } else {
    done(std::move(r));
  }
}

void Replica::ExpireWriters(absl::Time now) {
  for (auto it = write_waiters_.begin(); it != write_waiters_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    // Its entry may still commit: the outcome is unknown, not failed.
    AnswerWrite(std::move(it->second.done),
                absl::DeadlineExceededError("write outcome unknown: deadline exceeded before the "
                                            "entry applied; retry with the same request_id to "
                                            "learn it"));
    it = write_waiters_.erase(it);
  }
}

void Replica::CompleteConf(raft::Index index, raft::Term term) {
  auto it = conf_waiters_.begin();
  while (it != conf_waiters_.end() && it->first <= index) {
    if (it->first == index && it->second.term == term) {
      it->second.done->Set(index);
    } else {
      it->second.done->Set(
          absl::UnavailableError("lost leadership before the membership change committed; check "
                                 "the membership and retry"));
    }
    it = conf_waiters_.erase(it);
  }
}

void Replica::DropWaitersUpTo(raft::Index index, const absl::Status& why) {
  for (auto it = write_waiters_.begin(); it != write_waiters_.end() && it->first <= index;) {
    it->second.done(why);
    it = write_waiters_.erase(it);
  }
  for (auto it = conf_waiters_.begin(); it != conf_waiters_.end() && it->first <= index;) {
    it->second.done->Set(why);
    it = conf_waiters_.erase(it);
  }
}

std::optional<uint64_t> Replica::CompactionKeep(raft::Index first, raft::Index applied) {
  const uint64_t entries = applied - first + 1;
  if (entries > options_.compact_log_entries) return options_.compact_keep_entries;
  const uint64_t limit = options_.compact_log_bytes;
  if (limit == 0 || entries < 2 || applied_bytes_.unchecked < limit / 16) return std::nullopt;
  // Estimating is cheap (RocksDB's index and memtable statistics, no data
  // read) but not free, hence only every limit/16 bytes appended.
  applied_bytes_.unchecked = 0;
  const uint64_t bytes =
      std::max(log_->ApproximateBytes(first, applied), applied_bytes_.since_compaction);
  if (bytes <= limit) return std::nullopt;
  // Keep about a quarter of the limit's worth: the next compaction is then
  // three quarters of a limit away, not one entry.
  const long double per_entry = static_cast<long double>(bytes) / entries;
  const auto by_bytes = static_cast<uint64_t>(static_cast<long double>(limit / 4) / per_entry);
  log::Info("raft: log over its byte limit, compacting",
            {{"entries", entries}, {"approx_bytes", bytes}, {"limit", limit}});
  return std::min<uint64_t>(options_.compact_keep_entries, by_bytes);
}

void Replica::MaybeCompact() {
  const raft::Index applied = sm_->applied_index();
  const raft::Index first = log_->FirstIndex();
  if (applied < first) return;
  std::optional<uint64_t> keep = CompactionKeep(first, applied);
  if (!keep.has_value() || applied - *keep < first) return;
  // The snapshot point is the applied index: a follower that needs older
  // entries gets the state machine (at least this new) instead.
  absl::StatusOr<raft::SnapshotMeta> meta = log_->CreateSnapshot(applied, conf_);
  if (!meta.ok()) {
    log::Warn("raft: snapshot point not recorded", {{"index", applied}, {"error", meta.status()}});
    return;
  }
  const raft::Index compact_to = applied - *keep;
  absl::Status s = log_->Compact(compact_to);
  if (!s.ok()) {
    log::Warn("raft: log compaction failed", {{"index", compact_to}, {"error", s}});
    return;
  }
  metrics_->log_compactions->Increment();
  applied_bytes_.since_compaction = 0;  // the kept entries uncounted: still a lower bound
  log::Debug("raft: log compacted", {{"snapshot_index", applied}, {"first_index", compact_to + 1}});
}

}  // namespace mailgrid::replica
