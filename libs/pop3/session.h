// Pop3Session: the POP3 server protocol (RFC 1939 with UIDL and TOP, CAPA
// and response codes RFC 2449/3206, STLS RFC 2595, SASL RFC 5034) as a
// pure, incremental state machine over bytes. No I/O, no clocks, no
// storage: the driver (services/access) feeds what it reads, answers the
// decisions the session asks for (STLS, credentials, a message's bytes, the
// commit at QUIT) possibly much later and from a callback, and writes what
// TakeOutput() gives it.
//
// SECURITY: every byte fed is hostile. Lines are bounded (a longer line is
// refused without being buffered), passwords are only handed to the driver,
// input pipelined behind STLS is discarded (CVE-2011-0411), USER/PASS/AUTH
// are refused before TLS unless the config allows them, too many errors
// close the session, and no client byte is echoed into a response.
//
// Driver loop:
//   session.Start();                      // greeting
//   session.Feed(bytes_read);
//   for (Event e = session.Next(); ; e = session.Next()) {
//     NeedInput / Closed: break;          // or a decision: answer it (now
//   }                                     // or later, then call Next again)
//   write(session.TakeOutput());          // and close if session.closed()
//
// Threads: none; one session per connection, called from one strand.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "libs/imap/sasl.h"

namespace mailgrid::pop3 {

struct SessionConfig {
  std::string hostname = "localhost";
  bool tls_active = false;      // implicit TLS (995) or after STLS
  bool stls_offered = true;     // 110: offer STLS while in clear text
  bool auth_requires_tls = true;
  // RFC 2449 §4: a command line is at most 255 octets incl. CRLF; we allow
  // more for long user names. SASL lines (RFC 5034 §4) carry bearer tokens.
  size_t max_line_length = 1024;
  size_t max_auth_line_length = 12288;
  size_t max_errors = 20;  // -ERR answers before the session closes; 0 = no cap
  std::vector<imap::SaslMechanism> sasl_mechanisms = {
      imap::SaslMechanism::kPlain, imap::SaslMechanism::kLogin, imap::SaslMechanism::kXoauth2,
      imap::SaslMechanism::kOauthBearer};
  std::string implementation = "mailgrid";
  // CAPA EXPIRE / LOGIN-DELAY values; empty: not advertised.
  std::string expire;
};

// One message of the maildrop as the driver loaded it at login.
struct MaildropEntry {
  uint32_t uid = 0;   // the store's UID (for Retrieve and Commit)
  uint64_t size = 0;  // octets as RETR sends them (CRLF line ends, before stuffing)
  std::string uidl;   // unique-id: 1-70 chars 0x21-0x7E (RFC 1939 §7)
};

namespace event {
struct NeedInput {};
struct Closed {};
// STLS: start the TLS handshake after writing TakeOutput(), then
// AcceptStartTls(); or RejectStartTls().
struct StartTls {};
// Credentials to check; answer AcceptAuth(maildrop) or RejectAuth.
struct Authenticate {
  imap::SaslCredentials credentials;
  bool via_user_pass = false;  // USER/PASS rather than AUTH
};
// RETR (top_lines unset) or TOP: answer Deliver(raw message) or
// FailRetrieve. The session cuts TOP and dot-stuffs.
struct Retrieve {
  uint32_t message_number = 0;
  uint32_t uid = 0;
  std::optional<uint64_t> top_lines;
};
// QUIT in the TRANSACTION state: expunge these UIDs, then CommitDone().
struct Commit {
  std::vector<uint32_t> deleted_uids;
};
// A decision is pending and the driver has not answered yet.
struct AwaitingDecision {};
}  // namespace event

using Event = std::variant<event::NeedInput, event::Closed, event::StartTls, event::Authenticate,
                           event::Retrieve, event::Commit, event::AwaitingDecision>;
std::string_view EventName(const Event& e);

enum class State : unsigned char { kAuthorization, kTransaction, kUpdate, kClosed };

struct SessionStats {
  uint64_t commands = 0, ok = 0, err = 0;
  uint64_t retrieved = 0, deleted = 0;
  uint64_t discarded_after_stls = 0;
};

class Session {
 public:
  explicit Session(SessionConfig config);

  // "+OK <host> POP3 ready"; call once before anything else is written.
  void Start();
  void Feed(std::string_view bytes);
  Event Next();

