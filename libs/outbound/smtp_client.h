// A blocking SMTP client for one delivery transaction (RFC 5321): connect,
// greeting, EHLO (HELO fallback), opportunistic or required STARTTLS
// (OpenSSL), AUTH PLAIN/LOGIN to smart hosts (RFC 4954; only after TLS
// unless the route allows plain text), MAIL/RCPT/DATA (pipelined when the server
// offers PIPELINING), DATA with dot-stuffing, QUIT. One call = one
// transaction; with a ConnectionCache the session is kept open afterwards
// and the next transaction to the same host reuses it (no connect, EHLO,
// TLS handshake or AUTH). The caller runs it on a worker thread (the queue
// runner's). Timeouts per RFC 5321 §4.5.3.2, applied to every socket
// read/write of the phase.
//
// SECURITY: the server is hostile. Replies go through smtp::ReplyParser
// (bounded lines and line counts); reply text is only ever stored, never
// echoed into a dialogue; a malformed reply drops the connection. Passwords
// are never logged nor stored in replies.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <map>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/outbound/queue.h"

namespace mailgrid::outbound {

struct SmtpTimeouts {  // RFC 5321 §4.5.3.2 defaults
  absl::Duration connect = absl::Seconds(30);
  absl::Duration greeting = absl::Minutes(5);
  absl::Duration command = absl::Minutes(5);  // EHLO, STARTTLS, MAIL, RCPT
  absl::Duration data_init = absl::Minutes(2);
  absl::Duration data_block = absl::Minutes(3);
  absl::Duration data_end = absl::Minutes(10);
};

enum class TlsPolicy {
  kNone,           // plain text (loopback test sinks)
  kOpportunistic,  // STARTTLS when offered, certificate not checked
  kRequire,        // STARTTLS required, certificate and host name verified
  kImplicit,       // TLS from the first byte (465), verified
};

// AUTH to a smart host. Sent only on a TLS session (STARTTLS or implicit)
// unless allow_plaintext (the route says so explicitly): otherwise the
// attempt fails as temporary before any credential leaves the process.
struct SmtpCredentials {
  std::string username;
  std::string password;
  bool allow_plaintext = false;
};

struct TransactionRequest {
  std::string helo_name = "localhost";
  std::string envelope_from;  // "" = null sender
  std::vector<std::string> recipients;
  std::string_view message;  // headers + body, CRLF or LF
  TlsPolicy tls = TlsPolicy::kOpportunistic;
  std::string tls_server_name;  // SNI and the name verified (kRequire/kImplicit)
  std::string ca_file;          // "" = system default paths
  bool pipelining = true;       // use PIPELINING when the server offers it
  std::optional<SmtpCredentials> auth;
  SmtpTimeouts timeouts;
  // Opportunistic STARTTLS (MTA-STS testing mode): verify the certificate
  // against ca_file and tls_server_name anyway, without failing on it, and
  // say in the result whether it would have passed (RFC 8461 §5).
  bool report_tls_verification = false;
};

struct TransactionResult {
  // Outcome of every recipient, in request order, when the transaction got
  // as far as RCPT; empty when it failed before (see session_*).
  std::vector<RecipientOutcome> recipients;
  // Set when the whole transaction failed at the session level (connect,
  // greeting, EHLO, TLS, MAIL, or DATA for every recipient): the reply or
  // error, and whether it is permanent.
  bool session_failed = false;
  bool session_permanent = false;
  SmtpReply session_reply;
  bool tls_used = false;
  // With report_tls_verification and TLS used: "" when the certificate
  // verified for the name, else why not ("hostname mismatch", ...).
  std::string tls_verify_error;
  bool authenticated = false;
  bool reused = false;      // ran on a cached session
  std::string remote_host;  // "name [ip]"
};

// Open SMTP sessions between transactions, per destination (ip, port, TLS
// policy, server name, HELO name, AUTH user): like Postfix's connection
// cache, so a burst of messages to one host costs one connect + EHLO + TLS
// handshake (+ AUTH). Bounded per destination and in idle time; a session
// is reused at most `max_reuse` times. A cached session the server closed
// meanwhile is detected at the first command (nothing accepted yet) and the
// transaction is retried on a new connection. Thread-safe.
class ConnectionCache {
 public:
  struct Options {
    size_t max_idle_per_destination = 32;
    absl::Duration idle_time = absl::Seconds(5);
    uint32_t max_reuse = 100;
  };
  // Out of line: Session is complete only in smtp_client.cc.
  ConnectionCache();
  explicit ConnectionCache(Options options);
  ~ConnectionCache();
  ConnectionCache(const ConnectionCache&) = delete;
  ConnectionCache& operator=(const ConnectionCache&) = delete;

  const Options& options() const { return options_; }
  size_t idle() const;  // sessions waiting in the cache

  struct Session;  // defined in smtp_client.cc
  std::unique_ptr<Session> Take(const std::string& key, absl::Time now);
  void Put(const std::string& key, std::unique_ptr<Session> session, absl::Time now);

 private:
  void PruneLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Options options_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::vector<std::unique_ptr<Session>>> idle_ ABSL_GUARDED_BY(mu_);
};

// One transaction with the server at ip:port (`host_name` for display/SNI).
// `cache`: reuse and keep the session (nullptr: connect, QUIT).
TransactionResult SendMail(const std::string& ip, uint16_t port, const std::string& host_name,
                           const TransactionRequest& request, ConnectionCache* cache = nullptr);

// The DATA payload: line ends normalized to CRLF, a final CRLF added when
// missing, every line starting with '.' gets one more (RFC 5321 §4.5.2),
// terminated by ".\r\n".
std::string DotStuff(std::string_view message);

// "MAIL FROM:<a@b>" / "RCPT TO:<a@b>" after refusing addresses that could
// inject a command (CR, LF, NUL, '<', '>', spaces outside quotes are
// refused; the queue only holds parsed addresses anyway).
bool SafeForEnvelope(std::string_view address);

}  // namespace mailgrid::outbound
