// Pop3Session: framing, output, decisions. Command handlers are in
// session_commands.cc.
#include "libs/pop3/session.h"

#include <utility>

#include "libs/imap/base64.h"

namespace mailgrid::pop3 {
namespace {

// Server text never carries a control byte or 8-bit byte of anyone's input.
std::string CleanText(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u >= 0x7f ? '?' : c);
  }
  return out;
}

}  // namespace

std::string_view EventName(const Event& e) {
  static constexpr std::string_view kNames[] = {"NeedInput", "Closed",  "StartTls",
                                                "Authenticate", "Retrieve", "Commit",
                                                "AwaitingDecision"};
  return kNames[e.index()];
}

Session::Session(SessionConfig config) : config_(std::move(config)) {}

void Session::Start() {
  Ok(CleanText(config_.hostname) + " POP3 ready");
}

void Session::Feed(std::string_view bytes) {
  if (closed()) return;
  if (skipping_long_line_) {
    size_t lf = bytes.find('\n');
    if (lf == std::string_view::npos) return;  // still inside the refused line
    skipping_long_line_ = false;
    bytes.remove_prefix(lf + 1);
  }
  in_.append(bytes.data(), bytes.size());
}

Session::LineStatus Session::ReadLine(size_t limit, std::string_view* line) {
  std::string_view rest(in_.data() + pos_, in_.size() - pos_);
  size_t lf = rest.find('\n');
  if (lf == std::string_view::npos) {
    if (rest.size() <= limit) return LineStatus::kNeedMore;
    // Refused without being kept: drop what we have and skip to the LF.
    in_.clear();
    pos_ = 0;
    skipping_long_line_ = true;
    return LineStatus::kTooLong;
  }
  std::string_view l = rest.substr(0, lf);
  pos_ += lf + 1;
  if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
  if (l.size() > limit) return LineStatus::kTooLong;
  *line = l;
  return LineStatus::kLine;
}

// std::string keeps its capacity through clear(): without this an idle
// session kept whatever its largest burst of input had grown the buffer to.
void Session::ReleaseIdleInput() {
  if (pos_ != in_.size() || in_.capacity() <= kIdleInputCapacity) return;
  std::string().swap(in_);
  pos_ = 0;
}

Event Session::Next() {
  while (true) {
    if (closed()) return event::Closed{};
    if (pending_ != Pending::kNone) return event::AwaitingDecision{};
    if (pos_ > 4096 && pos_ * 2 > in_.size()) {  // compact consumed input
      in_.erase(0, pos_);
      pos_ = 0;
    }
    std::string_view line;
    size_t limit = sasl_ ? config_.max_auth_line_length : config_.max_line_length;
    LineStatus st = ReadLine(limit, &line);
    if (st == LineStatus::kNeedMore) {
      ReleaseIdleInput();
      return event::NeedInput{};
    }
    if (st == LineStatus::kTooLong) {
      sasl_.reset();
      Err("", "Line too long");
      continue;
    }
    ++stats_.commands;
    std::optional<Event> e = sasl_ ? OnSaslLine(line) : Dispatch(line);
    if (e) return *e;
  }
}

void Session::Ok(std::string_view text) {
  ++stats_.ok;
  output_ += "+OK";
  if (!text.empty()) {
    output_ += ' ';
    output_ += text;
  }
  output_ += "\r\n";
}

void Session::Err(std::string_view code, std::string_view text) {
  ++stats_.err;
  output_ += "-ERR ";
  if (!code.empty()) {
    output_ += '[';
    output_ += code;
    output_ += "] ";
  }
  output_ += text;
  output_ += "\r\n";
  ++errors_;
  if (config_.max_errors != 0 && errors_ >= config_.max_errors && !closed()) {
    output_ += "-ERR [SYS/PERM] Too many errors, closing connection\r\n";
    Close();
  }
}

void Session::Line(std::string_view text) {
  output_ += text;
  output_ += "\r\n";
}

void Session::Close() {
  state_ = State::kClosed;
  pending_ = Pending::kNone;
  in_.clear();
  pos_ = 0;
}

std::string Session::TakeOutput() { return std::exchange(output_, {}); }

void Session::Shutdown() {
  if (closed()) return;
  Err("SYS/TEMP", "Server shutting down");
  Close();
}

void Session::Timeout() {
  if (closed()) return;
  Err("", "Autologout; idle for too long");
  Close();
}

// ---- Decisions --------------------------------------------------------------

