// In-memory stand-ins for identityd and mailstored, for the session tests
// and the golden IMAP/POP3 transcripts. Single-threaded: every callback is
// invoked at once, on the caller's thread (which satisfies backend.h's
// "on the session's strand" contract). Message parsing is deliberately
// simple (header fields, one text/plain part); mailstored's real parser is
// tested in libs/mail and services/mailstore.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "services/access/backend.h"

namespace mailgrid::access {

class FakeAuthenticator : public Authenticator {
 public:
  // user/password → the principal (its mailboxes) ; bearer tokens too.
  void AddUser(std::string user, std::string password, Principal p);
  void AddToken(std::string token, std::string user);
  void CheckSasl(const imap::SaslCredentials& c, common::v1::Protocol protocol,
                 const std::string& client_ip, Callback<Principal> done) override;
  // The next CheckSasl fails with this status.
  void FailNext(absl::Status st) { fail_next_ = std::move(st); }

 private:
  std::map<std::string, std::pair<std::string, Principal>> users_;
  std::map<std::string, std::string> tokens_;
  absl::Status fail_next_;
};

class FakeMailstore : public MailBackend {
 public:
  // A mailbox with the standard folders (INBOX, Sent, Drafts, Trash, Junk,
  // Archive).
  void AddMailbox(const std::string& mailbox_id);
  // Delivers as relayd would (wakes watchers). Returns the UID.
  uint32_t Deliver(const std::string& mailbox_id, const std::string& folder, const std::string& raw,
                   std::vector<std::string> flags = {});
  // Changes made by another client: flags replaced, or a message
  // expunged (watchers are told, sessions learn at their next sync).
  void ExternalStore(const std::string& mailbox_id, const std::string& folder, uint32_t uid,
                     std::vector<std::string> flags);
  void ExternalExpunge(const std::string& mailbox_id, const std::string& folder, uint32_t uid);
  // The next call of any kind fails with this status.
  void FailNext(absl::Status st) { FailNth(0, std::move(st)); }
  // The call after the next `skip` calls fails with this status.
  void FailNth(int skip, absl::Status st) {
    fail_skip_ = skip;
    fail_next_ = std::move(st);
  }
  // The call after the next `skip` calls does its work, then answers with
  // this status (a reply lost on the way back).
  void LoseNthReply(int skip, absl::Status st) {
    lose_skip_ = skip;
    lose_next_ = std::move(st);
  }
  size_t watchers() const;
  // ChangesSince calls so far (tests count round trips).
  size_t changes_since_calls() const { return changes_since_calls_; }

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
  void Copy(const CallTarget& t, const ms::CopyRequest& r,
            Callback<ms::CopyResponse> done) override;
  void Move(const CallTarget& t, const ms::MoveRequest& r,
            Callback<ms::MoveResponse> done) override;
  void Expunge(const CallTarget& t, const ms::ExpungeRequest& r,
               Callback<ms::ExpungeResponse> done) override;
  void ChangesSince(const CallTarget& t, const ms::ChangesSinceRequest& r,
                    Callback<ms::ChangesSinceResponse> done) override;
  void Search(const CallTarget& t, const ms::SearchRequest& r,
              Callback<ms::SearchResponse> done) override;
  void GetQuota(const CallTarget& t, const ms::GetQuotaRequest& r,
                Callback<ms::Quota> done) override;
  std::unique_ptr<WatchHandle> Watch(const CallTarget& t, const ms::WatchRequest& r,
                                     std::function<void(const ms::WatchEvent&)> on_event,
                                     std::function<void(absl::Status)> on_end) override;

 private:
  size_t changes_since_calls_ = 0;
  struct Message {
    std::string raw;
    std::set<std::string> flags;
    uint64_t modseq = 0;
    int64_t internal_date = 0;
    bool recent_claimed = false;
  };
  struct Folder {
    std::string id, name;
    ms::SpecialUse special_use = ms::SPECIAL_USE_UNSPECIFIED;
    bool subscribed = true;
    uint32_t uidvalidity = 0, uidnext = 1;
    uint64_t modseq = 1;
    std::map<uint32_t, Message> messages;
    std::map<uint32_t, uint64_t> tombstones;  // uid → modseq at expunge
  };
  struct Mailbox {
    std::vector<std::unique_ptr<Folder>> folders;
    std::set<std::string> subscriptions_dangling;
    int next_folder = 1;
  };
  struct Watcher {
    std::string mailbox_id;
    std::function<void(const ms::WatchEvent&)> on_event;
    bool cancelled = false;
  };
  class Handle;

  bool TakeFailure(absl::Status* st);
  bool TakeLostReply(absl::Status* st);
  Mailbox* FindMailbox(const std::string& id);
  Folder* FindFolder(Mailbox* m, const ms::FolderRef& ref);
  Folder* AddFolder(Mailbox* m, const std::string& name, ms::SpecialUse use);
  std::vector<uint32_t> Select(const Folder& f, const ms::MessageSelector& s) const;
  bool Matches(const Folder& f, uint32_t uid, const Message& m, const ms::SearchQuery& q) const;
  void Notify(const std::string& mailbox_id, const Folder& f, ms::WatchEventKind kind,
              std::vector<uint32_t> uids);
  ms::Folder Describe(const Mailbox& m, const Folder& f) const;

  std::map<std::string, Mailbox> mailboxes_;
  std::vector<std::shared_ptr<Watcher>> watchers_;
  absl::Status fail_next_;
  int fail_skip_ = 0;
  absl::Status lose_next_;
  int lose_skip_ = 0;
  // Append idempotency: mailbox id + "\n" + key → the first answer.
  std::map<std::string, ms::AppendResponse> appended_;
  uint32_t next_uidvalidity_ = 1000;
  int64_t clock_ = 1700000000;  // fixed internal dates: transcripts are stable
};

}  // namespace mailgrid::access
