// ImapSession: one IMAP4rev1 connection (RFC 3501 plus the extensions in
// Capabilities()) over libs/imap's CommandReader and the asynchronous
// MailBackend. Bytes in (Feed), bytes out (TakeOutput); while a backend call
// is in flight the session parses nothing more (commands run one at a time,
// in order) and the driver should pause reading (busy()).
//
// Sequence numbers: the session keeps its own UID map of the selected
// folder (RFC 3501 §2.3.1.2). It changes only when the session tells the
// client: EXPUNGE responses for its own EXPUNGE/MOVE/CLOSE and, for changes
// made by others, at NOOP, CHECK, IDLE and after commands that do not use
// sequence numbers (RFC 3501 §7.4.1: never during FETCH/STORE/SEARCH), from
// mailstored's ChangesSince. New messages are announced with EXISTS.
//
// Mailbox names: UTF-8 inside (libs/imap decodes modified UTF-7), "/" the
// delimiter. The user's own mailbox is the personal namespace; a seated
// shared mailbox appears as "Shared/<address>/<folder>".
//
// SECURITY: the session trusts nothing from the client (libs/imap parses and
// bounds every command); credentials go only to the Authenticator; before
// TLS, LOGIN and AUTHENTICATE are refused (LOGINDISABLED) unless the config
// allows clear text; after STARTTLS anything pipelined is discarded. Errors
// from the backend become fixed texts that reveal nothing (a missing folder
// and a forbidden one read the same).
//
// Threads: none. Every method, and every backend callback, on one strand.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libs/imap/reader.h"
#include "libs/imap/response.h"
#include "services/access/backend.h"

namespace mailgrid::access {

class FetchCache;
struct SortMessage;

struct ImapConfig {
  std::string hostname = "localhost";
  bool tls_active = false;  // implicit TLS (993)
  bool starttls_offered = true;
  bool plaintext_auth = false;  // allow LOGIN/AUTHENTICATE without TLS (tests only)
  std::string client_ip;
  imap::ReceiverLimits limits;
  // Shared by the process's sessions (fetch_cache.h); null: every FETCH
  // goes to mailstored.
  FetchCache* fetch_cache = nullptr;
};

// Counters for metrics and logs.
struct ImapStats {
  uint64_t commands = 0, ok = 0, no = 0, bad = 0;
  bool idling = false;
};

class ImapSession {
 public:
  ImapSession(ImapConfig config, Authenticator* auth, MailBackend* backend);
  ~ImapSession();

  // The greeting.
  void Start();
  void Feed(std::string_view bytes);
  // "* BYE" for a server shutdown / autologout; the session closes.
  void Shutdown();
  void Timeout();
  // The TLS handshake the session asked for (start_tls()) succeeded.
  void TlsEstablished();

  std::string TakeOutput();
  bool closed() const { return closed_; }
  // A backend call is in flight: stop reading until it completes.
  bool busy() const { return busy_; }
  // Set after STARTTLS's OK: the driver starts the handshake (once).
  bool TakeStartTls() { return std::exchange(start_tls_, false); }
  // Set after COMPRESS DEFLATE's OK: the driver compresses every byte it
  // sends after the output it just took, and inflates every byte it reads.
  bool TakeStartCompress() { return std::exchange(start_compress_, false); }
  // The connection's byte stream is unusable (corrupt compressed data):
  // "* BYE" and close.
  void Abort(std::string_view why);
  bool idling() const { return idle_ != nullptr; }
  const ImapStats& stats() const { return stats_; }
  // Called after every completed command with its name, the result
  // ("OK"/"NO"/"BAD") and nothing else: the driver's metrics hook.
  void set_on_command(std::function<void(std::string_view, std::string_view)> f) {
    on_command_ = std::move(f);
  }

  // Called when a command starts running (for latency).
  void set_on_command_start(std::function<void()> f) { on_command_start_ = std::move(f); }

  std::string Capabilities() const;

 private:
  struct Selected;
  struct Idle;
  struct ListJob;
  // A resolved mailbox name.
  struct Target {
    size_t mailbox = 0;  // index into principal_.mailboxes
    std::string folder;  // folder name inside that mailbox ("INBOX", "a/b")
  };

