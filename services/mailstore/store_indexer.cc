// The search indexer (StoreOptions.deferred_index): a delivery into a
// folder with block_postings commits the message, its body and the folder
// state without any search posting, and puts the mailbox's queue key
// ("ixq/<mailbox>"). A round takes queued mailboxes and, as ONE replicated
// write for all of them, adds their unindexed messages (UID >= the
// folder's watermark) to the per-term UID blocks and moves the watermark
// (the folder's IndexMark key) past them. Why: a delivery's write was ~55
// keys, ~40 of them one posting per term; a round writes a term's block
// once for all the messages of the batch, off the delivery's latency.
//
// A round holds no mailbox lock and writes neither the mailbox nor a
// folder record (Mutation::SetIndexOnly, RunIndexBatch): its only
// condition is each watermark's version, and every writer that removes a
// message from the folder rewrites that watermark, so a round and an
// expunge are still serialised (whichever commits second re-plans): an
// expunge removes a message from the blocks exactly when the round that
// indexed it committed before it (uid < watermark), and a round never
// indexes a message expunged before it. A delivery touches none of the
// round's keys, so it neither waits for a round nor conflicts with one
// (it used to wait for a whole Raft round behind the mailbox lock). The
// queue key is dropped in a second write, conditional on its version, once
// a round left nothing to do (a delivery since re-put it). The queue and
// watermarks are replicated, so a new leader resumes where the last
// committed round stopped; a round cut short either committed whole or
// not at all.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "services/mailstore/store_internal.h"

