// ServerSession, part 2: one handler per SMTP verb. Each either answers on
// its own (syntax, sequence and limit errors, RSET/NOOP/QUIT/HELP) or stashes
// the parsed command and returns a decision event for the driver.
#include "libs/smtp/session.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace mailgrid::smtp {
namespace {

Reply Syntax(std::string_view usage) { return Reply::Make(501, "5.5.4", usage); }
Reply BadSequence(std::string_view text) { return Reply::Make(503, "5.5.1", text); }

}  // namespace

bool ServerSession::AuthOffered() const {
  return config_.auth_enabled && (tls_ || !config_.auth_requires_tls);
}

bool ServerSession::RequireAuth() const {
  // A submission port that let unauthenticated MAIL through would be an open
  // relay, so the mode forces it whatever the flag says.
  return config_.require_auth_for_mail || config_.mode == SessionMode::kSubmission;
}

Extensions ServerSession::CurrentExtensions() const {
  Extensions e;
  e.esmtp = esmtp_;
  e.size = config_.size;
  e.max_message_size = config_.max_message_size;
  e.eightbitmime = config_.eightbitmime;
  e.binarymime = config_.binarymime && config_.chunking;
  e.smtputf8 = config_.smtputf8;
  e.dsn = config_.dsn;
  e.auth = config_.auth_enabled;
  return e;
}

Reply ServerSession::EhloReply(std::string_view text) const {
  // RFC 2034 §3: no enhanced status code on EHLO lines. Keyword order as
  // Postfix's, which clients have seen for decades.
  Reply r;
  r.code = 250;
  r.lines.emplace_back(text);
  if (config_.pipelining) r.lines.emplace_back("PIPELINING");
  if (config_.size) {
    r.lines.push_back(config_.max_message_size != 0
                          ? absl::StrCat("SIZE ", config_.max_message_size)
                          : std::string("SIZE"));
  }
  if (config_.vrfy_enabled) r.lines.emplace_back("VRFY");
  if (config_.starttls_offered && !tls_) r.lines.emplace_back("STARTTLS");
  if (AuthOffered())
    r.lines.push_back(absl::StrCat("AUTH ", absl::StrJoin(config_.auth_mechanisms, " ")));
  if (config_.enhanced_status_codes) r.lines.emplace_back("ENHANCEDSTATUSCODES");
  if (config_.eightbitmime) r.lines.emplace_back("8BITMIME");
  if (config_.binarymime && config_.chunking) r.lines.emplace_back("BINARYMIME");
  if (config_.dsn) r.lines.emplace_back("DSN");
  if (config_.smtputf8) r.lines.emplace_back("SMTPUTF8");
  if (config_.chunking) r.lines.emplace_back("CHUNKING");
  return r;
}

// RFC 2920 §3.1: EHLO, DATA, VRFY, EXPN, QUIT, NOOP (and STARTTLS, RFC 3207)
// end a pipeline group; without PIPELINING every command does. Input queued
// behind them means the client did not wait for our reply: a spam-bot mark
// (Postfix's smtpd_forbid_unauth_pipelining), recorded for the driver.
void ServerSession::NotePipelining(Verb verb) {
  if (buffered_input() == 0) return;
  bool ends_group = verb == Verb::kEhlo || verb == Verb::kHelo || verb == Verb::kData ||
                    verb == Verb::kVrfy || verb == Verb::kExpn || verb == Verb::kQuit ||
                    verb == Verb::kNoop || verb == Verb::kStartTls;
  if (ends_group || !config_.pipelining || !esmtp_) stats_.pipelining_violation = true;
}

