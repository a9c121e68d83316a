// Framing: lines, literals, IDLE/AUTHENTICATE lines, limits and recovery.
// The tokenizer for the arguments of one line is in receiver_tokens.cc.
#include "libs/imap/receiver.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "libs/imap/base64.h"
#include "libs/imap/chars.h"

namespace mailgrid::imap {
namespace {

// Enough of a line's end to recognise "~{18446744073709551615+}".
constexpr size_t kTailWindow = 32;
// Input already consumed is dropped once it is this large and at least half
// of the buffer, so the buffer is neither copied per byte nor kept forever.
constexpr size_t kCompactThreshold = 4096;
// A buffer this large is released rather than kept once it is empty.
constexpr size_t kKeepCapacity = 256 * 1024;
// Never reserve more than this for a literal on the client's word alone.
constexpr size_t kMaxLiteralReserve = 64 * 1024;

bool EqualsIgnoreCase(std::string_view a, std::string_view upper) {
  if (a.size() != upper.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (chars::ToUpper(a[i]) != upper[i]) return false;
  }
  return true;
}

bool IsCommandNameChar(unsigned char c) {
  return chars::IsAlpha(c) || chars::IsDigit(c) || c == '-' || c == '_' || c == '.';
}

// The literal announcement ending a line ("{12}", "{12+}", "~{12}"), if any.
// Sizes too large for 64 bits saturate, which every limit refuses.
struct TrailingLiteral {
  uint64_t size = 0;
  bool non_sync = false;
};
std::optional<TrailingLiteral> FindTrailingLiteral(std::string_view line) {
  if (line.empty() || line.back() != '}') return std::nullopt;
  size_t i = line.size() - 1;
  TrailingLiteral t;
  if (i > 0 && line[i - 1] == '+') {
    t.non_sync = true;
    --i;
  }
  size_t end = i;
  while (i > 0 && chars::IsDigit(static_cast<unsigned char>(line[i - 1]))) --i;
  if (i == end || i == 0 || line[i - 1] != '{') return std::nullopt;
  for (size_t k = i; k < end; ++k) {
    const uint64_t d = static_cast<uint64_t>(line[k] - '0');
    if (t.size > (std::numeric_limits<uint64_t>::max() - d) / 10) {
      t.size = std::numeric_limits<uint64_t>::max();
      break;
    }
    t.size = t.size * 10 + d;
  }
  return t;
}

}  // namespace

Receiver::Receiver(ReceiverLimits limits, CommandLookup lookup)
    : limits_(limits), lookup_(lookup) {}

void Receiver::Feed(std::string_view bytes) {
  if (phase_ == Phase::kClosed) return;
  Compact();
  in_.append(bytes.data(), bytes.size());
}

void Receiver::Compact() {
  if (pos_ == in_.size()) {
    if (in_.capacity() > kKeepCapacity) {
      std::string().swap(in_);
    } else {
      in_.clear();
    }
    pos_ = 0;
  } else if (pos_ >= kCompactThreshold && pos_ * 2 >= in_.size()) {
    in_.erase(0, pos_);
    pos_ = 0;
  }
}

// Compact() keeps a buffer up to kKeepCapacity, so that a literal arriving
// in many reads is not reallocated at each; once a command is done and
// nothing is pending, the connection may idle for hours, and 10,000 of them
// each keeping the ~130 KiB a 100 KB APPEND grew it to is 1.3 GB
// (bench/access/idle_bench.py --append-kb 100).
void Receiver::ReleaseIdleInput() {
  if (in_command_ || pos_ != in_.size() || in_.capacity() <= kIdleInputCapacity) return;
  std::string().swap(in_);
  pos_ = 0;
}

void Receiver::DiscardPendingInput() {
  pos_ = in_.size();
  scan_ = 0;
  Compact();
}

size_t Receiver::buffered_bytes() const {
  size_t held = pending_input();
  if (in_command_) held += static_cast<size_t>(command_bytes_ - literal_left_);
  return held;
}

void Receiver::ExpectIdleDone(std::string idle_tag) {
  mode_ = Mode::kIdle;
  mode_tag_ = std::move(idle_tag);
}

void Receiver::ExpectSaslResponse(std::string auth_tag) {
  mode_ = Mode::kSasl;
  mode_tag_ = std::move(auth_tag);
}

bool Receiver::NoteRejectedCommand() {
  if (++consecutive_errors_ < limits_.max_consecutive_errors) return false;
  phase_ = Phase::kClosed;
  return true;
}

uint64_t Receiver::CommandLimit() const {
  return large_literals_ ? limits_.max_command_size : limits_.max_small_command_size;
}

void Receiver::ResetCommand() {
  in_command_ = false;
  request_ = Request{};
  open_.clear();
  command_bytes_ = 0;
  tokens_ = 0;
  large_literals_ = false;
  need_space_ = false;
  after_close_ = false;
  literal_left_ = 0;
}

ReceiverResult Receiver::Next() {
  for (;;) {
    if (pending_error_) {
      ProtocolError e = std::move(*pending_error_);
      pending_error_.reset();
      return e;
    }
    switch (phase_) {
      case Phase::kClosed:
        DiscardPendingInput();
        return NeedMoreData{};
      case Phase::kLiteral:
        if (auto r = ReadLiteral()) return std::move(*r);
        if (phase_ == Phase::kLiteral) {
          Compact();
          return NeedMoreData{};
        }
        break;
      case Phase::kSkipLiteral:
        if (!SkipLiteral()) return NeedMoreData{};
        break;
      case Phase::kSkipLine:
        if (!SkipLine()) return NeedMoreData{};
        break;
      case Phase::kLine: {
        std::string_view line;
        const LineStatus status = TakeLine(&line);
        if (status == LineStatus::kNeedMore) {
          Compact();
          ReleaseIdleInput();
          return NeedMoreData{};
        }
        if (status == LineStatus::kTooLong) return Overflow();
        if (status == LineStatus::kLongLine) {
          // It arrived in one piece, so it is consumed: refuse it whole.
          ProtocolError e{ErrorTag(line), Condition::kBad, "TOOBIG", "Command line too long"};
          mode_ = Mode::kCommand;
          mode_tag_.clear();
          return FailLine(line, std::move(e));
        }
        auto r = mode_ == Mode::kCommand ? HandleLine(line) : HandleModeLine(line);
        if (r) return std::move(*r);
        break;
      }
    }
  }
}

Receiver::LineStatus Receiver::TakeLine(std::string_view* line) {
  const char* base = in_.data() + pos_;
  const size_t avail = in_.size() - pos_;
  const void* lf = std::memchr(base + scan_, '\n', avail - scan_);
  // The limit counts the line without its CRLF.
  const size_t max = limits_.max_line_length + 1;
  if (lf == nullptr) {
    scan_ = avail;
    return avail > max ? LineStatus::kTooLong : LineStatus::kNeedMore;
  }
  const size_t len = static_cast<size_t>(static_cast<const char*>(lf) - base);
  *line = std::string_view(base, len);
  pos_ += len + 1;
  scan_ = 0;
  if (!line->empty() && line->back() == '\r') line->remove_suffix(1);
  return line->size() > limits_.max_line_length ? LineStatus::kLongLine : LineStatus::kComplete;
}

ReceiverResult Receiver::Overflow() {
  // No CRLF within the limit: answer now, then drop bytes up to the CRLF
  // without storing them, remembering only the tail to see a literal.
  const size_t avail = in_.size() - pos_;
  std::string_view partial(in_.data() + pos_, avail);
  ProtocolError e{mode_ == Mode::kCommand ? ErrorTag(partial) : mode_tag_, Condition::kBad,
                  "TOOBIG", "Command line too long"};
  mode_ = Mode::kCommand;
  mode_tag_.clear();
  ResetCommand();
  skip_tail_.assign(partial.substr(avail - std::min(avail, kTailWindow)));
  DiscardPendingInput();
  phase_ = Phase::kSkipLine;
  return Emit(std::move(e));
}

std::string Receiver::ErrorTag(std::string_view line) const {
  if (in_command_) return request_.tag;
  if (mode_ != Mode::kCommand) return mode_tag_;
  const size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 0 || sp > limits_.max_tag_length) return "";
  for (size_t i = 0; i < sp; ++i) {
    if (!chars::IsTagChar(static_cast<unsigned char>(line[i]))) return "";
  }
  return std::string(line.substr(0, sp));
}

