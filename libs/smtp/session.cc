// ServerSession, part 1: input framing, output, and the readers of each
// phase (commands, DATA, BDAT chunks, AUTH lines). Part 2,
// session_commands.cc, has one handler per verb; part 3,
// session_decisions.cc, applies the driver's answers.
#include "libs/smtp/session.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/smtp/ascii.h"

namespace mailgrid::smtp {

SessionConfig SessionConfig::Mx(std::string hostname) {
  SessionConfig c;
  c.hostname = std::move(hostname);
  c.mode = SessionMode::kMx;
  c.starttls_offered = true;
  return c;
}

SessionConfig SessionConfig::Submission(std::string hostname) {
  SessionConfig c;
  c.hostname = std::move(hostname);
  c.mode = SessionMode::kSubmission;
  c.starttls_offered = true;
  c.auth_enabled = true;
  c.auth_requires_tls = true;
  c.require_tls_for_mail = true;
  c.require_auth_for_mail = true;
  return c;
}

absl::Status ValidateConfig(const SessionConfig& c) {
  if (c.hostname.empty() || c.hostname.size() > 255) {
    return absl::InvalidArgumentError("hostname must be 1..255 characters");
  }
  for (char ch : c.hostname) {
    unsigned char u = static_cast<unsigned char>(ch);
    if (u <= 0x20 || u >= 0x7f)
      return absl::InvalidArgumentError("hostname must be printable ASCII");
  }
  if (c.max_command_line_length < 512) {
    return absl::InvalidArgumentError("max_command_line_length below RFC 5321's 512");
  }
  if (c.max_auth_line_length < 512) {
    return absl::InvalidArgumentError("max_auth_line_length below 512");
  }
  if (c.max_recipients < 1) return absl::InvalidArgumentError("max_recipients must be >= 1");
  if (c.binarymime && !c.chunking) return absl::InvalidArgumentError("BINARYMIME needs CHUNKING");
  if (c.auth_enabled && c.auth_mechanisms.empty()) {
    return absl::InvalidArgumentError("AUTH enabled without mechanisms");
  }
  for (const std::string& m : c.auth_mechanisms) {
    bool ok = !m.empty() && m.size() <= 20;
    for (char ch : m)
      ok = ok && ((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_');
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("bad SASL mechanism name: ", m));
  }
  return absl::OkStatus();
}

ServerSession::ServerSession(SessionConfig config)
    : config_(std::move(config)), tls_(config_.tls_active) {}

void ServerSession::Feed(std::string_view bytes) {
  if (closed_ || bytes.empty()) return;
  stats_.bytes_in += bytes.size();
  if (!greeted_) stats_.early_talker = true;
  // Compact consumed input so the buffer tracks what is unread, not the
  // whole connection.
  if (pos_ == in_.size()) {
    in_.clear();
    pos_ = scanned_ = 0;
  } else if (pos_ > 4096 && pos_ * 2 > in_.size()) {
    in_.erase(0, pos_);
    scanned_ = std::max(scanned_, pos_) - pos_;
    pos_ = 0;
  }
  in_.append(bytes);
}

std::string ServerSession::TakeOutput() { return std::exchange(output_, std::string()); }

void ServerSession::Send(const Reply& reply, bool counts) {
  if (closed_) return;
  std::string wire = reply.Serialize(config_.enhanced_status_codes);
  stats_.bytes_out += wire.size();
  switch (reply.code / 100) {
    case 2:
      ++stats_.replies_2xx;
      break;
    case 3:
      ++stats_.replies_3xx;
      break;
    case 4:
      ++stats_.replies_4xx;
      break;
    default:
      ++stats_.replies_5xx;
      break;
  }
  output_.append(wire);
  if (reply.code == 421) {
    Close();  // RFC 5321 §3.8: 421 means we are closing the channel
    return;
  }
  if (reply.code >= 400 && counts) {
    ++stats_.errors;
    if (config_.max_errors != 0 && stats_.errors >= config_.max_errors) {
      Send(Reply::Make(421, "4.7.0", absl::StrCat(config_.hostname, " Error: too many errors")));
    }
  }
}

void ServerSession::SendError(int code, std::string_view enhanced, std::string_view text) {
  Send(Reply::Make(code, enhanced, text));
}

void ServerSession::Close() {
  closed_ = true;
  pending_ = Decision::kNone;
  in_.clear();
  pos_ = scanned_ = 0;
  dot_.reset();
  txn_ = Transaction{};
}

void ServerSession::Shutdown() {
  Send(Reply::Make(
      421, "4.3.2",
      absl::StrCat(config_.hostname, " Service shutting down, closing transmission channel")));
}

void ServerSession::Timeout() {
  Send(Reply::Make(421, "4.4.2", absl::StrCat(config_.hostname, " Error: timeout exceeded")));
}

void ServerSession::ResetTransaction() {
  txn_ = Transaction{};
  dot_.reset();
}

// Finds the next line within `limit` octets (CRLF included). A line ends at
// the first LF; one not preceded by CR, or a CR anywhere else in the line,
// makes it a bad line (answered, never executed). An over-long line is
// answered once and the rest of it, up to its LF, is skipped.
ServerSession::LineStatus ServerSession::ReadLine(size_t limit, std::string_view* line) {
  if (discarding_) {
    const void* lf =
        pos_ < in_.size() ? std::memchr(in_.data() + pos_, '\n', in_.size() - pos_) : nullptr;
    if (lf == nullptr) {
      pos_ = scanned_ = in_.size();
      return LineStatus::kNeedMore;
    }
    pos_ = scanned_ = static_cast<const char*>(lf) - in_.data() + 1;
    discarding_ = false;
  }
  size_t avail = in_.size() - pos_;
  size_t window_end = pos_ + std::min(avail, limit);
  size_t from = std::max(scanned_, pos_);
  const void* lf =
      from < window_end ? std::memchr(in_.data() + from, '\n', window_end - from) : nullptr;
  if (lf == nullptr) {
    if (avail >= limit) {
      discarding_ = true;
      pos_ = scanned_ = pos_ + limit;
      return LineStatus::kTooLong;
    }
    scanned_ = window_end;
    return LineStatus::kNeedMore;
  }
  size_t end = static_cast<const char*>(lf) - in_.data();
  std::string_view raw(in_.data() + pos_, end - pos_);
  pos_ = scanned_ = end + 1;
  if (raw.empty() || raw.back() != '\r') return LineStatus::kBadLf;
  raw.remove_suffix(1);
  if (raw.find('\r') != std::string_view::npos) return LineStatus::kBadCr;
  if (raw.find('\0') != std::string_view::npos) return LineStatus::kNul;
  for (char c : raw) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return LineStatus::kControl;
  }
  *line = raw;
  return LineStatus::kLine;
}

Event ServerSession::Next() {
  while (true) {
    if (closed_) return event::Closed{};
    if (pending_ != Decision::kNone) return event::AwaitingDecision{};
    std::optional<Event> ev;
    switch (phase_) {
      case Phase::kConnect:
        pending_ = Decision::kGreeting;
        return event::Greeting{};
      case Phase::kRefused:
        ev = ProcessRefused();
        break;
      case Phase::kCommand:
        ev = ProcessCommandPhase();
        break;
      case Phase::kData:
        ev = ProcessData();
        break;
      case Phase::kBdat:
        ev = ProcessBdat();
        break;
      case Phase::kAuthLine:
        ev = ProcessAuthLine();
        break;
    }
    if (ev) {
      if (std::holds_alternative<event::NeedInput>(*ev)) ReleaseIdleInput();
      return *std::move(ev);
    }
  }
}

// A message's reads grow the buffer to 64 KiB or more, which std::string
// keeps through clear(): an idle connection after one large message held it
// for as long as it stayed open (10,000 after a 100 KB message each: relayd
// at 894 MB; 74 MB since; bench/relay/idle_memory.py --after-message).
void ServerSession::ReleaseIdleInput() {
  if (pos_ != in_.size() || in_.capacity() <= kIdleInputCapacity) return;
  std::string().swap(in_);
  pos_ = scanned_ = 0;
}

std::optional<Event> ServerSession::ProcessCommandPhase() {
  // RFC 4954 §4: an AUTH line may carry a long initial response (OAuth
  // bearer tokens run to several KB), so it gets the AUTH line limit. The
  // prefix is always known by the time the limit matters (>= 512 octets).
  size_t limit = config_.max_command_line_length;
  if (config_.auth_enabled &&
      internal::StartsWithIgnoreCase(std::string_view(in_).substr(pos_), "AUTH ")) {
    limit = std::max(limit, config_.max_auth_line_length);
  }
  std::string_view line;
  switch (ReadLine(limit, &line)) {
    case LineStatus::kNeedMore:
      return event::NeedInput{};
    case LineStatus::kTooLong:
      SendError(500, "5.5.2", "Error: line too long");
      return std::nullopt;
    case LineStatus::kBadLf:
      stats_.bare_newline = true;
      SendError(500, "5.5.2", "Error: bare <LF> received");
      return std::nullopt;
    case LineStatus::kBadCr:
      stats_.bare_newline = true;
      SendError(500, "5.5.2", "Error: bare <CR> received");
      return std::nullopt;
    case LineStatus::kNul:
      SendError(500, "5.5.2", "Error: NUL character in command");
      return std::nullopt;
    case LineStatus::kControl:
      SendError(500, "5.5.2", "Error: control character in command");
      return std::nullopt;
    case LineStatus::kLine:
      ++stats_.commands;
      return Dispatch(line);
  }
  return std::nullopt;
}

// After a refused greeting (RFC 5321 §3.1): answer 503 to everything but
// QUIT; the error cap eventually closes an insistent client.
std::optional<Event> ServerSession::ProcessRefused() {
  std::string_view line;
  LineStatus st = ReadLine(config_.max_command_line_length, &line);
  if (st == LineStatus::kNeedMore) return event::NeedInput{};
  if (st == LineStatus::kLine && SplitCommand(line).verb == Verb::kQuit) {
    Send(Reply::Make(221, "2.0.0", "Bye"));
    Close();
    return event::Quit{};
  }
  SendError(503, "5.5.1", "Error: service refused, send QUIT");
  return std::nullopt;
}

std::optional<Event> ServerSession::ProcessData() {
  pos_ += dot_->Consume(std::string_view(in_).substr(pos_));
  if (!dot_->done()) return event::NeedInput{};
  phase_ = Phase::kCommand;
  bool bare_lf = dot_->bare_lf();
  bool bare_cr = dot_->bare_cr();
  bool too_big = dot_->too_big();
  if (bare_lf || bare_cr) {
    // SMTP smuggling defence, as Postfix's smtpd_forbid_bare_newline=reject
    // ("550 ... Error: bare <LF> received"); unlike Postfix we keep the
    // session, since the whole message, up to the only real end, is refused.
    stats_.bare_newline = true;
    ResetTransaction();
    SendError(550, "5.5.2", bare_lf ? "Error: bare <LF> received" : "Error: bare <CR> received");
    return std::nullopt;
  }
  if (too_big) {
    ResetTransaction();
    SendError(552, "5.3.4", "Error: message file too big");
    return std::nullopt;
  }
  event::MessageComplete ev{MakeEnvelope(), dot_->TakeMessage(), false};
  dot_.reset();
  ++stats_.messages;
  pending_ = Decision::kMessage;
  return ev;
}

std::optional<Event> ServerSession::ProcessBdat() {
  uint64_t take = std::min<uint64_t>(in_.size() - pos_, bdat_remaining_);
  if (take > 0) {
    if (!bdat_error_ && !txn_.too_big) {
      uint64_t max = config_.max_message_size;
      if (max != 0 && txn_.body.size() + take > max) {
        txn_.too_big = true;
        std::string().swap(txn_.body);
      } else {
        txn_.body.append(in_, pos_, take);
      }
    }
    pos_ += take;
    bdat_remaining_ -= take;
  }
  if (bdat_remaining_ > 0) return event::NeedInput{};
  phase_ = Phase::kCommand;
  if (bdat_error_) {
    Reply r = *std::exchange(bdat_error_, std::nullopt);
    if (bdat_last_) ResetTransaction();
    Send(r);
    return std::nullopt;
  }
  if (txn_.too_big) {
    txn_.failed = true;
    if (bdat_last_) ResetTransaction();
    SendError(552, "5.3.4", "Error: message file too big");
    return std::nullopt;
  }
  if (!bdat_last_) {
    Send(Reply::Make(250, "2.0.0", absl::StrCat(bdat_chunk_size_, " octets received")));
    return std::nullopt;
  }
  event::MessageComplete ev{MakeEnvelope(), std::move(txn_.body), true};
  ++stats_.messages;
  pending_ = Decision::kMessage;
  return ev;
}

std::optional<Event> ServerSession::ProcessAuthLine() {
  std::string_view line;
  LineStatus st = ReadLine(config_.max_auth_line_length, &line);
  if (st == LineStatus::kNeedMore) return event::NeedInput{};
  phase_ = Phase::kCommand;
  switch (st) {
    case LineStatus::kLine:
      break;
    case LineStatus::kTooLong:
      SendError(500, "5.5.6", "Authentication Exchange line is too long");
      return event::AuthCancelled{};
    case LineStatus::kBadLf:
    case LineStatus::kBadCr:
      stats_.bare_newline = true;
      [[fallthrough]];
    default:
      SendError(501, "5.5.2", "Cannot decode response");
      return event::AuthCancelled{};
  }
  if (line == "*") {
    SendError(501, "5.7.0", "Authentication aborted");
    return event::AuthCancelled{};
  }
  std::optional<std::string> decoded = DecodeBase64(line);
  if (!decoded) {
    SendError(501, "5.5.2", "Cannot decode response");
    return event::AuthCancelled{};
  }
  phase_ = Phase::kAuthLine;  // until the driver decides
  pending_ = Decision::kAuth;
  return event::AuthResponse{*std::move(decoded)};
}

Envelope ServerSession::MakeEnvelope() {
  Envelope env;
  env.helo = helo_;
  env.esmtp = esmtp_;
  env.tls = tls_;
  env.authenticated = authenticated_;
  env.reverse_path = txn_.mail.reverse_path;
  env.mail_params = txn_.mail.params;
  env.recipients = txn_.recipients;
  return env;
}

}  // namespace mailgrid::smtp
