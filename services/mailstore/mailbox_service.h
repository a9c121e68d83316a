// MailboxService over gRPC: authentication, the leader gate, and the
// mapping of MailStore's answers to statuses. SECURITY: every handler
// authenticates first and checks the mailbox/tenant before touching data;
// a refused mailbox is NOT_FOUND (authz.h).
//
// Leader gate: only the shard leader serves (its store is the in-process
// replica: no extra hop, reads from the applied state, writes group-
// committed). A follower answers UNAVAILABLE with trailing metadata
// `mailgrid-not-leader: 1` (nothing was done: always safe to retry) and
// `mailgrid-leader: host:port` when known (libs/mailstore_client follows it).
//
// Watch is served on gRPC's callback API: an open stream is a reactor and
// costs no thread while idle. A commit on this leader notifies WatchHub,
// which queues the mailbox for a small pool of feed readers (WatchStreams,
// `ServiceOptions::watch_threads`); they read the replicated change feed
// after each idle stream's cursor once per distinct cursor and hand the
// events to the streams, each of which has at most one write in flight
// (a slow client holds its own queue, nobody else's). Heartbeats and the
// safety-net poll (changes this process was not told about: entries of an
// earlier leader applied late) come from the readers' timer. When this
// process stops leading (checked every 250 ms) or drains, every stream ends
// UNAVAILABLE with the leader hint and the client resumes at the new leader
// from its cursor, so no committed change is missed.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "mailgrid/mailstore/v1/mailbox.grpc.pb.h"
#include "services/mailstore/authz.h"
#include "services/mailstore/mail_store.h"

namespace mailgrid::mailstore {

// Wakes Watch streams when a mailbox changes (commits made by this process)
// and lets the streams of one mailbox share one feed read: many streams on
// one mailbox (one per IMAP IDLE session, or per accessd) are woken by one
// change at the same cursor, and the first of them reads the change feed
// for all (single flight per mailbox, cursor and generation); the others
// take its result. Each mailbox has its own lock and condition variable, so
// a change wakes only that mailbox's streams and a waiter costs nothing to
// the others (one absl::Mutex with a Condition per waiter re-evaluated
// every waiter's condition on every unlock: quadratic in the streams).
class WatchHub {
 public:
  using Events = std::shared_ptr<const std::vector<v1::WatchEvent>>;
  using Fetch = std::function<absl::StatusOr<std::vector<v1::WatchEvent>>(uint64_t* current)>;

  void Notify(const std::string& mailbox);
  uint64_t Generation(const std::string& mailbox);
  // Waits until the mailbox's generation moves past `seen` or `timeout`.
  void Wait(const std::string& mailbox, uint64_t seen, absl::Duration timeout);
  // The feed after `cursor` as of generation `gen` (a read started at or
  // after it, and not before `not_before`): calls fetch() once for all
  // callers asking the same (mailbox, cursor) meanwhile; *current is the
  // mailbox's MODSEQ the read saw.
  absl::StatusOr<Events> Changes(const std::string& mailbox, uint64_t cursor, uint64_t gen,
                                 absl::Time not_before, const Fetch& fetch, uint64_t* current);
  // Feed reads done by Changes (for tests and metrics).
  uint64_t reads() const { return reads_.load(); }
  // Called after every Notify, outside the hub's locks (WatchStreams queues
  // the mailbox for its readers). Empty: none.
  void SetListener(std::function<void(const std::string& mailbox)> listener);

