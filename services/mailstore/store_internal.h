// Shared by the store_*.cc files only: the mutation builder (one
// conditional kv write per change), folder lookup, UID-set helpers.
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/base/status.h"
#include "services/mailstore/errors.h"
#include "services/mailstore/keys.h"
#include "services/mailstore/mail_store.h"
#include "services/mailstore/uid_map.h"

namespace mailgrid::mailstore {

int64_t NowMicros();
google::protobuf::Timestamp MicrosToTs(int64_t micros);
int64_t TsToMicros(const google::protobuf::Timestamp& ts);

// The uniform "does not exist or not yours" answers.
absl::Status MailboxNotFound(const std::string& id);
absl::Status FolderNotFound();
absl::Status Unavailable(const absl::Status& from);

class Mutation;

// A block folder's search watermark as stored: every message below `below`
// is in the blocks (max of FolderRecord.indexed_below and the folder's
// IndexMark key, whose version is `version`, 0 when absent).
struct IndexWatermark {
  uint32_t below = 0;
  uint64_t version = 0;
};
absl::StatusOr<IndexWatermark> ReadIndexWatermark(MailStore* store, const MailStore::Mbx& m,
                                                  const storage::FolderRecord& f);

// A mailbox's folder records as last read, valid while the mailbox record's
// version is the one they were read with: every write that changes a
// folder record goes through a Mutation, which rewrites the mailbox record
// in the same kv write, and a version is the Raft index (LocalStore: the
// write's index) of the write that last wrote the key, so an equal version
// means no folder changed since. LoadMailbox then reads one key instead of
// a key plus a folder scan (an iterator per SELECT, STORE and delivery).
struct MailStore::FolderCache {
  static constexpr size_t kMaxMailboxes = 4096;  // then cleared whole
  struct Entry {
    uint64_t version = 0;
    std::vector<std::pair<storage::FolderRecord, uint64_t>> folders;
  };
  absl::Mutex mu;
  absl::flat_hash_map<std::string, Entry> by_mailbox ABSL_GUARDED_BY(mu);
};

// The background indexer (store_indexer.cc).
struct MailStore::IndexerThread {
  absl::Mutex mu;
  bool stop ABSL_GUARDED_BY(mu) = false;
  std::thread thread;
};

// The queue of RunCombined for one mailbox.
struct MailStore::Combiner {
  struct Item {
    const std::function<absl::Status(Mutation&)>* plan = nullptr;
    size_t bytes = 0, ops = 0;
    absl::Status result;
    bool done = false;
  };
  absl::Mutex mu;
  std::deque<Item*> queue ABSL_GUARDED_BY(mu);
  bool draining ABSL_GUARDED_BY(mu) = false;
};

// One planned change of one mailbox.
class Mutation {
 public:
  Mutation(MailStore* store, MailStore::Mbx* mbx) : store_(store), mbx_(mbx) {}
  MailStore::Mbx& mbx() { return *mbx_; }
  const std::string& tenant() const { return mbx_->tenant; }
  const std::string& mailbox() const { return mbx_->id; }
  MailStore* store() const { return store_; }
  // A write that changes nothing a client sees (the indexer's): no Watch
  // wake-up after it commits.
  void SetQuiet() { quiet_ = true; }
  bool quiet() const { return quiet_; }
  // The indexer's write: only term blocks and watermarks (IndexMark), and
  // no mailbox or folder record nor a condition on them, so it never
  // conflicts with a delivery; its condition is each watermark's version.
  void SetIndexOnly() { index_only_ = true; }

  uint64_t NextModseq() { return Bump(); }
  // The folder record to change (written at commit).
  storage::FolderRecord* MutableFolder(const std::string& folder_id);
  storage::FolderRecord* AddFolder(storage::FolderRecord rec);
  void RemoveFolder(const std::string& folder_id);

  void Put(const std::string& key, const google::protobuf::Message& value);
  void PutRaw(const std::string& key, std::string value);
  void Delete(const std::string& key);
  void DeleteRange(const std::string& start, const std::string& end);
  void Condition(const std::string& key, uint64_t version);
  // A change-feed record (and the trim of the oldest kept one).
  void Event(v1::WatchEvent event);
  const std::vector<v1::WatchEvent>& events() const { return events_; }