namespace mailgrid::mailstore {
namespace {

// (term, block) keys per write: under kv's 10,000 ops / 16 MiB per write
// (a block is at most 513 bytes). Messages per folder per round:
// StoreOptions.index_round_messages.
constexpr size_t kMaxBlockKeys = 6000;

// What a round planned for one mailbox, beyond its blocks.
struct RoundPlan {
  size_t indexed = 0;        // messages added to blocks
  bool finish = false;       // a migrating folder's watermark passed its "p/" range
  bool done = false;         // nothing left: drop the queue key
  uint64_t queue_version = 0;  // of "ixq/<mailbox>" as read
};

// Adds up to index_round_messages messages of folder `f` from `from` to
// the blocks; returns where the watermark goes.
absl::StatusOr<uint32_t> IndexFolder(Mutation& mut, const storage::FolderRecord& f, uint32_t from,
                                     size_t max_keys, size_t* indexed) {
  MailStore::Mbx& m = mut.mbx();
  const std::string& id = f.folder_id();
  uint32_t below = f.uidnext();  // where the watermark goes if every message fits
  size_t in_folder = 0;
  const size_t round_messages = std::max<size_t>(mut.store()->options().index_round_messages, 1);
  absl::Status bad;
  RETURN_IF_ERROR(mut.store()->ScanRange(
      keys::Message(m.tenant, m.id, id, from), keys::Message(m.tenant, m.id, id, f.uidnext()), false,
      round_messages + 1, false, [&](const kv::v1::KeyValue& kv) {
        uint32_t uid = keys::ReadBe32(kv.key());
        if (*indexed > 0 && mut.BlockEdits() >= max_keys) {
          below = uid;  // the rest waits for the next round
          return false;
        }
        storage::MessageRecord msg;
        if (!msg.ParseFromString(kv.value())) {
          bad = absl::DataLossError("message record");
          return false;
        }
        auto terms = mut.MessageTerms(msg);
        if (!terms.ok()) {
          bad = terms.status();
          return false;
        }
        for (const auto& t : *terms) mut.EditBlock(id, t, uid, true);
        ++*indexed;
        if (++in_folder == round_messages) {
          below = uid + 1;
          return false;
        }
        return true;
      }));
  RETURN_IF_ERROR(bad);
  return below;
}

// Plans one mailbox's share of a round (an index-only mutation).
absl::Status PlanIndex(Mutation& mut, size_t max_keys, RoundPlan* out) {
  mut.SetQuiet();
  mut.SetIndexOnly();
  *out = RoundPlan();
  MailStore::Mbx& m = mut.mbx();
  ASSIGN_OR_RETURN(auto queued, mut.store()->Get(keys::IndexQueue(m.id)));
  out->queue_version = queued.found() ? queued.version() : 0;
  bool all_done = true;
  for (const auto& [f, v] : m.folders) {
    if (!f.block_postings()) continue;
    ASSIGN_OR_RETURN(uint32_t below, mut.IndexedBelow(f));
    below = std::max<uint32_t>(below, 1);
    if (below < f.uidnext()) {
      if (mut.BlockEdits() >= max_keys) {
        all_done = false;
        break;
      }
      ASSIGN_OR_RETURN(below, IndexFolder(mut, f, below, max_keys, &out->indexed));
      RETURN_IF_ERROR(mut.SetIndexedBelow(f, below));
      if (below < f.uidnext()) all_done = false;
    }
    if (f.legacy_postings_below() != 0) {
      if (below >= f.legacy_postings_below()) out->finish = true;  // after this round's write
      else all_done = false;
    }
  }
  out->done = all_done;
  return absl::OkStatus();
}

// A migrating folder whose watermark passed every message that had "p/"
// postings: they all go (one range delete) and the folder record says so.
// Rewrites the folder record, so under the mailbox lock (once per folder).
absl::Status FinishMigration(MailStore* store, const std::string& mailbox_id) {
  return RunMutation(store, mailbox_id, [&](Mutation& mut) -> absl::Status {
    mut.SetQuiet();
    std::vector<std::pair<std::string, uint32_t>> done;
    for (const auto& [f, v] : mut.mbx().folders) {
      if (f.legacy_postings_below() == 0) continue;
      ASSIGN_OR_RETURN(uint32_t below, mut.IndexedBelow(f));
      if (below >= f.legacy_postings_below()) done.emplace_back(f.folder_id(), below);
    }
    for (const auto& [id, below] : done) {
      storage::FolderRecord* f = mut.MutableFolder(id);
      std::string p = keys::FolderPostingsPrefix(mut.tenant(), mut.mailbox(), id);
      mut.DeleteRange(p, keys::PrefixEnd(p));
      f->set_legacy_postings_below(0);
      f->set_indexed_below(below);
    }
    return absl::OkStatus();
  });
}

// Drops the queue keys of mailboxes a round left with nothing to do, each
// only if no delivery re-put it since the round read it: one write for all
// of them, one per mailbox when some key changed meanwhile.
absl::Status DropFromQueue(MailStore* store, store::Store* kv,
                           const std::vector<std::pair<std::string, uint64_t>>& done) {
  if (done.empty()) return absl::OkStatus();
  auto write = [&](size_t first, size_t last) -> absl::StatusOr<bool> {
    kv::v1::WriteRequest w;
    for (size_t i = first; i < last; ++i) {
      w.add_ops()->mutable_delete_()->set_key(keys::IndexQueue(done[i].first));
      auto* c = w.add_conditions();
      c->set_key(keys::IndexQueue(done[i].first));
      c->set_kind(kv::v1::Condition::VERSION_EQUALS);
      c->set_version(done[i].second);
    }
    auto resp = kv->Write(w, absl::Now() + store->options().timeout);
    if (!resp.ok()) return Unavailable(resp.status());
    return !resp->has_condition_failed();
  };
  ASSIGN_OR_RETURN(bool all, write(0, done.size()));
  if (all || done.size() == 1) return absl::OkStatus();
  for (size_t i = 0; i < done.size(); ++i) RETURN_IF_ERROR(write(i, i + 1).status());
  return absl::OkStatus();
}

// The indexer thread's walk over the shard's mailboxes for folders to
// migrate: one page per pause, until a whole pass (with the layout open)
// converts nothing; a restarted process walks once more (cheap: a read of
// each mailbox's record and folders).
struct MigrationSweep {
  bool done = false;
  size_t converted_this_pass = 0;
  void Step(MailStore* store) {
    if (done) return;
    bool ended = false;
    auto n = store->QueueMigrations(64, &ended);
    if (!n.ok()) {
      log::Warn("search layout migration: queueing failed", {{"status", n.status()}});
      return;
    }
    converted_this_pass += *n;
    if (!ended) return;
    if (converted_this_pass == 0) done = true;
    converted_this_pass = 0;
  }
};

}  // namespace

absl::StatusOr<size_t> MailStore::IndexPending(size_t max_mailboxes) {
  std::vector<std::string> ids;
  std::string p = keys::IndexQueuePrefix();
  RETURN_IF_ERROR(ScanRange(p, keys::PrefixEnd(p), true, max_mailboxes, false,
                            [&](const kv::v1::KeyValue& kv) {
                              ids.push_back(kv.key().substr(p.size()));
                              return true;
                            }));
  if (ids.empty()) return 0;
  const size_t per_mailbox = std::max<size_t>(256, kMaxBlockKeys / ids.size());
  std::vector<RoundPlan> plans(ids.size());
  std::vector<bool> failed(ids.size(), false);
  std::vector<std::string> gone;
  absl::Status first_error;
  RETURN_IF_ERROR(RunIndexBatch(
      this, ids, [&](size_t i, Mutation& mut) { return PlanIndex(mut, per_mailbox, &plans[i]); },
      [&](size_t i, const absl::Status& s) {
        failed[i] = true;
        if (absl::IsNotFound(s)) gone.push_back(ids[i]);  // deleted: drop its queue key
        else if (first_error.ok()) first_error = s;
      }));
  if (!gone.empty()) {
    kv::v1::WriteRequest w;
    for (const auto& id : gone) w.add_ops()->mutable_delete_()->set_key(keys::IndexQueue(id));
    auto resp = store_->Write(w, absl::Now() + options_.timeout);
    if (!resp.ok()) return Unavailable(resp.status());
  }
  size_t total = 0;
  std::vector<std::pair<std::string, uint64_t>> done;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (failed[i]) continue;
    total += plans[i].indexed;
    if (plans[i].finish) {
      absl::Status s = FinishMigration(this, ids[i]);
      if (!s.ok()) {
        if (first_error.ok()) first_error = s;
        continue;  // still queued: the next round finishes it
      }
    }
    if (plans[i].done && plans[i].queue_version != 0) done.emplace_back(ids[i], plans[i].queue_version);
  }
  RETURN_IF_ERROR(DropFromQueue(this, store_, done));
  if (total == 0 && !first_error.ok()) return first_error;
  return total;
}