 private:
  // One read of a mailbox's feed after a cursor (done or in flight).
  struct Read {
    bool reading = true;
    uint64_t gen = 0;
    absl::Time at;
    uint64_t current = 0;
    absl::Status status;
    Events events;
  };
  struct Feed {
    absl::Mutex mu;
    absl::CondVar moved, done;
    std::atomic<uint64_t> gen{0};
    // The last reads by cursor (a few: streams a change or two behind).
    std::map<uint64_t, Read> reads ABSL_GUARDED_BY(mu);
  };
  std::shared_ptr<Feed> FeedOf(const std::string& mailbox);

  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Feed>> feeds_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> reads_{0};
  absl::Mutex listener_mu_;
  std::function<void(const std::string&)> listener_ ABSL_GUARDED_BY(listener_mu_);
};

struct ServiceOptions {
  absl::Duration heartbeat = absl::Seconds(30);
  // True when this process may serve now; otherwise *leader is the hint.
  std::function<bool(std::string* leader)> serving = [](std::string*) { return true; };
  // Threads that read the change feed for Watch streams (idle streams cost
  // none; these only work when a watched mailbox changed).
  int watch_threads = 2;
};

class WatchStreams;  // mailbox_service.cc: the open Watch streams and their feed readers

// Every method is a sync handler except Watch (callback API: no thread per
// open stream).
class MailboxServiceImpl final
    : public v1::MailboxService::WithCallbackMethod_Watch<v1::MailboxService::Service> {
 public:
  MailboxServiceImpl(MailStore* store, Authorizer* authz, WatchHub* hub, ServiceOptions options);
  ~MailboxServiceImpl() override;
  // Refuses new calls and ends every Watch stream (UNAVAILABLE, not leader).
  void Drain();
  // Watch streams open now (tests, metrics).
  size_t watch_streams() const;

  using Ctx = grpc::ServerContext;
  grpc::Status CreateMailbox(Ctx*, const v1::CreateMailboxRequest*, v1::MailboxInfo*) override;
  grpc::Status DeleteMailbox(Ctx*, const v1::DeleteMailboxRequest*, v1::DeleteMailboxResponse*) override;
  grpc::Status ListFolders(Ctx*, const v1::ListFoldersRequest*, v1::ListFoldersResponse*) override;
  grpc::Status CreateFolder(Ctx*, const v1::CreateFolderRequest*, v1::Folder*) override;
  grpc::Status RenameFolder(Ctx*, const v1::RenameFolderRequest*, v1::Folder*) override;
  grpc::Status DeleteFolder(Ctx*, const v1::DeleteFolderRequest*, v1::DeleteFolderResponse*) override;
  grpc::Status SubscribeFolder(Ctx*, const v1::SubscribeFolderRequest*,
                               v1::SubscribeFolderResponse*) override;
  grpc::Status FolderStatus(Ctx*, const v1::FolderStatusRequest*, v1::FolderStatusResponse*) override;
  grpc::Status SelectFolder(Ctx*, const v1::SelectFolderRequest*, v1::SelectFolderResponse*) override;
  grpc::Status Append(Ctx*, const v1::AppendRequest*, v1::AppendResponse*) override;
  grpc::Status AppendStream(Ctx*, grpc::ServerReader<v1::AppendStreamRequest>*,
                            v1::AppendResponse*) override;
  grpc::Status DeliverBatch(Ctx*, const v1::DeliverBatchRequest*, v1::DeliverBatchResponse*) override;
  grpc::Status Fetch(Ctx*, const v1::FetchRequest*, grpc::ServerWriter<v1::FetchResponse>*) override;
  grpc::Status StoreFlags(Ctx*, const v1::StoreFlagsRequest*, v1::StoreFlagsResponse*) override;
  grpc::Status Copy(Ctx*, const v1::CopyRequest*, v1::CopyResponse*) override;
  grpc::Status Move(Ctx*, const v1::MoveRequest*, v1::MoveResponse*) override;
  grpc::Status Expunge(Ctx*, const v1::ExpungeRequest*, v1::ExpungeResponse*) override;
  grpc::Status ChangesSince(Ctx*, const v1::ChangesSinceRequest*, v1::ChangesSinceResponse*) override;
  using v1::MailboxService::WithCallbackMethod_Watch<v1::MailboxService::Service>::Watch;
  grpc::ServerWriteReactor<v1::WatchEvent>* Watch(grpc::CallbackServerContext* ctx,
                                                  const v1::WatchRequest* r) override;
  grpc::Status Search(Ctx*, const v1::SearchRequest*, v1::SearchResponse*) override;
  grpc::Status GetQuota(Ctx*, const v1::GetQuotaRequest*, v1::Quota*) override;
  grpc::Status SetQuota(Ctx*, const v1::SetQuotaRequest*, v1::Quota*) override;
  grpc::Status StartArchive(Ctx*, const v1::StartArchiveRequest*, v1::ArchiveJob*) override;
  grpc::Status GetArchiveJob(Ctx*, const v1::GetArchiveJobRequest*, v1::ArchiveJob*) override;
  grpc::Status CancelArchiveJob(Ctx*, const v1::CancelArchiveJobRequest*, v1::ArchiveJob*) override;
  grpc::Status SetRetentionRules(Ctx*, const v1::SetRetentionRulesRequest*,
                                 v1::RetentionRules*) override;
  grpc::Status ListRetentionRules(Ctx*, const v1::ListRetentionRulesRequest*,
                                  v1::RetentionRules*) override;
  grpc::Status ExportMbox(Ctx*, const v1::ExportMboxRequest*,
                          grpc::ServerWriter<v1::ExportMboxResponse>*) override;

 private:
  // Leader gate + authentication, then fn; statuses converted in one place.
  grpc::Status Handle(Ctx* ctx, const std::function<absl::Status(const Principal&)>& fn);
  grpc::Status NotServing(grpc::ServerContextBase* ctx, const std::string& leader);

  MailStore* store_;
  Authorizer* authz_;
  WatchHub* hub_;
  ServiceOptions options_;
  std::atomic<bool> draining_{false};
  std::unique_ptr<WatchStreams> watch_;
};

}  // namespace mailgrid::mailstore