  // Body references: +n for new copies, -n for removed ones. `fresh` gives
  // the chunks when the body may not exist yet.
  absl::Status RefBody(const std::string& sha, int64_t delta, const Ingested* fresh = nullptr);

  // Message record helpers (keep counters, unseen index, postings in step).
  // The caller also calls RefBody(+1) / (-1 is done by RemoveMessage).
  absl::Status InsertMessage(storage::FolderRecord* folder, uint32_t uid,
                             const storage::MessageRecord& msg);
  absl::Status RemoveMessage(storage::FolderRecord* folder, uint32_t uid,
                             const storage::MessageRecord& msg, uint64_t modseq);
  // Rewrites a message whose flags (and MODSEQ) changed; `before` is the
  // record as it was (its MODSEQ index entry and flag keys move).
  void UpdateMessage(const storage::FolderRecord& folder, uint32_t uid,
                     const storage::MessageRecord& before, const storage::MessageRecord& msg);
  // Flags changed from old to new (counters and unseen index).
  void FlagsChanged(storage::FolderRecord* folder, uint32_t uid, bool was_seen, bool now_seen);
  absl::StatusOr<std::vector<std::string>> TermsOf(const std::string& sha);
  // Everything a message is indexed under: its body's terms and its
  // prepended header lines' (sorted, distinct).
  absl::StatusOr<std::vector<std::string>> MessageTerms(const storage::MessageRecord& msg);
  // Adds (or removes) uid to term's UID block of a block_postings folder;
  // the blocks are read and rewritten once per commit (StageRecords).
  void EditBlock(const std::string& folder_id, const std::string& term, uint32_t uid, bool add);
  // Turns a folder with per-message postings into a block folder being
  // migrated (FolderRecord.legacy_postings_below) and queues the mailbox.
  void StartBlockMigration(storage::FolderRecord* folder);
  size_t BlockEdits() const { return block_edits_.size(); }
  // A block folder's watermark as this write sees it (read once).
  absl::StatusOr<uint32_t> IndexedBelow(const storage::FolderRecord& folder);
  // The indexer moves the watermark (written at commit, conditional on its
  // version as read).
  absl::Status SetIndexedBelow(const storage::FolderRecord& folder, uint32_t below);
  // Whether the body's terms include its header fields (bodies stored
  // before they did do not): a folder with header_postings stays complete
  // only while every message's do.
  absl::StatusOr<bool> HasHeaderTerms(const std::string& sha);

  // Idempotency records planned in this mutation (several appends combined
  // in one write must see each other's keys, as they would in the store).
  void PutIdem(const std::string& key, const storage::IdemRecord& rec);
  const storage::IdemRecord* PlannedIdem(const std::string& key) const;
  // The idempotency record `key` as this write will find it when it
  // applies: planned earlier in this mutation, or in the store and younger
  // than `window`. When there is none, the key's version as read (0:
  // absent) becomes a condition of the write. Why: an attempt whose outcome
  // the caller never learned (a deadline passed, a leader changed) may
  // still commit after a retry has been planned from a state without it;
  // the retry's write then fails at apply instead of storing a second copy,
  // and its re-plan finds the first attempt's record (the mailbox record's
  // version condition already refuses such a write; this one does not rely
  // on every writer of the mailbox rewriting that record).
  absl::StatusOr<std::optional<storage::IdemRecord>> FindIdem(const std::string& key,
                                                              absl::Duration window);

  kv::v1::WriteRequest& request() { return req_; }
  bool Empty() const {
    return req_.ops_size() == 0 && dirty_folders_.empty() && removed_folders_.empty() &&
           bodies_.empty() && block_edits_.empty() && !marks_dirty_;
  }
  // Adds the mailbox record, folder records and conditions; writes.
  // Returns false (and nothing written) when a condition failed.
  absl::StatusOr<bool> Commit();
  // Several mailboxes' planned changes as ONE kv write (DeliverBatch): each
  // mutation's records and conditions, and one update per shared body with
  // the references of all of them summed. false = a condition failed.
  static absl::StatusOr<bool> CommitBatch(MailStore* store, const std::vector<Mutation*>& muts);

