// MailstoreClient: how relayd, accessd, tenantd and mailctl reach
// mailstored. It routes each call to the leader of the shard that holds the
// mailbox (the shard number travels with the mailbox: tenantd records it,
// ResolveResponse / Principal / common.v1.MailboxAccess carry it), follows
// the `mailgrid-leader` hint a follower answers with, and retries across a
// failover where that is safe.
//
// Shard map syntax (flag/env `mailstored`, MAILGRID_MAILSTORED):
//   "h1:p,h2:p,h3:p"                    shard 0 = these replicas (the plain list)
//   "0=h1:p,h2:p,h3:p;1=h4:p,h5:p,h6:p"  shard 0 and shard 1
// White space around items is ignored; a shard number appears once.
//
// Retries: UNAVAILABLE and connection failures are retried against the
// hinted leader or the next replica, with backoff, until the call's timeout,
// for (a) every call the server refused before doing anything (it says so
// with trailing metadata `mailgrid-not-leader: 1`) and (b) calls that are
// safe to repeat: reads, CreateMailbox, SetQuota, StoreFlags, Append with an
// idempotency_key, DeliverBatch (delivery_id). Other errors are returned as
// the server sent them (rpc::FromGrpc), details in the status payload.
//
// Tokens: CallOptions::authorization ("Bearer <jws>", e.g. the user's MAIL
// token that accessd got from CheckSasl); when empty, the client's service
// token source is used (service-internal calls: relayd delivering, tenantd
// creating mailboxes). Thread-safe; one per process.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/auth/service_token.h"
#include "mailgrid/mailstore/v1/mailbox.grpc.pb.h"

namespace mailgrid::mailstore_client {

namespace v1 = ::mailgrid::mailstore::v1;

// Shard number -> replica addresses.
struct ShardMap {
  std::map<uint32_t, std::vector<std::string>> shards;

  // Parses the syntax above. InvalidArgument names the bad item.
  static absl::StatusOr<ShardMap> Parse(std::string_view text);
  std::string ToString() const;
};

struct CallOptions {
  // "Bearer <token>"; empty: a service token from ClientOptions::service_tokens.
  std::string authorization;
  // Whole-call budget, retries included (0: ClientOptions::timeout).
  absl::Duration timeout = absl::ZeroDuration();
};

struct ClientOptions {
  ShardMap shards;
  // Mints service tokens for calls without CallOptions::authorization
  // (may be null: such calls then go without a token and get UNAUTHENTICATED).
  std::shared_ptr<auth::ServiceTokenSource> service_tokens;
  absl::Duration timeout = absl::Seconds(15);
  // TLS towards mailstored (empty: plain text, the local default).
  std::string tls_ca_file, tls_cert_file, tls_key_file;
};

// Controls a running Watch from another thread.
class WatchControl {
 public:
  void Cancel();
  bool cancelled() const { return cancelled_.load(); }
  // The cursor of the last event delivered (resume point).
  std::string cursor() const;

 private:
  friend class MailstoreClient;
  void SetContext(class grpc::ClientContext* ctx);
  void SetCursor(std::string cursor);
  std::atomic<bool> cancelled_{false};
  mutable absl::Mutex mu_;
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string cursor_ ABSL_GUARDED_BY(mu_);
};

class MailstoreClient {
 public:
  static absl::StatusOr<std::unique_ptr<MailstoreClient>> Create(ClientOptions options);
  // From the flag/env value (see ShardMap).
  static absl::StatusOr<std::unique_ptr<MailstoreClient>> FromFlag(
      std::string_view mailstored, std::shared_ptr<auth::ServiceTokenSource> service_tokens);
  ~MailstoreClient();

  const ShardMap& shards() const { return options_.shards; }

