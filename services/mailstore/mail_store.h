// MailStore: mailstored's logic over a store::Store (the in-process Raft
// replica in production, LocalStore in unit tests). It knows nothing of
// gRPC or tokens: the service checks access first (authz.h).
//
// Consistency: every change to a mailbox is ONE kv write, conditional on
// the version of the mailbox's record (which holds the MODSEQ counter and
// the quota usage and is rewritten by every change), plus the version of
// each shared body record it touches. The write carries the message
// records, folder counters, UIDNEXT, tombstones, postings, the change-feed
// record and the usage together, so a failover can never leave a UID
// allocated without its message or a quota out of step. Writers of one
// mailbox are serialised in-process (a mutex per mailbox) so that the
// condition normally holds; when it does not (another writer won), the
// change is re-planned from fresh reads.
//
// Threads: any; the class is thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/store/store.h"
#include "mailgrid/mailstore/v1/mailbox.pb.h"
#include "services/mailstore/ingest.h"
#include "services/mailstore/mailstore_storage.pb.h"

namespace mailgrid::mailstore {

struct StoreOptions {
  uint32_t shard = 0;
  IngestLimits limits;
  uint32_t max_folders = 10000;
  uint64_t feed_keep = 100000;  // change-feed records kept per mailbox
  absl::Duration idempotency_window = absl::Hours(24);
  absl::Duration delivery_dedupe_window = absl::Hours(24 * 7);
  kv::v1::ReadConsistency reads = kv::v1::STALE;
  // Concurrent appends/deliveries to one mailbox share one write (RunCombined).
  bool combine_appends = true;
  absl::Duration timeout = absl::Seconds(10);
  // Folders created while this is on keep their search postings as per-term
  // UID blocks written by the background indexer (StartIndexer), off the
  // delivery's write (FolderRecord.block_postings). Off: one posting per
  // term per message in the delivery's write, as before. A process that
  // turns it on must run the indexer (or call IndexPending): search stays
  // complete without it, but reads every unindexed message's terms.
  bool deferred_index = false;
  absl::Duration index_interval = absl::Milliseconds(200);  // indexer's pause between rounds
  // Messages of one folder the indexer takes per round (a migrating
  // million-message folder moves in rounds of this many; tests make it small).
  size_t index_round_messages = 2048;
  // Blocks are a layout an older mailstored cannot search (it finds
  // nothing there). On: no folder gets blocks (new folders, and the
  // migration of old ones) until the group's layout record ("ms/layout",
  // layout_gate.cc) is open, i.e. every member reported that it reads them;
  // until then new folders keep per-message postings. mailstored turns it
  // on for a replicated store; off (tests, one local store): blocks as soon
  // as deferred_index.
  bool gate_block_layout = false;
};

// Search layouts (SearchLayoutRecord.version): 1 = per-message postings,
// 2 = per-term UID blocks. What this binary reads.
inline constexpr uint32_t kPerMessageLayout = 1;
inline constexpr uint32_t kBlockLayout = 2;

// Called after each committed change of a mailbox (Watch wake-ups).
using CommitListener = std::function<void(const std::string& tenant, const std::string& mailbox)>;

class MailStore {
 public:
  MailStore(store::Store* store, StoreOptions options);
  ~MailStore();
  void SetCommitListener(CommitListener l) { listener_ = std::move(l); }
  const StoreOptions& options() const { return options_; }

  // The tenant a mailbox belongs to (NOT_FOUND when it does not exist here).
  absl::StatusOr<std::string> TenantOf(const std::string& mailbox_id);

  // ---- mailboxes and folders ----
  absl::StatusOr<v1::MailboxInfo> CreateMailbox(const v1::CreateMailboxRequest& r);
  absl::StatusOr<v1::DeleteMailboxResponse> DeleteMailbox(const std::string& mailbox_id);
  absl::StatusOr<v1::ListFoldersResponse> ListFolders(const v1::ListFoldersRequest& r);
  absl::StatusOr<v1::Folder> CreateFolder(const v1::CreateFolderRequest& r);
  absl::StatusOr<v1::Folder> RenameFolder(const v1::RenameFolderRequest& r);
  absl::StatusOr<v1::DeleteFolderResponse> DeleteFolder(const v1::DeleteFolderRequest& r);
  absl::Status SubscribeFolder(const v1::SubscribeFolderRequest& r);
  absl::StatusOr<v1::FolderStatusResponse> FolderStatus(const v1::FolderStatusRequest& r);
  // FolderStatus plus ChangesSince in one read (store_status.cc).
  absl::StatusOr<v1::SelectFolderResponse> SelectFolder(const v1::SelectFolderRequest& r);

