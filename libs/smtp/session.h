// ServerSession: the SMTP server protocol (RFC 5321 with PIPELINING, SIZE,
// 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, STARTTLS, AUTH, CHUNKING, DSN) as
// a pure, incremental state machine over bytes. No I/O, no clocks, no
// storage: the driver (services/relay) feeds it what it reads, acts on the
// events it returns, and writes what TakeOutput() gives it.
//
// SECURITY: every byte fed is hostile. The engine answers on its own
// everything that needs no outside knowledge (syntax, sequence, limits),
// refuses bare CR/LF in commands and in DATA (SMTP smuggling), discards
// input buffered across STARTTLS (CVE-2011-0411), bounds every buffer it
// keeps by the configured limits, and never puts a control byte of client
// input into a reply. See README.md for the RFC deviations.
//
// Driver loop:
//   session.Feed(bytes_read);
//   for (Event e = session.Next(); ; e = session.Next()) {
//     NeedInput / Closed: break;  decision: Accept(...) / Reject(...);
//   }
//   write(session.TakeOutput());  // and close if session.closed()
//
// Threads: none; one session per connection, called from one strand.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "libs/smtp/commands.h"
#include "libs/smtp/data_reader.h"
#include "libs/smtp/events.h"
#include "libs/smtp/reply.h"

namespace mailgrid::smtp {

enum class SessionMode {
  kMx,          // port 25: anyone may send to our domains
  kSubmission,  // 587/465: TLS and AUTH before MAIL
};

struct SessionConfig {
  std::string hostname = "localhost";
  SessionMode mode = SessionMode::kMx;
  uint64_t max_message_size = 25 * 1024 * 1024;  // SIZE; 0 = no limit (not advised)
  size_t max_recipients = 100;                   // RFC 5321 §4.5.3.1.8 minimum
  // Command line limit including CRLF. RFC 5321 §4.5.3.1.4 sets 512 and lets
  // extensions raise it; with DSN an RCPT may legally carry a 500-octet ORCPT
  // (RFC 3461 §4), so we accept 2048 like Postfix's line_length_limit.
  size_t max_command_line_length = 2048;
  // RFC 4954 §4: AUTH exchange lines may be up to 12288 octets; the limit
  // also applies to an AUTH command line with an initial response (XOAUTH2
  // and OAUTHBEARER tokens exceed max_command_line_length).
  size_t max_auth_line_length = 12288;
  // Errors (4xx/5xx replies) before "421 4.7.0 too many errors"; 0 = no cap.
  size_t max_errors = 20;

  bool starttls_offered = false;
  bool tls_active = false;  // implicit TLS (port 465) from the start
  bool auth_enabled = false;
  bool auth_requires_tls = true;  // AUTH neither offered nor accepted in clear
  std::vector<std::string> auth_mechanisms = {"PLAIN", "LOGIN"};
  bool require_tls_for_mail = false;   // 530 5.7.0 before STARTTLS
  bool require_auth_for_mail = false;  // 530 5.7.0 before AUTH
  bool vrfy_enabled = false;           // off: 502 (no address harvesting)

  // Extensions advertised in EHLO (and accepted as parameters).
  bool pipelining = true;
  bool size = true;
  bool eightbitmime = true;
  bool smtputf8 = true;
  bool chunking = true;
  bool binarymime = false;  // needs chunking
  bool dsn = true;
  bool enhanced_status_codes = true;

  // Port 25 defaults: STARTTLS offered, no AUTH.
  static SessionConfig Mx(std::string hostname);
  // Port 587 defaults: STARTTLS, AUTH after TLS, TLS and AUTH before MAIL.
  // For 465 set tls_active = true.
  static SessionConfig Submission(std::string hostname);
};

// Checks a config for values that cannot work (empty or unsafe hostname,
// limits too small, an AUTH mechanism name outside RFC 4422's syntax).
absl::Status ValidateConfig(const SessionConfig& config);

// Counters for metrics and logs.
struct SessionStats {
  uint64_t commands = 0;
  uint64_t replies_2xx = 0, replies_3xx = 0, replies_4xx = 0, replies_5xx = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
  uint64_t messages = 0;                  // MessageComplete events
  uint64_t errors = 0;                    // counted toward max_errors
  uint64_t discarded_after_starttls = 0;  // bytes dropped at STARTTLS: an injection attempt
  bool early_talker = false;              // bytes fed before the greeting was sent
  bool pipelining_violation = false;      // input queued behind a group-ending command
  bool bare_newline = false;              // bare CR/LF seen in a command or DATA
};

class ServerSession {
 public:
  explicit ServerSession(SessionConfig config);

  // Appends bytes read from the connection (after TLS decryption). Ignored
  // once closed.
  void Feed(std::string_view bytes);
  // The next thing the driver must act on. A decision event blocks the
  // engine until answered; Next() then returns AwaitingDecision.
  Event Next();

  // Answers the pending decision. Accept() uses the default reply; a
  // custom Accept reply must be positive (2xx; 220 for Greeting/StartTls,
  // 354 for DATA, 235 for AUTH) and a Reject reply 4xx/5xx. A reply coded
  // 421 closes the session. FailedPrecondition when nothing is pending,
  // InvalidArgument for a reply of the wrong kind (nothing changes then).
  absl::Status Accept();
  absl::Status Accept(Reply reply);
  absl::Status Reject(Reply reply);
  // AUTH only: sends "334 <base64(data)>" and waits for the client's line.
  absl::Status Challenge(std::string_view data);

