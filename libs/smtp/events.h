// What ServerSession::Next() hands to its driver. Decision events (marked
// below) wait for Accept/Reject (and, for AUTH, Challenge); notifications
// need no answer — the engine has already replied.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "libs/smtp/commands.h"
#include "libs/smtp/path.h"

namespace mailgrid::smtp {

struct Recipient {
  Path path;
  RcptParams params;
};

// The transaction a message arrived in, so the driver need not track it.
struct Envelope {
  std::string helo;    // last accepted HELO/EHLO argument
  bool esmtp = false;  // EHLO rather than HELO
  bool tls = false;
  bool authenticated = false;
  Path reverse_path;
  MailParams mail_params;
  std::vector<Recipient> recipients;  // accepted ones only, in order
};

namespace event {

// Nothing to do until more bytes are fed.
struct NeedInput {};
// A decision is outstanding; Next() does nothing until it is answered.
struct AwaitingDecision {};
// The session is over: flush TakeOutput(), then close the connection.
struct Closed {};

// Decision: send the banner (Accept, default "220 <host> ESMTP") or refuse
// the connection (Reject, e.g. 554 5.7.1; a 421 closes at once).
struct Greeting {};
// Decision: HELO/EHLO. `domain_valid` says whether the argument is a
// syntactically valid domain or address literal (many real clients send
// junk here, so the engine does not refuse it on its own).
struct Helo {
  bool ehlo = false;
  std::string domain;
  bool domain_valid = false;
};
// Decision: MAIL FROM (reverse_path.null for "<>").
struct MailFrom {
  Path reverse_path;
  MailParams params;
};
// Decision: RCPT TO, e.g. Reject(550 5.1.1) after asking the directory.
// forward_path.source_route lists a discarded source route.
struct RcptTo {
  Path forward_path;
  RcptParams params;
};
// Decision: DATA (Accept sends 354) or the first BDAT of a transaction
// (Accept lets the chunk in; nothing is sent until the chunk is read).
struct DataBegin {
  bool bdat = false;
};
// Decision: the whole message arrived and passed the engine's checks.
// Accept(250 ... queued as X) only after it is durably stored.
struct MessageComplete {
  Envelope envelope;
  std::string message;  // dot-unstuffed DATA, or the BDAT chunks joined
  bool bdat = false;
};
// Decision: STARTTLS. After Accept, flush TakeOutput(), run the TLS
// handshake, and Feed() only decrypted bytes: the engine has discarded
// everything buffered before (CVE-2011-0411) and forgotten HELO/AUTH.
struct StartTls {};
// Decision: AUTH. Challenge(data) continues the SASL exchange, Accept
// succeeds (235), Reject fails (535 5.7.8 by default).
struct Auth {
  std::string mechanism;                        // upper case, configured
  std::optional<std::string> initial_response;  // decoded bytes
};
// Decision: the client's answer to the last Challenge (decoded bytes).
struct AuthResponse {
  std::string response;
};
// Notification: the client cancelled ("*"), or sent an undecodable or
// over-long response; the exchange is over and the engine has replied.
struct AuthCancelled {};
// Decision (only when VRFY is enabled): Accept defaults to 252.
struct Vrfy {
  std::string argument;
};
// Notifications: the engine has replied; RSET dropped the transaction and
// QUIT is followed by Closed.
struct Rset {};
struct Noop {};
struct Help {};
struct Quit {};

}  // namespace event

using Event = std::variant<event::NeedInput, event::AwaitingDecision, event::Closed,
                           event::Greeting, event::Helo, event::MailFrom, event::RcptTo,
                           event::DataBegin, event::MessageComplete, event::StartTls, event::Auth,
                           event::AuthResponse, event::AuthCancelled, event::Vrfy, event::Rset,
                           event::Noop, event::Help, event::Quit>;

// True for the events the driver must answer with Accept/Reject/Challenge.
bool NeedsDecision(const Event& e);
// A short name ("RcptTo") for logs and tests.
std::string_view EventName(const Event& e);

}  // namespace mailgrid::smtp