ProtocolError Receiver::Emit(ProtocolError e) {
  if (++consecutive_errors_ >= limits_.max_consecutive_errors) {
    e.close_connection = true;
    if (e.text.empty()) e.text = "Too many invalid commands";
  }
  if (e.close_connection) {
    phase_ = Phase::kClosed;
    ResetCommand();
  }
  return e;
}

bool Receiver::ResumeAfterLine(std::string_view line_tail) {
  phase_ = Phase::kLine;
  const auto lit = FindTrailingLiteral(line_tail);
  // After a synchronizing literal the client waits for a "+" it will never
  // get: it reads our tagged answer and drops the command instead.
  if (!lit || !lit->non_sync) return true;
  if (lit->size > limits_.max_discard_size) return false;
  skip_left_ = lit->size;
  phase_ = Phase::kSkipLiteral;
  return true;
}

ProtocolError Receiver::FailLine(std::string_view line, ProtocolError e) {
  ResetCommand();
  if (!ResumeAfterLine(line)) e.close_connection = true;
  return Emit(std::move(e));
}

ProtocolError Receiver::FailAtLiteral(const LiteralHeader& h, ProtocolError e) {
  ResetCommand();
  phase_ = Phase::kLine;
  if (h.non_sync) {
    if (h.size > limits_.max_discard_size) {
      e.close_connection = true;
    } else {
      skip_left_ = h.size;
      phase_ = Phase::kSkipLiteral;
    }
  }
  return Emit(std::move(e));
}