std::optional<Event> ServerSession::Dispatch(std::string_view line) {
  if (line.empty()) {
    SendError(500, "5.5.2", "Error: bad syntax");
    return std::nullopt;
  }
  CommandLine cmd = SplitCommand(line);
  NotePipelining(cmd.verb);
  switch (cmd.verb) {
    case Verb::kHelo:
      return OnHelo(cmd, false);
    case Verb::kEhlo:
      return OnHelo(cmd, true);
    case Verb::kMail:
      return OnMail(cmd);
    case Verb::kRcpt:
      return OnRcpt(cmd);
    case Verb::kData:
      return OnData(cmd);
    case Verb::kBdat:
      return OnBdat(cmd);
    case Verb::kStartTls:
      return OnStartTls(cmd);
    case Verb::kAuth:
      return OnAuth(cmd);
    case Verb::kVrfy:
      return OnVrfy(cmd);
    case Verb::kRset:
      if (cmd.has_args) break;
      ResetTransaction();
      Send(Reply::Make(250, "2.0.0", "Ok"));
      return event::Rset{};
    case Verb::kNoop:
      Send(Reply::Make(250, "2.0.0", "Ok"));
      return event::Noop{};
    case Verb::kHelp:
      Send(Reply::Make(214, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321"));
      return event::Help{};
    case Verb::kQuit:
      if (cmd.has_args) break;
      Send(Reply::Make(221, "2.0.0", "Bye"));
      Close();
      return event::Quit{};
    case Verb::kExpn:
      SendError(502, "5.5.1", "Error: command not implemented");
      return std::nullopt;
    case Verb::kHttp:
      // A web request (or cross-protocol attack) on the SMTP port: answer
      // once and hang up rather than parse its headers as commands.
      SendError(500, "5.5.1", "Error: HTTP request on SMTP port");
      Close();
      return std::nullopt;
    case Verb::kUnknown:
      SendError(500, "5.5.1", "Error: command not recognized");
      return std::nullopt;
  }
  // RSET and QUIT take no arguments.
  Send(Syntax(cmd.verb == Verb::kRset ? "Syntax: RSET" : "Syntax: QUIT"));
  return std::nullopt;
}

std::optional<Event> ServerSession::OnHelo(const CommandLine& cmd, bool ehlo) {
  if (cmd.args.empty() || cmd.args.find(' ') != std::string_view::npos || !IsValidUtf8(cmd.args)) {
    Send(Syntax(ehlo ? "Syntax: EHLO hostname" : "Syntax: HELO hostname"));
    return std::nullopt;
  }
  // RFC 5321 §4.1.4: HELO/EHLO resets the transaction like RSET.
  ResetTransaction();
  pending_helo_ = event::Helo{ehlo, std::string(cmd.args),
                              IsValidDomain(cmd.args) || IsValidAddressLiteral(cmd.args)};
  pending_ = Decision::kHelo;
  return pending_helo_;
}

std::optional<Event> ServerSession::OnMail(const CommandLine& cmd) {
  if (!helo_done_) {
    Send(BadSequence("Error: send HELO/EHLO first"));
  } else if (txn_.active) {
    Send(BadSequence("Error: nested MAIL command"));
  } else if (config_.require_tls_for_mail && !tls_) {
    SendError(530, "5.7.0", "Must issue a STARTTLS command first");
  } else if (RequireAuth() && !authenticated_) {
    SendError(530, "5.7.0", "Authentication required");
  } else {
    Parsed<MailCommand> parsed = ParseMailCommand(cmd.args, CurrentExtensions());
    if (auto* err = std::get_if<Reply>(&parsed)) {
      Send(*err);
      return std::nullopt;
    }
    pending_mail_ = std::get<MailCommand>(std::move(parsed));
    pending_ = Decision::kMail;
    return event::MailFrom{pending_mail_.reverse_path, pending_mail_.params};
  }
  return std::nullopt;
}

std::optional<Event> ServerSession::OnRcpt(const CommandLine& cmd) {
  if (!txn_.active) {
    Send(BadSequence("Error: need MAIL command"));
    return std::nullopt;
  }
  if (txn_.bdat) {
    Send(BadSequence("Error: RCPT after BDAT"));
    return std::nullopt;
  }
  Parsed<RcptCommand> parsed =
      ParseRcptCommand(cmd.args, CurrentExtensions(), txn_.mail.params.smtputf8);
  if (auto* err = std::get_if<Reply>(&parsed)) {
    Send(*err);
    return std::nullopt;
  }
  if (txn_.recipients.size() >= config_.max_recipients) {
    // RFC 5321 §4.5.3.1.10: 452, and the client sends the rest in another
    // transaction. Not counted as an error: it is the protocol's flow control.
    Send(Reply::Make(452, "4.5.3", "Error: too many recipients"), /*counts=*/false);
    return std::nullopt;
  }
  RcptCommand rcpt = std::get<RcptCommand>(std::move(parsed));
  pending_rcpt_ = Recipient{std::move(rcpt.forward_path), std::move(rcpt.params)};
  pending_ = Decision::kRcpt;
  return event::RcptTo{pending_rcpt_.path, pending_rcpt_.params};
}

std::vector<Path> ServerSession::PipelinedRcpts(size_t max) const {
  std::vector<Path> out;
  if (phase_ != Phase::kCommand || !txn_.active || txn_.bdat || discarding_) return out;
  Extensions ext = CurrentExtensions();
  std::string_view rest = std::string_view(in_).substr(pos_);
  while (out.size() < max) {
    size_t lf = rest.find('\n');
    if (lf == std::string_view::npos || lf + 1 > config_.max_command_line_length) break;
    std::string_view line = rest.substr(0, lf);
    rest.remove_prefix(lf + 1);
    if (line.empty() || line.back() != '\r') break;
    line.remove_suffix(1);
    CommandLine cmd = SplitCommand(line);
    if (cmd.verb != Verb::kRcpt) break;
    Parsed<RcptCommand> parsed = ParseRcptCommand(cmd.args, ext, txn_.mail.params.smtputf8);
    const RcptCommand* rcpt = std::get_if<RcptCommand>(&parsed);
    if (rcpt == nullptr) break;
    out.push_back(rcpt->forward_path);
  }
  return out;
}

std::optional<Event> ServerSession::OnData(const CommandLine& cmd) {
  if (cmd.has_args) {
    Send(Syntax("Syntax: DATA"));
  } else if (!txn_.active) {
    Send(BadSequence("Error: need MAIL command"));
  } else if (txn_.bdat) {
    Send(BadSequence("Error: DATA after BDAT in one transaction"));
  } else if (txn_.recipients.empty()) {
    SendError(554, "5.5.1", "Error: no valid recipients");
  } else if (txn_.mail.params.body == BodyType::kBinaryMime) {
    // RFC 3030 §3: BINARYMIME content can only travel in BDAT chunks.
    Send(BadSequence("Error: BODY=BINARYMIME requires BDAT"));
  } else {
    pending_ = Decision::kData;
    return event::DataBegin{false};
  }
  return std::nullopt;
}

// The octets announced by BDAT follow it whatever we answer, so even a
// refused BDAT is read to its end before the reply: otherwise message bytes
// would run as commands.
std::optional<Event> ServerSession::OnBdat(const CommandLine& cmd) {
  Parsed<BdatCommand> parsed = ParseBdatCommand(cmd.args);
  if (auto* err = std::get_if<Reply>(&parsed)) {
    // Without a size we cannot know where the chunk ends; what follows is
    // read as commands, as any server must.
    Send(*err);
    return std::nullopt;
  }
  BdatCommand bdat = std::get<BdatCommand>(parsed);
  std::optional<Reply> error;
  if (!config_.chunking || (helo_done_ && !esmtp_)) {
    error = Reply::Make(502, "5.5.1", "Error: command not implemented");
  } else if (!txn_.active) {
    error = BadSequence("Error: need MAIL command");
  } else if (txn_.recipients.empty()) {
    error = Reply::Make(554, "5.5.1", "Error: no valid recipients");
  } else if (txn_.failed) {
    error = BadSequence("Error: transaction failed, send RSET");
  }
  if (error || txn_.bdat) {
    StartBdatChunk(bdat, std::move(error));
    return std::nullopt;
  }
  pending_bdat_ = bdat;
  pending_ = Decision::kBdat;
  return event::DataBegin{true};
}

void ServerSession::StartBdatChunk(const BdatCommand& bdat, std::optional<Reply> error) {
  bdat_remaining_ = bdat.size;
  bdat_chunk_size_ = bdat.size;
  bdat_last_ = bdat.last;
  bdat_error_ = std::move(error);
  phase_ = Phase::kBdat;
}

std::optional<Event> ServerSession::OnStartTls(const CommandLine& cmd) {
  if (cmd.has_args) {
    Send(Syntax("Syntax: STARTTLS"));
  } else if (tls_) {
    Send(BadSequence("Error: TLS already active"));
  } else if (!config_.starttls_offered) {
    SendError(502, "5.5.1", "Error: command not implemented");
  } else if (!esmtp_) {
    Send(BadSequence("Error: send EHLO first"));
  } else if (txn_.active) {
    Send(BadSequence("Error: MAIL transaction in progress"));
  } else {
    pending_ = Decision::kStartTls;
    return event::StartTls{};
  }
  return std::nullopt;
}

std::optional<Event> ServerSession::OnAuth(const CommandLine& cmd) {
  if (!config_.auth_enabled) {
    Send(BadSequence("Error: authentication not enabled"));
  } else if (!esmtp_) {
    Send(BadSequence("Error: send EHLO first"));
  } else if (authenticated_) {
    Send(BadSequence("Error: already authenticated"));
  } else if (txn_.active) {
    Send(BadSequence("Error: MAIL transaction in progress"));
  } else if (!AuthOffered()) {
    // RFC 4954 §6: a mechanism that needs an encrypted channel.
    SendError(538, "5.7.11", "Encryption required for requested authentication mechanism");
  } else {
    Parsed<AuthCommand> parsed = ParseAuthCommand(cmd.args);
    if (auto* err = std::get_if<Reply>(&parsed)) {
      Send(*err);
      return std::nullopt;
    }
    AuthCommand auth = std::get<AuthCommand>(std::move(parsed));
    bool known = false;
    for (const std::string& m : config_.auth_mechanisms) known = known || m == auth.mechanism;
    if (!known) {
      SendError(504, "5.5.4", "Unrecognized authentication type");
      return std::nullopt;
    }
    pending_ = Decision::kAuth;
    return event::Auth{std::move(auth.mechanism), std::move(auth.initial_response)};
  }
  return std::nullopt;
}

std::optional<Event> ServerSession::OnVrfy(const CommandLine& cmd) {
  if (!config_.vrfy_enabled) {
    SendError(502, "5.5.1", "VRFY command is disabled");
  } else if (cmd.args.empty() || !IsValidUtf8(cmd.args)) {
    Send(Syntax("Syntax: VRFY address"));
  } else {
    pending_ = Decision::kVrfy;
    return event::Vrfy{std::string(cmd.args)};
  }
  return std::nullopt;
}

}  // namespace mailgrid::smtp
