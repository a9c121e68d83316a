// The search indexer (StoreOptions.deferred_index): a delivery into a
// folder with block_postings commits the message, its body and the folder
// state without any search posting, and queues the mailbox ("ixq/<mailbox>",
// MailboxRecord.index_pending, set only on the first such message after a
// round). A round takes queued mailboxes and, as ONE replicated write for
// all of them (RunMutationBatch: their locks in id order, each conditional
// on its mailbox record), adds their unindexed messages (UID >= the
// folder's indexed_below) to the per-term UID blocks and moves
// indexed_below past them. Why: a delivery's write was ~55 keys, ~40 of
// them one posting per term; a round writes a term's block once for all
// the messages of the batch, off the delivery's latency.
//
// Correctness rests on the existing rule that every change of a mailbox is
// a Mutation conditional on the mailbox record's version, under the
// mailbox's lock: a round and an expunge are serialised, so an expunge
// removes a message from the blocks exactly when the round that indexed it
// committed before it (uid < indexed_below), and a round never indexes a
// message expunged before it. The queue and watermarks are replicated, so
// a new leader resumes where the last committed round stopped; a round cut
// short (leader lost mid-write) either committed whole or not at all.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "services/mailstore/store_internal.h"

namespace mailgrid::mailstore {
namespace {

// Messages of one folder per round, and (term, block) keys per write: under
// kv's 10,000 ops / 16 MiB per write (a block is at most 513 bytes).
constexpr size_t kMaxMessagesPerFolder = 2048;
constexpr size_t kMaxBlockKeys = 6000;

// Plans one mailbox's share of a round; *indexed = messages added.
absl::Status PlanIndex(Mutation& mut, size_t max_keys, size_t* indexed) {
  mut.SetQuiet();
  *indexed = 0;
  MailStore::Mbx& m = mut.mbx();
  std::vector<std::string> todo;
  for (const auto& [f, v] : m.folders)
    if (f.block_postings() && std::max<uint32_t>(f.indexed_below(), 1) < f.uidnext())
      todo.push_back(f.folder_id());
  bool all_done = true;
  for (const std::string& id : todo) {
    if (mut.BlockEdits() >= max_keys) {
      all_done = false;
      break;
    }
    storage::FolderRecord* f = mut.MutableFolder(id);
    uint32_t from = std::max<uint32_t>(f->indexed_below(), 1);
    uint32_t below = f->uidnext();  // where the watermark goes if every message fits
    size_t in_folder = 0;
    std::string start = keys::Message(m.tenant, m.id, id, from);
    std::string end = keys::Message(m.tenant, m.id, id, f->uidnext());
    absl::Status bad;
    RETURN_IF_ERROR(mut.store()->ScanRange(
        start, end, false, kMaxMessagesPerFolder + 1, false, [&](const kv::v1::KeyValue& kv) {
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
          if (++in_folder == kMaxMessagesPerFolder) {
            below = uid + 1;
            return false;
          }
          return true;
        }));
    RETURN_IF_ERROR(bad);
    f->set_indexed_below(below);
    if (below < f->uidnext()) all_done = false;
  }
  if (all_done) {
    m.rec.set_index_pending(false);
    mut.Delete(keys::IndexQueue(m.id));
  }
  return absl::OkStatus();
}

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
  std::vector<size_t> indexed(ids.size(), 0);
  std::vector<std::string> gone;
  absl::Status first_error;
  RETURN_IF_ERROR(RunMutationBatch(
      this, ids,
      [&](size_t i, Mutation& mut) { return PlanIndex(mut, per_mailbox, &indexed[i]); },
      [&](size_t i, const absl::Status& s) {
        indexed[i] = 0;
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
  for (size_t n : indexed) total += n;
  if (total == 0 && !first_error.ok()) return first_error;
  return total;
}

void MailStore::StartIndexer(std::function<bool()> is_leader) {
  if (!options_.deferred_index) return;
  absl::MutexLock lock(&indexer_mu_);
  if (indexer_) return;
  indexer_ = std::make_unique<IndexerThread>();
  IndexerThread* t = indexer_.get();
  t->thread = std::thread([this, t, is_leader = std::move(is_leader)] {
    absl::MutexLock lock(&t->mu);
    for (;;) {
      auto stopping = [t]() ABSL_SHARED_LOCKS_REQUIRED(t->mu) { return t->stop; };
      t->mu.AwaitWithTimeout(absl::Condition(&stopping), options_.index_interval);
      if (t->stop) return;
      t->mu.Unlock();
      // Rounds back to back while there is work (a backlog after a
      // failover or a burst), then the pause again.
      for (int round = 0; round < 64 && is_leader(); ++round) {
        auto n = IndexPending();
        if (!n.ok()) {
          log::Warn("search indexer round failed", {{"status", n.status()}});
          break;
        }
        if (*n == 0) break;
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
