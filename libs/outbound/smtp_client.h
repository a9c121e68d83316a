// A blocking SMTP client for one delivery transaction (RFC 5321): connect,
// greeting, EHLO (HELO fallback), opportunistic or required STARTTLS
// (OpenSSL), MAIL/RCPT (pipelined when the server offers PIPELINING), DATA
// with dot-stuffing, QUIT. One call = one connection; the caller runs it on
// a worker thread (the queue runner's). Timeouts per RFC 5321 §4.5.3.2,
// applied to every socket read/write of the phase.
//
// SECURITY: the server is hostile. Replies go through smtp::ReplyParser
// (bounded lines and line counts); reply text is only ever stored, never
// echoed into a dialogue; a malformed reply drops the connection.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

struct TransactionRequest {
  std::string helo_name = "localhost";
  std::string envelope_from;  // "" = null sender
  std::vector<std::string> recipients;
  std::string_view message;  // headers + body, CRLF or LF
  TlsPolicy tls = TlsPolicy::kOpportunistic;
  std::string tls_server_name;  // SNI and the name verified (kRequire/kImplicit)
  std::string ca_file;          // "" = system default paths
  bool pipelining = true;       // use PIPELINING when the server offers it
  SmtpTimeouts timeouts;
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
  std::string remote_host;  // "name [ip]"
};

// One transaction with the server at ip:port (`host_name` for display/SNI).
TransactionResult SendMail(const std::string& ip, uint16_t port, const std::string& host_name,
                           const TransactionRequest& request);

// The DATA payload: line ends normalized to CRLF, a final CRLF added when
// missing, every line starting with '.' gets one more (RFC 5321 §4.5.2),
// terminated by ".\r\n".
std::string DotStuff(std::string_view message);

// "MAIL FROM:<a@b>" / "RCPT TO:<a@b>" after refusing addresses that could
// inject a command (CR, LF, NUL, '<', '>', spaces outside quotes are
// refused; the queue only holds parsed addresses anyway).
bool SafeForEnvelope(std::string_view address);

}  // namespace mailgrid::outbound
