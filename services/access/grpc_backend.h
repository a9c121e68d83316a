// The production Authenticator (identityd AuthService.CheckSasl) and
// MailBackend (mailstored through libs/mailstore_client). Both run the
// blocking client call on a WorkerPool and hand the result to `post`, which
// the connection adapter binds to netserver::Connection::Post, so every
// callback runs on the session's strand.
//
// Watch (IMAP IDLE) uses WatchHub's asynchronous streams (no thread per
// feed) when a hub is given, else one thread per feed around the blocking
// MailstoreClient::Watch.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "libs/rpc/client.h"
#include "libs/auth/service_token.h"
#include "libs/mailstore_client/mailstore_client.h"
#include "mailgrid/identity/v1/auth.grpc.pb.h"
#include "services/access/async_mailstore.h"
#include "services/access/backend.h"
#include "services/access/watch_hub.h"
#include "services/access/worker_pool.h"

namespace mailgrid::access {


// identityd replicas; calls go to the first that answers.
class IdentityClient {
 public:
  static absl::StatusOr<std::shared_ptr<IdentityClient>> Create(
      const std::vector<std::string>& addresses, std::shared_ptr<auth::ServiceTokenSource> tokens,
      const rpc::ClientOptions& tls = {});
  absl::StatusOr<identity::v1::CheckSaslResponse> CheckSasl(
      const identity::v1::CheckSaslRequest& r);

 private:
  std::vector<std::unique_ptr<identity::v1::AuthService::Stub>> stubs_;
  std::shared_ptr<auth::ServiceTokenSource> tokens_;
};

class GrpcAuthenticator : public Authenticator {
 public:
  GrpcAuthenticator(std::shared_ptr<IdentityClient> client, WorkerPool* pool, Poster post)
      : client_(std::move(client)), pool_(pool), post_(std::move(post)) {}
  void CheckSasl(const imap::SaslCredentials& c, common::v1::Protocol protocol,
                 const std::string& client_ip, Callback<Principal> done) override;

 private:
  std::shared_ptr<IdentityClient> client_;  // null: identityd not configured
  WorkerPool* pool_;
  Poster post_;
};

class GrpcMailBackend : public MailBackend {
 public:
  // `async` (may be null): SelectFolder, StoreFlags and ChangesSince start
  // on gRPC's callback API from the caller's thread, falling back to the
  // pool and `client` only when AsyncMailstore says so.
  GrpcMailBackend(std::shared_ptr<mailstore_client::MailstoreClient> client, WorkerPool* pool,
                  Poster post, WatchHub* hub = nullptr,
                  std::shared_ptr<AsyncMailstore> async = nullptr)
      : client_(std::move(client)),
        pool_(pool),
        post_(std::move(post)),
        hub_(hub),
        async_(std::move(async)) {}

  void ListFolders(const CallTarget& t, const ms::ListFoldersRequest& r,
                   Callback<ms::ListFoldersResponse> done) override;
  void FolderStatus(const CallTarget& t, const ms::FolderStatusRequest& r,
                    Callback<ms::FolderStatusResponse> done) override;
  void SelectFolder(const CallTarget& t, const ms::SelectFolderRequest& r,
                    Callback<ms::SelectFolderResponse> done) override;
  void CreateFolder(const CallTarget& t, const ms::CreateFolderRequest& r,
                    Callback<ms::Folder> done) override;
  void RenameFolder(const CallTarget& t, const ms::RenameFolderRequest& r,
                    Callback<ms::Folder> done) override;
  void DeleteFolder(const CallTarget& t, const ms::DeleteFolderRequest& r,
                    Callback<ms::DeleteFolderResponse> done) override;
  void SubscribeFolder(const CallTarget& t, const ms::SubscribeFolderRequest& r,
                       Callback<ms::SubscribeFolderResponse> done) override;
  void Append(const CallTarget& t, const ms::AppendRequest& r,
              Callback<ms::AppendResponse> done) override;
  void Fetch(const CallTarget& t, const ms::FetchRequest& r,
             Callback<std::vector<ms::FetchResponse>> done) override;
  void StoreFlags(const CallTarget& t, const ms::StoreFlagsRequest& r,
                  Callback<ms::StoreFlagsResponse> done) override;
  void Copy(const CallTarget& t, const ms::CopyRequest& r, Callback<ms::CopyResponse> done) override;
  void Move(const CallTarget& t, const ms::MoveRequest& r, Callback<ms::MoveResponse> done) override;
  void Expunge(const CallTarget& t, const ms::ExpungeRequest& r,
               Callback<ms::ExpungeResponse> done) override;
  void ChangesSince(const CallTarget& t, const ms::ChangesSinceRequest& r,
                    Callback<ms::ChangesSinceResponse> done) override;
  void Search(const CallTarget& t, const ms::SearchRequest& r,
              Callback<ms::SearchResponse> done) override;
  void GetQuota(const CallTarget& t, const ms::GetQuotaRequest& r, Callback<ms::Quota> done) override;
  std::unique_ptr<WatchHandle> Watch(const CallTarget& t, const ms::WatchRequest& r,
                                     std::function<void(const ms::WatchEvent&)> on_event,
                                     std::function<void(absl::Status)> on_end) override;

 private:
  template <typename Resp, typename Call>
  void Run(Call call, Callback<Resp> done);
  // `start(cb)` starts the AsyncMailstore call; `call` is the synchronous
  // fallback (also the whole call when there is no AsyncMailstore).
  template <typename Resp, typename Start, typename Call>
  void RunAsync(Start start, Call call, Callback<Resp> done);

  std::shared_ptr<mailstore_client::MailstoreClient> client_;  // null: not configured
  WorkerPool* pool_;
  Poster post_;
  WatchHub* hub_;
  std::shared_ptr<AsyncMailstore> async_;  // may be null
};

}  // namespace mailgrid::access