  // Decisions (FailedPrecondition if that decision is not pending).
  absl::Status AcceptStartTls();
  absl::Status RejectStartTls(std::string_view text);
  absl::Status AcceptAuth(std::vector<MaildropEntry> maildrop);
  // temporary: "-ERR [SYS/TEMP]" (identityd down, throttled), else
  // "-ERR [AUTH]". `text` must be free of client bytes.
  absl::Status RejectAuth(bool temporary, std::string_view text);
  // [IN-USE]: the maildrop is locked by another session (RFC 2449 §8.1.1).
  absl::Status RejectAuthInUse();
  absl::Status Deliver(std::string_view raw_message);
  absl::Status FailRetrieve(std::string_view text);
  // After Commit: ok → "+OK", else "-ERR [SYS/TEMP]" (RFC 1939 §6).
  absl::Status CommitDone(const absl::Status& result);

  // "-ERR [SYS/TEMP] shutting down" and close; deletions are not committed.
  void Shutdown();
  // Autologout (RFC 1939 §3: at least 10 minutes idle); no commit.
  void Timeout();

  std::string TakeOutput();
  bool has_output() const { return !output_.empty(); }
  bool closed() const { return state_ == State::kClosed; }
  State state() const { return state_; }
  bool tls_active() const { return config_.tls_active; }
  bool awaiting_decision() const { return pending_ != Pending::kNone; }
  size_t buffered_input() const { return in_.size() - pos_; }
  // Bytes the input buffer holds allocated: at most kIdleInputCapacity once
  // everything fed was read (NeedInput), however much came before (an AUTH
  // line of up to 12 KiB, a pipelined burst), as SMTP's and IMAP's do.
  size_t input_capacity() const { return in_.capacity(); }
  static constexpr size_t kIdleInputCapacity = 4096;
  const SessionStats& stats() const { return stats_; }
  // The authenticated user as given by the client (for logs).
  const std::string& user() const { return user_; }

 private:
  enum class Pending : unsigned char { kNone, kStartTls, kAuth, kRetrieve, kCommit };
  enum class LineStatus : unsigned char { kNeedMore, kLine, kTooLong };

  LineStatus ReadLine(size_t limit, std::string_view* line);
  void ReleaseIdleInput();
  std::optional<Event> Dispatch(std::string_view line);
  std::optional<Event> OnSaslLine(std::string_view line);
  std::optional<Event> OnAuth(std::string_view args);
  std::optional<Event> OnUser(std::string_view args);
  std::optional<Event> OnPass(std::string_view args);
  std::optional<Event> OnTransaction(std::string_view verb, std::string_view args);
  void OnCapa();
  void OnStat();
  void OnList(std::string_view args, bool uidl);
  std::optional<Event> OnRetr(std::string_view args, bool top);
  void OnDele(std::string_view args);
  void OnRset();
  std::optional<Event> OnQuit();
  std::optional<Event> SaslStep(std::string_view decoded);

  // Message number argument: 1..N and not deleted; else answers -ERR.
  std::optional<uint32_t> MessageArg(std::string_view arg);
  bool AuthAllowed() const { return config_.tls_active || !config_.auth_requires_tls; }

  void Ok(std::string_view text);
  void Err(std::string_view code, std::string_view text);
  void Line(std::string_view text);
  void Close();

  SessionConfig config_;
  State state_ = State::kAuthorization;
  Pending pending_ = Pending::kNone;
  std::string in_;
  size_t pos_ = 0;
  bool skipping_long_line_ = false;
  std::string output_;
  size_t errors_ = 0;
  SessionStats stats_;

  // AUTHORIZATION.
  std::string user_;  // USER name, then the authenticated one
  bool have_user_ = false;
  std::optional<imap::SaslMechanism> sasl_;  // AUTH in progress
  int sasl_step_ = 0;
  std::string login_user_;  // LOGIN mechanism's first answer

  // TRANSACTION.
  std::vector<MaildropEntry> maildrop_;
  std::vector<bool> deleted_;
  uint64_t live_count_ = 0, live_size_ = 0;
  std::optional<uint64_t> pending_top_;
};

// Dot-stuffs a message for RETR/TOP (RFC 1939 §3) with CRLF line ends
// (bare LF becomes CRLF), cut after the header and `top_lines` body lines
// when given, and terminated with ".\r\n".
std::string StuffMessage(std::string_view raw, std::optional<uint64_t> top_lines);

}  // namespace mailgrid::pop3