  // ---- mailboxes (service-internal: tenantd) ----
  absl::StatusOr<v1::MailboxInfo> CreateMailbox(uint32_t shard, const v1::CreateMailboxRequest& r,
                                                const CallOptions& o = {});
  absl::StatusOr<v1::DeleteMailboxResponse> DeleteMailbox(uint32_t shard,
                                                          const v1::DeleteMailboxRequest& r,
                                                          const CallOptions& o = {});
  // ---- folders ----
  absl::StatusOr<v1::ListFoldersResponse> ListFolders(uint32_t shard,
                                                      const v1::ListFoldersRequest& r,
                                                      const CallOptions& o = {});
  absl::StatusOr<v1::Folder> CreateFolder(uint32_t shard, const v1::CreateFolderRequest& r,
                                          const CallOptions& o = {});
  absl::StatusOr<v1::Folder> RenameFolder(uint32_t shard, const v1::RenameFolderRequest& r,
                                          const CallOptions& o = {});
  absl::StatusOr<v1::DeleteFolderResponse> DeleteFolder(uint32_t shard,
                                                        const v1::DeleteFolderRequest& r,
                                                        const CallOptions& o = {});
  absl::StatusOr<v1::SubscribeFolderResponse> SubscribeFolder(
      uint32_t shard, const v1::SubscribeFolderRequest& r, const CallOptions& o = {});
  absl::StatusOr<v1::FolderStatusResponse> FolderStatus(uint32_t shard,
                                                        const v1::FolderStatusRequest& r,
                                                        const CallOptions& o = {});
  // FolderStatus (+ ChangesSince) in one call: IMAP SELECT/EXAMINE.
  absl::StatusOr<v1::SelectFolderResponse> SelectFolder(uint32_t shard,
                                                        const v1::SelectFolderRequest& r,
                                                        const CallOptions& o = {});
  // ---- messages ----
  absl::StatusOr<v1::AppendResponse> Append(uint32_t shard, const v1::AppendRequest& r,
                                            const CallOptions& o = {});
  // All recipients must be on `shard` (relayd groups them by shard first).
  absl::StatusOr<v1::DeliverBatchResponse> DeliverBatch(uint32_t shard,
                                                        const v1::DeliverBatchRequest& r,
                                                        const CallOptions& o = {});
  // Streams one FetchResponse per message, in UID order, to `on_message`;
  // returning false from it cancels the rest.
  absl::Status Fetch(uint32_t shard, const v1::FetchRequest& r,
                     const std::function<bool(v1::FetchResponse&&)>& on_message,
                     const CallOptions& o = {});
  // Convenience: every FetchResponse in a vector.
  absl::StatusOr<std::vector<v1::FetchResponse>> FetchAll(uint32_t shard,
                                                          const v1::FetchRequest& r,
                                                          const CallOptions& o = {});
  absl::StatusOr<v1::StoreFlagsResponse> StoreFlags(uint32_t shard, const v1::StoreFlagsRequest& r,
                                                    const CallOptions& o = {});
  absl::StatusOr<v1::CopyResponse> Copy(uint32_t shard, const v1::CopyRequest& r,
                                        const CallOptions& o = {});
  absl::StatusOr<v1::MoveResponse> Move(uint32_t shard, const v1::MoveRequest& r,
                                        const CallOptions& o = {});
  absl::StatusOr<v1::ExpungeResponse> Expunge(uint32_t shard, const v1::ExpungeRequest& r,
                                              const CallOptions& o = {});
  absl::StatusOr<v1::ChangesSinceResponse> ChangesSince(uint32_t shard,
                                                        const v1::ChangesSinceRequest& r,
                                                        const CallOptions& o = {});
  absl::StatusOr<v1::SearchResponse> Search(uint32_t shard, const v1::SearchRequest& r,
                                            const CallOptions& o = {});
  // ---- quotas ----
  absl::StatusOr<v1::Quota> GetQuota(uint32_t shard, const v1::GetQuotaRequest& r,
                                     const CallOptions& o = {});
  // A tenant's usage summed over every shard (GetQuota with tenant_id on each).
  absl::StatusOr<v1::Quota> GetTenantQuota(const std::string& tenant_id, const CallOptions& o = {});
  absl::StatusOr<v1::Quota> SetQuota(uint32_t shard, const v1::SetQuotaRequest& r,
                                     const CallOptions& o = {});
  // ---- archive, retention, export ----
  absl::StatusOr<v1::ArchiveJob> StartArchive(uint32_t shard, const v1::StartArchiveRequest& r,
                                              const CallOptions& o = {});
  absl::StatusOr<v1::ArchiveJob> GetArchiveJob(uint32_t shard, const v1::GetArchiveJobRequest& r,
                                               const CallOptions& o = {});
  absl::StatusOr<v1::ArchiveJob> CancelArchiveJob(uint32_t shard,
                                                  const v1::CancelArchiveJobRequest& r,
                                                  const CallOptions& o = {});
  // Sent to every shard (the rules are stored on each); returns shard 0's answer.
  absl::StatusOr<v1::RetentionRules> SetRetentionRules(const v1::SetRetentionRulesRequest& r,
                                                       const CallOptions& o = {});
  absl::StatusOr<v1::RetentionRules> ListRetentionRules(uint32_t shard,
                                                        const v1::ListRetentionRulesRequest& r,
                                                        const CallOptions& o = {});
  absl::Status ExportMbox(uint32_t shard, const v1::ExportMboxRequest& r,
                          const std::function<bool(const v1::ExportMboxResponse&)>& on_chunk,
                          const CallOptions& o = {});

  // The change feed. Delivers READY, then every event, to `on_event` until
  // it returns false, `control` is cancelled, or an error that is not a
  // failover (NOT_FOUND, OUT_OF_RANGE: resynchronise, UNAUTHENTICATED).
  // Across a failover it reconnects to the new leader with the last cursor,
  // so no committed change is missed; the READY of a reconnection is
  // delivered too (kind READY, same cursor semantics). Blocks the caller.
  absl::Status Watch(uint32_t shard, const v1::WatchRequest& r,
                     const std::function<bool(const v1::WatchEvent&)>& on_event,
                     WatchControl* control = nullptr, const CallOptions& o = {});

 private:
  struct Shard;
  explicit MailstoreClient(ClientOptions options);
  absl::StatusOr<Shard*> GetShard(uint32_t shard);
  template <typename Req, typename Resp, typename Method>
  absl::StatusOr<Resp> Unary(uint32_t shard, Method method, const Req& request,
                             const CallOptions& o, bool idempotent);
  absl::Status PrepareContext(grpc::ClientContext* ctx, const CallOptions& o,
                              absl::Time deadline);

  ClientOptions options_;
  std::map<uint32_t, std::unique_ptr<Shard>> shards_;
};

}  // namespace mailgrid::mailstore_client