bool Receiver::SkipLiteral() {
  const uint64_t n = std::min<uint64_t>(skip_left_, in_.size() - pos_);
  pos_ += static_cast<size_t>(n);
  scan_ = 0;
  skip_left_ -= n;
  Compact();
  if (skip_left_ > 0) return false;
  // The refused command goes on after its literal, up to its CRLF.
  skip_tail_.clear();
  phase_ = Phase::kSkipLine;
  return true;
}

bool Receiver::SkipLine() {
  const char* base = in_.data() + pos_;
  const size_t avail = in_.size() - pos_;
  const void* lf = std::memchr(base, '\n', avail);
  const size_t take = lf ? static_cast<size_t>(static_cast<const char*>(lf) - base) : avail;
  skip_tail_.append(base, take);
  if (skip_tail_.size() > kTailWindow) skip_tail_.erase(0, skip_tail_.size() - kTailWindow);
  if (lf == nullptr) {
    DiscardPendingInput();
    return false;
  }
  pos_ += take + 1;
  scan_ = 0;
  std::string tail = std::move(skip_tail_);
  skip_tail_.clear();
  if (!tail.empty() && tail.back() == '\r') tail.pop_back();
  if (!ResumeAfterLine(tail)) {
    pending_error_ =
        Emit(ProtocolError{"", Condition::kBye, "TOOBIG", "Literal too large to skip", true});
  }
  return true;
}

std::optional<ReceiverResult> Receiver::HandleModeLine(std::string_view line) {
  const Mode mode = mode_;
  std::string tag = std::move(mode_tag_);
  mode_ = Mode::kCommand;
  mode_tag_.clear();
  if (mode == Mode::kIdle) {
    if (EqualsIgnoreCase(line, "DONE")) {
      consecutive_errors_ = 0;
      return IdleDone{};
    }
    return Emit(ProtocolError{std::move(tag), Condition::kBad, "", "Expected DONE to end IDLE"});
  }
  if (line == "*") return SaslResponse{true, ""};
  auto decoded = DecodeBase64(line);
  if (!decoded.ok()) {
    return Emit(ProtocolError{std::move(tag), Condition::kBad, "",
                              "Invalid BASE64 in authentication exchange"});
  }
  consecutive_errors_ = 0;
  return SaslResponse{false, std::move(*decoded)};
}