 private:
  uint64_t Bump() {
    mbx_->rec.set_modseq(mbx_->rec.modseq() + 1);
    return mbx_->rec.modseq();
  }
  struct BodyRef {
    int64_t delta = 0;
    const Ingested* fresh = nullptr;
  };
  // Copies of a body in this mailbox added/removed by this mutation: the
  // mailbox's postings for the body exist while at least one copy does.
  struct Links {
    int64_t added = 0;
    std::set<std::string> removed_keys;
  };
  absl::Status UpdatePostings();
  // The message's attribute index keys (folders with attr_index): added or deleted.
  void IndexAttrs(const storage::FolderRecord& folder, uint32_t uid,
                  const storage::MessageRecord& msg, bool add);
  // Sets or clears uid in its folder's UID map block (read once per mutation).
  absl::Status MarkUid(const std::string& folder_id, uint32_t uid, bool on);
  // Deletes a message's "p/" postings (its body's terms and prepended lines).
  absl::Status DeleteUidPostings(const storage::FolderRecord& folder, uint32_t uid,
                                 const storage::MessageRecord& msg);
  // Postings of a message's prepended header lines (header_postings).
  void PrependPostings(const storage::FolderRecord& folder, uint32_t uid,
                       const storage::MessageRecord& msg, bool add);
  // Postings, folder records, the mailbox record and its condition (not bodies).
  absl::Status StageRecords();
  absl::Status StageBlocks();
  // The watermarks this write read and rewrites (IndexMark keys).
  void StageMarks();
  struct Mark {
    IndexWatermark read;
    uint32_t below = 0;
    bool write = false;
  };
  absl::StatusOr<Mark*> LoadMark(const storage::FolderRecord& folder);
  std::map<std::string, Mark> marks_;  // by folder id
  bool marks_dirty_ = false;
  bool index_only_ = false;
  bool queued_ = false;  // the "ixq/" key is in this write
  // The mailbox has messages the indexer has not indexed (index_pending, "ixq/").
  void MarkIndexPending();
  struct BlockEdit {
    std::vector<uint32_t> add, remove;
  };
  // (folder, term, block) -> UIDs to add/remove.
  std::map<std::tuple<std::string, std::string, uint32_t>, BlockEdit> block_edits_;
  bool quiet_ = false;
  // The body record's refcount change (created with its chunks, or freed).
  static absl::Status StageBody(MailStore* store, const std::string& tenant, const std::string& sha,
                                const BodyRef& ref, kv::v1::WriteRequest* req);
  std::map<std::string, Links> links_;
  MailStore* store_;
  MailStore::Mbx* mbx_;
  kv::v1::WriteRequest req_;
  std::map<std::string, storage::FolderRecord> dirty_folders_;
  std::set<std::string> removed_folders_;
  std::map<std::string, BodyRef> bodies_;
  std::map<std::string, std::vector<std::string>> terms_cache_;
  std::map<std::string, bool> header_terms_cache_;
  // UID map blocks as this write leaves them, by (folder, block).
  std::map<std::pair<std::string, uint32_t>, std::string> uid_blocks_;
  std::vector<v1::WatchEvent> events_;
  std::map<std::string, storage::IdemRecord> idem_;
};

// Runs plan() under the mailbox's lock until its write commits (re-planning
// from fresh reads when a condition failed).
absl::Status RunMutation(MailStore* store, const std::string& mailbox_id,
                         const std::function<absl::Status(Mutation&)>& plan,
                         std::vector<v1::WatchEvent>* events = nullptr);

// RunMutation for appends and deliveries (group UID allocation): calls for
// the same mailbox that arrive while one of them is committing queue up,
// and the next commit plans ALL the queued ones into one Mutation (one kv
// write, one Raft entry), so one mailbox takes concurrent deliveries at the
// rate of many. A plan must only read the mailbox's records and
// PlannedIdem()/the store's idempotency keys (never messages another queued
// plan may change). A plan that fails is left out (it gets its error) and
// the rest re-planned; a write refused as too large is split in halves.
// `cost_bytes`/`cost_ops` bound a group (kv's write limits).
absl::Status RunCombined(MailStore* store, const std::string& mailbox_id,
                         const std::function<absl::Status(Mutation&)>& plan, size_t cost_bytes,
                         size_t cost_ops);

// Runs plan(i, mut) for each mailbox_ids[i] (distinct) and commits all the
// non-empty mutations as ONE kv write, holding every one's lock (taken in id
// order, so batches never deadlock each other or single-mailbox writers).
// A failed condition re-plans the whole batch from fresh reads. A mailbox
// that cannot be loaded or planned, or whose write failed, is reported
// through failed(i, status) and left out; the others still commit. A write
// the store refuses (too large) is split in halves.
absl::Status RunMutationBatch(MailStore* store, const std::vector<std::string>& mailbox_ids,
                              const std::function<absl::Status(size_t, Mutation&)>& plan,
                              const std::function<void(size_t, const absl::Status&)>& failed);
// RunMutationBatch WITHOUT the mailbox locks, for the indexer's index-only
// mutations (SetIndexOnly): their conditions (the watermarks' versions,
// rewritten by every writer that removes a message from the blocks) catch
// every conflicting writer, and a delivery neither waits for them nor
// conflicts with them. A failed condition re-plans the batch.
absl::Status RunIndexBatch(MailStore* store, const std::vector<std::string>& mailbox_ids,
                           const std::function<absl::Status(size_t, Mutation&)>& plan,
                           const std::function<void(size_t, const absl::Status&)>& failed);

// Whether a flag has attribute index keys (every flag but \Seen).
bool IndexedFlag(std::string_view flag);

// Folder lookup by FolderRef (name: INBOX case-insensitive).
const storage::FolderRecord* FindFolder(const MailStore::Mbx& m, const v1::FolderRef& ref);
const storage::FolderRecord* FindFolderByName(const MailStore::Mbx& m, const std::string& name);
absl::Status ValidateFolderName(const std::string& name, const std::string& field);
absl::StatusOr<storage::FolderRecord*> CreateFolderIn(Mutation& mut, const std::string& name,
                                                      int special_use, uint32_t max_folders);
// Expunges `list` (already selected) from the folder in this mutation.
absl::Status ExpungeIn(Mutation& mut, const std::string& folder_id,
                       const std::vector<std::pair<uint32_t, storage::MessageRecord>>& list,
                       std::vector<uint32_t>* uids, uint64_t* modseq_out);
absl::Status CheckTenantQuota(MailStore* store, const std::string& tenant, uint64_t add_bytes);
v1::Folder FolderToProto(const MailStore::Mbx& m, const storage::FolderRecord& f);

// The folder's UIDs as maximal ranges [first, last], ascending: from the
// UID map (folders with uid_map: ~245 keys per million UIDs) or a
// keys-only scan of the message records (older folders).
absl::Status ForEachUidRange(MailStore* store, const MailStore::Mbx& m,
                             const storage::FolderRecord& f,
                             const std::function<void(uint32_t first, uint32_t last)>& fn);
// UIDs of a folder selected by a MessageSelector (ascending). Sequence
// numbers need the folder's UID list (ForEachUidRange).
absl::StatusOr<std::vector<uint32_t>> AllUids(MailStore* store, const MailStore::Mbx& m,
                                              const storage::FolderRecord& f);
absl::StatusOr<std::vector<std::pair<uint32_t, storage::MessageRecord>>> SelectMessages(
    MailStore* store, const MailStore::Mbx& m, const storage::FolderRecord& f,
    const v1::MessageSelector& sel, std::vector<uint32_t>* all_uids_out = nullptr);
absl::StatusOr<std::vector<std::pair<uint32_t, storage::MessageRecord>>> ScanMessages(
    MailStore* store, const MailStore::Mbx& m, const std::string& folder_id, uint32_t first,
    uint32_t last);
bool InSet(const v1::IdSet& set, uint32_t id, uint32_t max);
void ToIdSet(const std::vector<uint32_t>& sorted, v1::IdSet* out);
std::vector<uint32_t> FromIdSet(const v1::IdSet& set, uint32_t max, uint32_t cap = 1u << 22);

}  // namespace mailgrid::mailstore