  // ---- messages ----
  absl::StatusOr<v1::AppendResponse> Append(const v1::AppendRequest& r);
  absl::StatusOr<v1::DeliverBatchResponse> DeliverBatch(const v1::DeliverBatchRequest& r);
  absl::Status Fetch(const v1::FetchRequest& r,
                     const std::function<bool(v1::FetchResponse&&)>& emit);
  absl::StatusOr<v1::StoreFlagsResponse> StoreFlags(const v1::StoreFlagsRequest& r);
  absl::StatusOr<v1::CopyResponse> Copy(const v1::CopyRequest& r);
  absl::StatusOr<v1::MoveResponse> Move(const v1::MoveRequest& r);
  absl::StatusOr<v1::ExpungeResponse> Expunge(const v1::ExpungeRequest& r);
  absl::StatusOr<v1::ChangesSinceResponse> ChangesSince(const v1::ChangesSinceRequest& r);
  absl::StatusOr<v1::SearchResponse> Search(const v1::SearchRequest& r);

  // ---- change feed ----
  // Events after `after` (a MODSEQ), at most `limit`; OUT_OF_RANGE when
  // `after` is older than the kept feed. *current is the mailbox's MODSEQ.
  absl::StatusOr<std::vector<v1::WatchEvent>> ChangesAfter(const std::string& mailbox_id,
                                                           uint64_t after, size_t limit,
                                                           uint64_t* current);

  // ---- search indexer (store_indexer.cc; deferred_index) ----
  // One round: indexes the pending messages of up to `max_mailboxes` queued
  // mailboxes ("ixq/"), as ONE replicated write of per-term UID blocks
  // (split when too large). Returns the number of messages indexed.
  absl::StatusOr<size_t> IndexPending(size_t max_mailboxes = 64);
  // A background thread that runs IndexPending every index_interval while
  // is_leader() (and until a round finds nothing). No-op unless
  // deferred_index. A new leader resumes from the persisted queue and
  // watermarks. StopIndexer joins it (idempotent; the destructor calls it).
  void StartIndexer(std::function<bool()> is_leader);
  void StopIndexer();
  // Migration of old folders (per-message postings) to blocks, leader only,
  // when deferred_index and the layout allows blocks: converts the folders
  // of up to `max_mailboxes` mailboxes (from where the last call stopped)
  // and queues them for the indexer, which moves them in bounded rounds
  // (FolderRecord.legacy_postings_below). Returns the folders converted;
  // *pass_ended when the call reached the last mailbox (the next starts
  // again from the first). The indexer thread calls it until a whole pass
  // converts nothing.
  absl::StatusOr<size_t> QueueMigrations(size_t max_mailboxes = 64, bool* pass_ended = nullptr);

  // ---- the search layout gate (layout_gate.cc) ----
  // Whether folders may use blocks now (always when !gate_block_layout).
  // Fails closed: a read error answers false (per-message postings are
  // searchable by every version).
  bool BlockLayoutAllowed();
  // Records, through `via` (any store of the group: writes reach the
  // leader), that member `member` runs a binary that reads `reads_layout`.
  static absl::Status ReportLayoutSupport(store::Store* via, uint64_t member,
                                          uint32_t reads_layout, absl::Duration timeout);
  // Leader: opens the block layout when every one of `members` (the
  // group's voters and learners) reported kBlockLayout within `fresh` of
  // now, as ONE write conditional on those reports' versions (a member that
  // reports again meanwhile makes it re-check). Returns whether it is open.
  absl::StatusOr<bool> OpenBlockLayoutIfSupported(const std::vector<uint64_t>& members,
                                                  absl::Duration fresh);

  // ---- quotas ----
  absl::StatusOr<v1::Quota> GetQuota(const v1::GetQuotaRequest& r);
  absl::StatusOr<v1::Quota> SetQuota(const v1::SetQuotaRequest& r);