  // "421 4.3.2 <host> Service shutting down" and close (graceful drain).
  void Shutdown();
  // "421 4.4.2 <host> Error: timeout exceeded" and close (RFC 5321 §4.5.3.2
  // timeouts are the driver's clock).
  void Timeout();

  // Bytes to write to the client, in order; empties the queue.
  std::string TakeOutput();
  bool has_output() const { return !output_.empty(); }
  bool closed() const { return closed_; }
  bool tls_active() const { return tls_; }
  // True while message content (DATA or a BDAT chunk) is being read, for
  // drivers that time content and commands differently (RFC 5321 §4.5.3.2).
  bool in_message() const { return phase_ == Phase::kData || phase_ == Phase::kBdat; }
  bool authenticated() const { return authenticated_; }
  // Unconsumed input; a driver stops reading while this is large and a
  // decision is pending (backpressure).
  size_t buffered_input() const { return in_.size() - pos_; }
  // Bytes the input buffer holds allocated: at most kIdleInputCapacity once
  // everything fed was read (NeedInput), however large a message came before.
  size_t input_capacity() const { return in_.capacity(); }
  static constexpr size_t kIdleInputCapacity = 4096;
  // The forward paths of the RCPT commands already buffered (pipelined,
  // RFC 2920) right after the command being decided, up to `max`, as RCPT
  // would parse them; the first line that is not such a complete, valid
  // RCPT ends the list. A hint only, so that a driver can look them up in
  // one batch: each is still its own RcptTo event, decided in order.
  std::vector<Path> PipelinedRcpts(size_t max) const;
  const SessionStats& stats() const { return stats_; }
  const SessionConfig& config() const { return config_; }

 private:
  enum class Phase { kConnect, kRefused, kCommand, kData, kBdat, kAuthLine };
  enum class Decision {
    kNone,
    kGreeting,
    kHelo,
    kMail,
    kRcpt,
    kData,
    kBdat,
    kMessage,
    kStartTls,
    kAuth,
    kVrfy
  };
  enum class LineStatus { kNeedMore, kLine, kTooLong, kBadLf, kBadCr, kNul, kControl };

  struct Transaction {
    bool active = false;
    MailCommand mail;
    std::vector<Recipient> recipients;
    bool bdat = false;    // BDAT used: DATA refused from now on
    bool failed = false;  // a BDAT failed: later chunks are swallowed with 503
    std::string body;     // BDAT chunks so far
    bool too_big = false;
  };

  // session.cc: input, output, decisions.
  LineStatus ReadLine(size_t limit, std::string_view* line);
  std::optional<Event> ProcessCommandPhase();
  std::optional<Event> ProcessData();
  std::optional<Event> ProcessBdat();
  std::optional<Event> ProcessAuthLine();
  std::optional<Event> ProcessRefused();
  // Queues a reply. 4xx/5xx count toward max_errors unless !counts; a 421
  // closes the session.
  void Send(const Reply& reply, bool counts = true);
  void SendError(int code, std::string_view enhanced, std::string_view text);
  void Close();
  void ResetTransaction();
  absl::Status Decide(bool accept, std::optional<Reply> reply);
  void ApplyAccept(const Reply& reply);
  void ApplyReject(const Reply& reply);
  bool ValidAcceptCode(int code) const;
  Envelope MakeEnvelope();
  Reply DefaultAccept() const;

  // session_commands.cc: one handler per verb.
  std::optional<Event> Dispatch(std::string_view line);
  std::optional<Event> OnHelo(const CommandLine& cmd, bool ehlo);
  std::optional<Event> OnMail(const CommandLine& cmd);
  std::optional<Event> OnRcpt(const CommandLine& cmd);
  std::optional<Event> OnData(const CommandLine& cmd);
  std::optional<Event> OnBdat(const CommandLine& cmd);
  std::optional<Event> OnStartTls(const CommandLine& cmd);
  std::optional<Event> OnAuth(const CommandLine& cmd);
  std::optional<Event> OnVrfy(const CommandLine& cmd);
  void StartBdatChunk(const BdatCommand& bdat, std::optional<Reply> error);
  Reply EhloReply(std::string_view text) const;
  Extensions CurrentExtensions() const;
  bool AuthOffered() const;
  bool RequireAuth() const;
  void NotePipelining(Verb verb);

  SessionConfig config_;
  Phase phase_ = Phase::kConnect;
  Decision pending_ = Decision::kNone;
  SessionStats stats_;

  void ReleaseIdleInput();

  std::string in_;
  size_t pos_ = 0;
  size_t scanned_ = 0;       // in_ before this holds no LF of the current line
  bool discarding_ = false;  // skipping the rest of an over-long line
  std::string output_;
  bool greeted_ = false;
  bool closed_ = false;  // wins over any phase set after a closing reply

  bool tls_;
  bool authenticated_ = false;
  bool helo_done_ = false;
  bool esmtp_ = false;
  std::string helo_;
  Transaction txn_;

  // Stash of the pending decision.
  event::Helo pending_helo_;
  MailCommand pending_mail_;
  Recipient pending_rcpt_;
  BdatCommand pending_bdat_;

  std::optional<DotReader> dot_;
  uint64_t bdat_remaining_ = 0;
  uint64_t bdat_chunk_size_ = 0;
  bool bdat_last_ = false;
  std::optional<Reply> bdat_error_;  // swallow the chunk, then send this
};

}  // namespace mailgrid::smtp