  void Pump();
  void Execute(imap::Command cmd);
  void Finish(const std::string& tag, imap::Condition c, std::string_view code,
              std::string_view text);
  void FinishError(const std::string& tag, const absl::Status& st);
  void Untagged(absl::StatusOr<std::string> line);
  void Write(std::string_view bytes) { out_.append(bytes.data(), bytes.size()); }
  imap::CommandContext Context() const;
  imap::WriterOptions Wopt() const { return {}; }
  CallTarget TargetOf(size_t mailbox) const;
  std::optional<Target> Resolve(std::string_view name) const;
  std::string ExternalName(size_t mailbox, std::string_view folder) const;
  // Runs `fn` with the backend and marks the session busy until Done().
  void Begin() { busy_ = true; }
  void Done();

  // imap_session_auth.cc
  void CmdCapability(const imap::Command& c);
  void CmdStartTls(const imap::Command& c);
  void CmdLogin(const imap::Command& c);
  void CmdAuthenticate(const imap::Command& c);
  void OnSaslResponse(const imap::SaslResponse& r);
  void CheckCredentials(const std::string& tag, imap::SaslCredentials creds);
  void CmdLogout(const imap::Command& c);
  void CmdId(const imap::Command& c);
  void CmdEnable(const imap::Command& c);
  void CmdNamespace(const imap::Command& c);
  void CmdCompress(const imap::Command& c);

  // imap_session_mailbox.cc
  void CmdList(const imap::Command& c);
  void ListStep(std::shared_ptr<ListJob> job, size_t i);
  void ListAppend(ListJob& job, size_t i, const ms::ListFoldersResponse& r);
  void ListDeleted(std::shared_ptr<ListJob> job, size_t k);
  std::string ListStatusLine(const std::string& name, const ms::Folder& f,
                             const std::vector<imap::StatusItem>& items,
                             std::optional<uint64_t> deleted);
  void CmdSelect(const imap::Command& c);
  void CmdStatus(const imap::Command& c);
  void CmdCreate(const imap::Command& c);
  void CmdDelete(const imap::Command& c);
  void CmdRename(const imap::Command& c);
  void CmdSubscribe(const imap::Command& c, bool subscribe);
  void CmdAppend(const imap::Command& c);
  void AppendNext(std::string tag, std::shared_ptr<imap::AppendArgs> args, size_t i,
                  std::string uids, uint32_t uidvalidity);
  void CmdGetQuota(const imap::Command& c, bool root);
  void CmdClose(const imap::Command& c, bool expunge);

  // imap_session_messages.cc
  void CmdFetch(const imap::Command& c);
  void RunFetch(const std::string& tag, const ms::FetchRequest& req,
                std::shared_ptr<std::vector<imap::FetchItem>> items);
  // One "* n FETCH (...)" from mailstored's (or the cache's) data.
  void WriteFetch(const ms::FetchResponse& m, const std::vector<imap::FetchItem>& items);
  // imap_session_cached_fetch.cc: the FETCH answered from FetchCache plus
  // one ChangesSince (flags) and a mailstored Fetch of the misses only.
  // False: not servable this way (the caller runs RunFetch).
  bool CachedFetch(const std::string& tag, const ms::FetchRequest& req,
                   std::shared_ptr<std::vector<imap::FetchItem>> items);
  void CachedFetchFinish(const std::string& tag, const ms::FetchRequest& req,
                         std::shared_ptr<std::vector<imap::FetchItem>> items,
                         const std::string& key, bool refreshed);
  void CmdStore(const imap::Command& c);
  struct SearchJob;
  void CmdSearch(const imap::Command& c);
  void SearchAges(std::shared_ptr<SearchJob> job, size_t i);
  void RunSearch(std::shared_ptr<SearchJob> job);
  // imap_session_thread.cc: THREAD (RFC 5256) over a search's matches.
  void CmdThread(const imap::Command& c);
  void ThreadMatches(std::shared_ptr<SearchJob> job, const ms::SearchResponse& r);
  // imap_session_sort.cc: SORT (RFC 5256) over a search's matches.
  void CmdSort(const imap::Command& c);
  void SortMatches(std::shared_ptr<SearchJob> job, const ms::SearchResponse& r);
  void SortFinish(std::shared_ptr<SearchJob> job, std::vector<SortMessage> messages);
  void WriteEsearch(const std::string& tag, const imap::SearchReturnOptions& ret, bool uid,
                    bool modseq, const ms::SearchResponse& r);
  void CmdCopy(const imap::Command& c, bool move);
  void CmdExpunge(const imap::Command& c);
  void CmdNoop(const imap::Command& c);
  void CmdIdle(const imap::Command& c);
  void EndIdle();