absl::Status Session::AcceptStartTls() {
  if (pending_ != Pending::kStartTls) return absl::FailedPreconditionError("no STLS pending");
  pending_ = Pending::kNone;
  Ok("Begin TLS negotiation");
  // Anything pipelined behind STLS came in clear text: never act on it.
  stats_.discarded_after_stls += buffered_input();
  in_.clear();
  pos_ = 0;
  config_.tls_active = true;
  have_user_ = false;
  user_.clear();
  return absl::OkStatus();
}

absl::Status Session::RejectStartTls(std::string_view text) {
  if (pending_ != Pending::kStartTls) return absl::FailedPreconditionError("no STLS pending");
  pending_ = Pending::kNone;
  Err("SYS/TEMP", CleanText(text));
  return absl::OkStatus();
}

absl::Status Session::AcceptAuth(std::vector<MaildropEntry> maildrop) {
  if (pending_ != Pending::kAuth) return absl::FailedPreconditionError("no AUTH pending");
  pending_ = Pending::kNone;
  maildrop_ = std::move(maildrop);
  deleted_.assign(maildrop_.size(), false);
  live_count_ = maildrop_.size();
  live_size_ = 0;
  for (const MaildropEntry& m : maildrop_) live_size_ += m.size;
  state_ = State::kTransaction;
  errors_ = 0;
  Ok("Logged in, " + std::to_string(live_count_) + " messages (" + std::to_string(live_size_) +
     " octets)");
  return absl::OkStatus();
}

absl::Status Session::RejectAuth(bool temporary, std::string_view text) {
  if (pending_ != Pending::kAuth) return absl::FailedPreconditionError("no AUTH pending");
  pending_ = Pending::kNone;
  have_user_ = false;
  user_.clear();
  Err(temporary ? "SYS/TEMP" : "AUTH", CleanText(text));
  return absl::OkStatus();
}

absl::Status Session::RejectAuthInUse() {
  if (pending_ != Pending::kAuth) return absl::FailedPreconditionError("no AUTH pending");
  pending_ = Pending::kNone;
  have_user_ = false;
  user_.clear();
  Err("IN-USE", "Maildrop is locked by another session");
  return absl::OkStatus();
}

absl::Status Session::Deliver(std::string_view raw) {
  if (pending_ != Pending::kRetrieve) return absl::FailedPreconditionError("no RETR pending");
  pending_ = Pending::kNone;
  ++stats_.retrieved;
  std::string body = StuffMessage(raw, pending_top_);
  if (pending_top_) {
    Ok("Top of message follows");
  } else {
    Ok(std::to_string(raw.size()) + " octets");
  }
  output_ += body;
  pending_top_.reset();
  return absl::OkStatus();
}

absl::Status Session::FailRetrieve(std::string_view text) {
  if (pending_ != Pending::kRetrieve) return absl::FailedPreconditionError("no RETR pending");
  pending_ = Pending::kNone;
  pending_top_.reset();
  Err("SYS/TEMP", CleanText(text));
  return absl::OkStatus();
}

absl::Status Session::CommitDone(const absl::Status& result) {
  if (pending_ != Pending::kCommit) return absl::FailedPreconditionError("no commit pending");
  pending_ = Pending::kNone;
  if (result.ok()) {
    Ok(CleanText(config_.hostname) + " POP3 server signing off (" + std::to_string(live_count_) +
       " messages left)");
  } else {
    // RFC 1939 §6: the session ends either way.
    Err("SYS/TEMP", "Some deleted messages not removed");
  }
  Close();
  return absl::OkStatus();
}

// ---- Messages -------------------------------------------------------------

std::string StuffMessage(std::string_view raw, std::optional<uint64_t> top_lines) {
  std::string out;
  out.reserve(raw.size() + raw.size() / 32 + 8);
  bool in_header = true;
  uint64_t body_lines = 0;
  size_t pos = 0;
  while (pos < raw.size()) {
    size_t lf = raw.find('\n', pos);
    size_t end = lf == std::string_view::npos ? raw.size() : lf;
    std::string_view line = raw.substr(pos, end - pos);
    pos = lf == std::string_view::npos ? raw.size() : lf + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!in_header && top_lines) {
      if (body_lines >= *top_lines) break;
      ++body_lines;
    }
    if (!line.empty() && line.front() == '.') out.push_back('.');
    out.append(line.data(), line.size());
    out += "\r\n";
    if (in_header && line.empty()) in_header = false;
  }
  out += ".\r\n";
  return out;
}

}  // namespace mailgrid::pop3
