// What the protocol sessions (imap_session, pop3 driver) need from the rest
// of the cluster, as asynchronous interfaces: identityd's CheckSasl and
// mailstored's MailboxService. Every callback is invoked on the session's
// strand (the production implementation, grpc_backend.h, runs the blocking
// call on a worker pool and posts the completion back through
// netserver::Connection::Post; the test fake calls back at once), so a
// session never blocks its event loop and needs no locks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/imap/sasl.h"
#include "mailgrid/common/v1/common.pb.h"
#include "mailgrid/mailstore/v1/mailbox.pb.h"

namespace mailgrid::access {

namespace ms = ::mailgrid::mailstore::v1;

template <typename T>
using Callback = std::function<void(absl::StatusOr<T>)>;

// Who logged in, from CheckSasl.
struct Principal {
  std::string tenant_id;
  std::string user_id;
  std::string address;
  // "Bearer <MAIL-scope token>" for mailstored calls on the user's behalf.
  std::string authorization;
  // Own mailbox first, then seated shared mailboxes.
  std::vector<common::v1::MailboxAccess> mailboxes;
};

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // UNAUTHENTICATED for bad credentials; RESOURCE_EXHAUSTED when throttled;
  // UNAVAILABLE when identityd cannot be reached.
  virtual void CheckSasl(const imap::SaslCredentials& credentials, common::v1::Protocol protocol,
                         const std::string& client_ip, Callback<Principal> done) = 0;
};

// Where a call goes and as whom.
struct CallTarget {
  uint32_t shard = 0;
  std::string authorization;
};

// A running change feed; destroying it (or Cancel) stops it. After Cancel
// no further event is delivered.
class WatchHandle {
 public:
  virtual ~WatchHandle() = default;
  virtual void Cancel() = 0;
};

class MailBackend {
 public:
  virtual ~MailBackend() = default;
  virtual void ListFolders(const CallTarget& t, const ms::ListFoldersRequest& r,
                           Callback<ms::ListFoldersResponse> done) = 0;
  virtual void FolderStatus(const CallTarget& t, const ms::FolderStatusRequest& r,
                            Callback<ms::FolderStatusResponse> done) = 0;
  // FolderStatus and (with `changes`) ChangesSince in one call. The gRPC
  // backend makes the two calls itself when mailstored predates it.
  virtual void SelectFolder(const CallTarget& t, const ms::SelectFolderRequest& r,
                            Callback<ms::SelectFolderResponse> done) = 0;
  virtual void CreateFolder(const CallTarget& t, const ms::CreateFolderRequest& r,
                            Callback<ms::Folder> done) = 0;
  virtual void RenameFolder(const CallTarget& t, const ms::RenameFolderRequest& r,
                            Callback<ms::Folder> done) = 0;
  virtual void DeleteFolder(const CallTarget& t, const ms::DeleteFolderRequest& r,
                            Callback<ms::DeleteFolderResponse> done) = 0;
  virtual void SubscribeFolder(const CallTarget& t, const ms::SubscribeFolderRequest& r,
                               Callback<ms::SubscribeFolderResponse> done) = 0;
  virtual void Append(const CallTarget& t, const ms::AppendRequest& r,
                      Callback<ms::AppendResponse> done) = 0;
  virtual void Fetch(const CallTarget& t, const ms::FetchRequest& r,
                     Callback<std::vector<ms::FetchResponse>> done) = 0;
  virtual void StoreFlags(const CallTarget& t, const ms::StoreFlagsRequest& r,
                          Callback<ms::StoreFlagsResponse> done) = 0;
  virtual void Copy(const CallTarget& t, const ms::CopyRequest& r,
                    Callback<ms::CopyResponse> done) = 0;
  virtual void Move(const CallTarget& t, const ms::MoveRequest& r,
                    Callback<ms::MoveResponse> done) = 0;
  virtual void Expunge(const CallTarget& t, const ms::ExpungeRequest& r,
                       Callback<ms::ExpungeResponse> done) = 0;
  virtual void ChangesSince(const CallTarget& t, const ms::ChangesSinceRequest& r,
                            Callback<ms::ChangesSinceResponse> done) = 0;
  virtual void Search(const CallTarget& t, const ms::SearchRequest& r,
                      Callback<ms::SearchResponse> done) = 0;
  virtual void GetQuota(const CallTarget& t, const ms::GetQuotaRequest& r,
                        Callback<ms::Quota> done) = 0;
  // Events of the mailbox (READY first) until cancelled; `on_end` once if
  // the feed fails.
  virtual std::unique_ptr<WatchHandle> Watch(const CallTarget& t, const ms::WatchRequest& r,
                                             std::function<void(const ms::WatchEvent&)> on_event,
                                             std::function<void(absl::Status)> on_end) = 0;
};

// Expands an IdSet (no to_last ranges) into ascending numbers, at most
// `limit` of them (the rest dropped).
std::vector<uint32_t> ExpandIdSet(const ms::IdSet& set, size_t limit = 50'000'000);
// Compacts ascending numbers into ranges.
ms::IdSet CompactIdSet(const std::vector<uint32_t>& sorted);

}  // namespace mailgrid::access