std::optional<ReceiverResult> Receiver::StartCommand(std::string_view line,
                                                     std::string_view* rest) {
  const size_t sp = line.find(' ');
  const std::string_view tag = line.substr(0, sp);
  bool tag_ok = !tag.empty() && tag.size() <= limits_.max_tag_length;
  for (char c : tag) tag_ok = tag_ok && chars::IsTagChar(static_cast<unsigned char>(c));
  if (!tag_ok) return FailLine(line, ProtocolError{"", Condition::kBad, "", "Invalid tag"});
  if (sp == std::string_view::npos) {
    return FailLine(line, ProtocolError{std::string(tag), Condition::kBad, "", "Missing command"});
  }
  std::string_view after = line.substr(sp + 1);
  std::string name;
  for (int word = 0; word < 2; ++word) {
    const size_t end = std::min(after.find(' '), after.size());
    const std::string_view w = after.substr(0, end);
    bool ok = !w.empty() && w.size() <= limits_.max_command_name_length;
    for (char c : w) ok = ok && IsCommandNameChar(static_cast<unsigned char>(c));
    if (!ok) {
      return FailLine(line, ProtocolError{std::string(tag), Condition::kBad, "",
                                          word == 0 ? "Invalid command name"
                                                    : "Invalid or missing UID command"});
    }
    if (word == 1) name.push_back(' ');
    for (char c : w) name.push_back(chars::ToUpper(c));
    after = end < after.size() ? after.substr(end + 1) : std::string_view();
    if (name != "UID") break;
  }
  CommandCheck check;
  if (lookup_ != nullptr) check = lookup_(name, state_);
  if (check.verdict != CommandCheck::Verdict::kOk) {
    std::string text =
        check.verdict == CommandCheck::Verdict::kUnknown
            ? "Unknown command " + name
            : name + " is not allowed in the " + std::string(SessionStateName(state_)) + " state";
    return FailLine(line, ProtocolError{std::string(tag), Condition::kBad, "", std::move(text)});
  }
  ResetCommand();
  in_command_ = true;
  request_.tag = std::string(tag);
  request_.command = std::move(name);
  open_.push_back(&request_.args);
  large_literals_ = check.large_literals;
  *rest = after;
  return std::nullopt;
}

std::optional<ReceiverResult> Receiver::HandleLine(std::string_view line) {
  std::string_view rest = line;
  if (!in_command_) {
    if (line.empty()) return std::nullopt;  // a stray CRLF between commands
    if (auto r = StartCommand(line, &rest)) return r;
  }
  command_bytes_ += line.size() + 2;
  if (command_bytes_ > CommandLimit()) {
    return FailLine(line,
                    ProtocolError{request_.tag, Condition::kBad, "TOOBIG", "Command too long"});
  }
  std::optional<LiteralHeader> literal;
  if (absl::Status s = Tokenize(rest, &literal); !s.ok()) {
    return FailLine(line, ToProtocolError(request_.tag, s));
  }
  if (literal) return HandleLiteralHeader(*literal);
  consecutive_errors_ = 0;
  Request done = std::move(request_);
  ResetCommand();
  return done;
}

std::optional<ReceiverResult> Receiver::HandleLiteralHeader(const LiteralHeader& h) {
  const uint64_t limit =
      large_literals_ ? limits_.max_literal_size : limits_.max_argument_literal_size;
  if (h.size > limit || h.size > CommandLimit() - command_bytes_) {
    // RFC 9051 §7.1 / RFC 7889: NO [TOOBIG], decided from the announced
    // size alone; none of the literal is ever stored.
    return FailAtLiteral(
        h, ProtocolError{request_.tag, Condition::kNo, "TOOBIG",
                         "Literal too large (limit " + std::to_string(limit) + " bytes)"});
  }
  Token t;
  t.type = Token::Type::kLiteral;
  t.literal8 = h.literal8;
  t.value.reserve(static_cast<size_t>(std::min<uint64_t>(h.size, kMaxLiteralReserve)));
  if (absl::Status s = AddToken(std::move(t)); !s.ok()) {
    return FailAtLiteral(h, ToProtocolError(request_.tag, s));
  }
  command_bytes_ += h.size;
  literal_left_ = h.size;
  phase_ = Phase::kLiteral;
  if (!h.non_sync) return NeedContinuation{h.size};
  return std::nullopt;
}

std::optional<ReceiverResult> Receiver::ReadLiteral() {
  Token& t = open_.back()->back();
  const char* base = in_.data() + pos_;
  const size_t n = static_cast<size_t>(std::min<uint64_t>(literal_left_, in_.size() - pos_));
  if (!t.literal8 && std::memchr(base, '\0', n) != nullptr) {
    // CHAR8 excludes NUL; only literal8 (RFC 3516) may carry it. The client
    // sends the rest of the literal regardless, so skip it.
    ProtocolError e{request_.tag, Condition::kBad, "", "NUL in literal (use literal8)"};
    skip_left_ = literal_left_ - n;
    pos_ += n;
    scan_ = 0;
    ResetCommand();
    phase_ = Phase::kSkipLiteral;
    return Emit(std::move(e));
  }
  t.value.append(base, n);
  pos_ += n;
  scan_ = 0;
  literal_left_ -= n;
  if (literal_left_ == 0) {
    phase_ = Phase::kLine;
    need_space_ = true;
    after_close_ = false;
  }
  return std::nullopt;
}

}  // namespace mailgrid::imap