  // imap_session_xcopy.cc: COPY/MOVE into another mailbox.
  struct CrossCopy;
  void StartCrossCopy(const std::string& tag, bool move, size_t dst_mailbox,
                      const std::string& dst_folder, std::vector<uint32_t> uids);
  void CrossCopyStep(std::shared_ptr<CrossCopy> job);
  void CrossCopyFinish(std::shared_ptr<CrossCopy> job);
  void CrossCopyFail(std::shared_ptr<CrossCopy> job, const absl::Status& st);
  void CrossCopyAnswerError(std::shared_ptr<CrossCopy> job, const absl::Status& st);
  void CrossCopyUndo(std::shared_ptr<CrossCopy> job, std::vector<uint32_t> copies,
                     std::function<void()> then);
  void CrossMoveRecover(std::shared_ptr<CrossCopy> job, const absl::Status& st);
  // Resolves a sequence set (UIDs or numbers) to existing UIDs, ascending.
  std::vector<uint32_t> SetToUids(const imap::SequenceSet& set, bool uid) const;
  uint32_t SeqOf(uint32_t uid) const;  // 0 if not in the map
  void RemoveUid(uint32_t uid);        // + untagged EXPUNGE
  // Removes these UIDs (ascending) from the map and tells the client: one
  // EXPUNGE each, or one VANISHED once QRESYNC is enabled (RFC 7162
  // §3.2.10). UIDs not in the map are ignored.
  void ReportExpunged(const std::vector<uint32_t>& uids);
  // SELECT (QRESYNC ...): VANISHED (EARLIER) and FETCH for what changed
  // since the client's MODSEQ (read by SELECT's SelectFolder), then the
  // tagged OK.
  void QresyncSelect(const std::string& tag, const ms::ChangesSinceResponse& r, bool examine);
  // "* n FETCH (UID u FLAGS (...) MODSEQ (m))" for a flag change.
  void WriteFlagsFetch(const ms::MessageFlags& m);
  // Fetches changes since the last sync and reports them; then `then`.
  void Sync(std::function<void()> then);
  void ApplyChanges(const ms::ChangesSinceResponse& r);
  // A Watch event applied without a round trip; false: Sync instead.
  bool ApplyEvent(const ms::WatchEvent& e);
  // FLAGS_CHANGED: "* n FETCH (FLAGS ...)" from the event's flags.
  bool ApplyFlagsEvent(const ms::WatchEvent& e);

  ImapConfig config_;
  Authenticator* auth_;
  MailBackend* backend_;
  imap::CommandReader reader_;
  std::string out_;
  bool closed_ = false;
  bool busy_ = false;
  bool pumping_ = false;
  bool start_tls_ = false;
  bool awaiting_tls_ = false;  // STARTTLS answered, handshake not done yet
  bool start_compress_ = false;
  bool compressing_ = false;  // COMPRESS DEFLATE is on
  bool condstore_ = false;    // ENABLE CONDSTORE or a CONDSTORE command seen
  bool qresync_ = false;      // ENABLE QRESYNC (implies condstore_)
  imap::SessionState state_ = imap::SessionState::kNotAuthenticated;
  std::optional<Principal> principal_;
  std::unique_ptr<Selected> selected_;
  std::unique_ptr<Idle> idle_;
  // (UID, MODSEQ) the client already knows since the last Sync: messages
  // announced from Watch events, flags changed by its own STORE or FETCH.
  // The next Sync does not report them again.
  std::vector<std::pair<uint32_t, uint64_t>> announced_;
  // FETCH flags without a refresh (imap_session_cached_fetch.cc): a SELECT
  // that refreshed the FETCH cache's flags of the folder in its own
  // mailstored call leaves the MODSEQ it reached in refreshed_modseq_;
  // Execute() moves it to fresh_modseq_ for the next command only, and a
  // FETCH right after the SELECT then reads flags as of the SELECT (what
  // Dovecot shows too: its view is synced at the end of each command).
  // Every other command starts with 0: refresh first.
  uint64_t refreshed_modseq_ = 0;
  uint64_t fresh_modseq_ = 0;
  // AUTHENTICATE in progress.
  std::string sasl_tag_;
  std::optional<imap::SaslMechanism> sasl_mech_;
  ImapStats stats_;
  std::function<void(std::string_view, std::string_view)> on_command_;
  std::function<void()> on_command_start_;
  std::string current_command_;
  // Guards callbacks that outlive the session (the fake backend calls back
  // at once; production posts to a strand that drops them once closed).
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace mailgrid::access