  // ---- archive, retention, export (store_jobs.cc) ----
  absl::StatusOr<v1::ArchiveJob> StartArchive(const v1::StartArchiveRequest& r,
                                              const std::string& subject);
  // The job and its owner's subject (for the "who started it" check).
  absl::StatusOr<storage::JobRecord> GetJob(const std::string& job_id);
  absl::StatusOr<v1::ArchiveJob> CancelArchiveJob(const std::string& job_id);
  // Runs every unfinished archive job a step; returns how many made progress.
  absl::StatusOr<int> RunArchiveJobs(size_t batch = 500);
  absl::StatusOr<v1::RetentionRules> SetRetentionRules(const v1::SetRetentionRulesRequest& r);
  absl::StatusOr<v1::RetentionRules> ListRetentionRules(const std::string& tenant_id);
  // Applies every tenant's enabled rules to its mailboxes on this shard.
  absl::StatusOr<uint64_t> RunRetention(absl::Time now);
  absl::Status ExportMbox(const v1::ExportMboxRequest& r,
                          const std::function<bool(const v1::ExportMboxResponse&)>& emit);

  // ---- internals shared by the store_*.cc files ----
  struct Mbx {
    std::string tenant, id;
    storage::MailboxRecord rec;
    uint64_t version = 0;
    std::vector<std::pair<storage::FolderRecord, uint64_t>> folders;  // with versions
  };
  // Reads of the raw store.
  absl::StatusOr<kv::v1::GetResponse> Get(const std::string& key);
  absl::Status ScanRange(const std::string& start, const std::string& end, bool keys_only,
                         size_t limit, bool reverse,
                         const std::function<bool(const kv::v1::KeyValue&)>& each);
  absl::StatusOr<Mbx> LoadMailbox(const std::string& mailbox_id, bool with_folders = true);
  absl::StatusOr<std::string> LoadBodyBytes(const std::string& tenant, const std::string& sha,
                                            const storage::BodyRecord& body);
  absl::StatusOr<storage::BodyRecord> LoadBody(const std::string& tenant, const std::string& sha);

  // ChangesSince's answer for a folder already looked up (uidvalidity checked).
  absl::StatusOr<v1::ChangesSinceResponse> ChangesIn(const Mbx& m, const storage::FolderRecord& f,
                                                     const v1::ChangesSinceRequest& r);
  absl::StatusOr<v1::ChangesSinceResponse> ChangesByScan(const Mbx& m,
                                                         const storage::FolderRecord& f,
                                                         const v1::ChangesSinceRequest& r,
                                                         v1::ChangesSinceResponse out);
  absl::Mutex* MailboxLock(const std::string& mailbox_id);
  struct Combiner;  // store_internal.h: the queue of RunCombined
  Combiner* CombinerFor(const std::string& mailbox_id);
  void Committed(const std::string& tenant, const std::string& mailbox);

 private:
  friend class Mutation;

  store::Store* store_;
  StoreOptions options_;
  CommitListener listener_;
  absl::Mutex locks_mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<absl::Mutex>> locks_ ABSL_GUARDED_BY(locks_mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<Combiner>> combiners_ ABSL_GUARDED_BY(locks_mu_);
  struct TenantUsage;  // store_jobs.cc: pooled-limit cache
  std::unique_ptr<TenantUsage> tenant_usage_;
  struct FolderCache;  // store_internal.h: folder lists by mailbox record version
  std::unique_ptr<FolderCache> folder_cache_;
  struct IndexerThread;  // store_indexer.cc
  std::unique_ptr<IndexerThread> indexer_;
  absl::Mutex indexer_mu_;
  std::atomic<bool> block_layout_open_{false};  // the layout record never closes
  absl::Mutex migrate_mu_;
  std::string migrate_after_ ABSL_GUARDED_BY(migrate_mu_);  // QueueMigrations' cursor ("mbx/" key)
  friend absl::Status CheckTenantQuota(MailStore* store, const std::string& tenant, uint64_t add);
  absl::Mutex tenant_mu_;
  absl::flat_hash_map<std::string, std::string> tenant_of_ ABSL_GUARDED_BY(tenant_mu_);
};

// Flag vocabulary (mailbox.proto: system flags case-insensitive, keywords
// atoms up to 64 bytes, \Recent never stored).
absl::StatusOr<std::string> CanonicalFlag(const std::string& flag, size_t index);
bool HasFlag(const google::protobuf::RepeatedPtrField<std::string>& flags, std::string_view flag);

}  // namespace mailgrid::mailstore