absl::StatusOr<size_t> MailStore::QueueMigrations(size_t max_mailboxes, bool* pass_ended) {
  if (pass_ended != nullptr) *pass_ended = false;
  if (!options_.deferred_index || !BlockLayoutAllowed()) return 0;
  std::string after;
  {
    absl::MutexLock lock(&migrate_mu_);
    after = migrate_after_;
  }
  const std::string p = keys::MailboxIndex("");
  std::vector<std::string> ids;
  std::string last;
  RETURN_IF_ERROR(ScanRange(after.empty() ? p : after + '\0', keys::PrefixEnd(p), true,
                            max_mailboxes, false, [&](const kv::v1::KeyValue& kv) {
                              last = kv.key();
                              ids.push_back(kv.key().substr(p.size()));
                              return true;
                            }));
  size_t converted = 0;
  for (const std::string& id : ids) {
    size_t here = 0;
    absl::Status s = RunMutation(this, id, [&](Mutation& mut) -> absl::Status {
      here = 0;  // a re-plan starts again
      std::vector<std::string> old_layout;
      for (const auto& [f, v] : mut.mbx().folders)  // older layouts than uid_postings stay
        if (f.uid_postings() && !f.block_postings()) old_layout.push_back(f.folder_id());
      for (const std::string& fid : old_layout) mut.StartBlockMigration(mut.MutableFolder(fid));
      here = old_layout.size();
      mut.SetQuiet();
      return absl::OkStatus();
    });
    if (!s.ok() && !absl::IsNotFound(s)) return s;  // NOT_FOUND: deleted meanwhile
    converted += here;
  }
  absl::MutexLock lock(&migrate_mu_);
  bool ended = ids.size() < max_mailboxes;
  migrate_after_ = ended ? std::string() : last;  // wrap at the end
  if (pass_ended != nullptr) *pass_ended = ended;
  return converted;
}

// A round that indexed at least this many messages leaves a backlog
// behind it (StartIndexer runs the next at once); fewer, and the indexer
// waits for its interval.
constexpr size_t kBacklogRoundMessages = 256;

void MailStore::StartIndexer(std::function<bool()> is_leader) {
  if (!options_.deferred_index) return;
  absl::MutexLock lock(&indexer_mu_);
  if (indexer_) return;
  indexer_ = std::make_unique<IndexerThread>();
  IndexerThread* t = indexer_.get();
  t->thread = std::thread([this, t, is_leader = std::move(is_leader)] {
    absl::MutexLock lock(&t->mu);
    MigrationSweep sweep;
    for (;;) {
      auto stopping = [t]() ABSL_SHARED_LOCKS_REQUIRED(t->mu) { return t->stop; };
      t->mu.AwaitWithTimeout(absl::Condition(&stopping), options_.index_interval);
      if (t->stop) return;
      t->mu.Unlock();
      if (is_leader()) sweep.Step(this);
      // Rounds back to back while there is a backlog (after a failover, a
      // burst or a migration step), then the pause again. A round that
      // found only the few messages a steady stream of deliveries leaves in
      // one pause is not a backlog: running the next one at once makes the
      // indexer chase a steady writer with two Raft writes every few
      // deliveries (measured: leader CPU per delivery 1.3-1.6x, one writer).
      for (int round = 0; round < 64 && is_leader(); ++round) {
        auto n = IndexPending();
        if (!n.ok()) {
          log::Warn("search indexer round failed", {{"status", n.status()}});
          break;
        }
        if (*n < kBacklogRoundMessages) break;
        absl::MutexLock check(&t->mu);
        if (t->stop) break;
      }
      t->mu.Lock();
    }
  });
}

void MailStore::StopIndexer() {
  std::unique_ptr<IndexerThread> t;
  {
    absl::MutexLock lock(&indexer_mu_);
    t = std::move(indexer_);
  }
  if (!t) return;
  {
    absl::MutexLock lock(&t->mu);
    t->stop = true;
  }
  if (t->thread.joinable()) t->thread.join();
}

}  // namespace mailgrid::mailstore
