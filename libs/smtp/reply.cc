#include "libs/smtp/reply.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace mailgrid::smtp {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Text that reaches the wire: no control bytes at all (a CR or LF here would
// start a forged reply line), DEL included.
std::string Sanitize(std::string_view text, size_t max_len) {
  std::string out;
  out.reserve(std::min(text.size(), max_len));
  for (char c : text) {
    if (out.size() >= max_len) break;
    unsigned char u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f ? '?' : c);
  }
  return out;
}

// Splits "5.1.1 text" into the status code and the rest; returns false when
// the text does not start with a valid enhanced code.
bool SplitEnhanced(std::string_view text, std::string_view* code, std::string_view* rest) {
  size_t end = text.find(' ');
  std::string_view candidate = text.substr(0, end);
  if (!IsValidEnhancedCode(candidate)) return false;
  *code = candidate;
  *rest = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
  return true;
}

}  // namespace

Reply Reply::Make(int code, std::string_view enhanced, std::string_view text) {
  return Reply{code, std::string(enhanced), {std::string(text)}};
}

bool IsValidEnhancedCode(std::string_view code) {
  if (code.size() < 5 || code.size() > 9) return false;
  if (code[0] != '2' && code[0] != '4' && code[0] != '5') return false;
  if (code[1] != '.') return false;
  size_t i = 2;
  for (int part = 0; part < 2; ++part) {
    size_t start = i;
    while (i < code.size() && IsDigit(code[i])) ++i;
    size_t n = i - start;
    if (n < 1 || n > 3) return false;
    // RFC 3463: no leading zeros ("subject = "0" / %x31-39 1*2digit").
    if (n > 1 && code[start] == '0') return false;
    if (part == 0) {
      if (i >= code.size() || code[i] != '.') return false;
      ++i;
    }
  }
  return i == code.size();
}

std::string Reply::Serialize(bool with_enhanced) const {
  int c = (code >= 200 && code <= 599) ? code : 451;
  std::string status;
  int klass = c / 100;
  if (with_enhanced && klass != 3 && IsValidEnhancedCode(enhanced) && enhanced[0] - '0' == klass) {
    status = enhanced;
  }
  std::string code_str = std::to_string(c);
  // The prefix "250-" plus status and its space come out of the 510 octets a
  // line may carry before its CRLF.
  size_t prefix = 4 + (status.empty() ? 0 : status.size() + 1);
  size_t max_text = kMaxReplyLineLength - 2 - prefix;
  std::vector<std::string> text = lines.empty() ? std::vector<std::string>{""} : lines;
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    bool last = i + 1 == text.size();
    std::string t = Sanitize(text[i], max_text);
    out.append(code_str);
    if (status.empty() && t.empty()) {
      // Reply-code alone ("250") or with the continuation mark ("250-"):
      // no trailing space that a round trip would not preserve.
      if (!last) out.push_back('-');
    } else {
      out.push_back(last ? ' ' : '-');
      if (!status.empty()) absl::StrAppend(&out, status, t.empty() ? "" : " ");
      out.append(t);
    }
    out.append("\r\n");
  }
  return out;
}

void ReplyParser::Feed(std::string_view bytes) {
  if (pos_ > 0 && pos_ * 2 > buffer_.size()) {
    buffer_.erase(0, pos_);
    pos_ = 0;
  }
  buffer_.append(bytes);
}

absl::Status ReplyParser::ParseLine(std::string_view line, bool* last) {
  if (line.size() < 3 || !IsDigit(line[0]) || !IsDigit(line[1]) || !IsDigit(line[2])) {
    return absl::InvalidArgumentError("reply line does not start with a 3-digit code");
  }
  int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  // RFC 5321 §4.2: the first digit is 2..5, the second 0..5.
  if (line[0] < '2' || line[0] > '5' || line[1] > '5') {
    return absl::InvalidArgumentError(absl::StrCat("invalid reply code ", code));
  }
  if (line.size() > 3 && line[3] != ' ' && line[3] != '-') {
    return absl::InvalidArgumentError("reply code not followed by SP or '-'");
  }
  if (!raw_lines_.empty() && code != code_) {
    return absl::InvalidArgumentError("reply code changes inside a multi-line reply");
  }
  for (char c : line) {
    unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) {
      return absl::InvalidArgumentError("control character in reply");
    }
  }
  code_ = code;
  *last = line.size() == 3 || line[3] == ' ';
  raw_lines_.emplace_back(line.size() > 4 ? line.substr(4) : std::string_view());
  if (raw_lines_.size() > limits_.max_lines) {
    return absl::InvalidArgumentError("too many lines in a reply");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Reply>> ReplyParser::Next() {
  if (!error_.ok()) return error_;
  while (true) {
    std::string_view avail = std::string_view(buffer_).substr(pos_);
    size_t lf = avail.substr(0, limits_.max_line_length + 1).find('\n');
    if (lf == std::string_view::npos) {
      if (avail.size() > limits_.max_line_length) {
        error_ = absl::InvalidArgumentError("reply line too long");
        return error_;
      }
      return std::optional<Reply>();
    }
    std::string_view line = avail.substr(0, lf);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos_ += lf + 1;
    bool last = false;
    if (absl::Status s = ParseLine(line, &last); !s.ok()) {
      error_ = s;
      return error_;
    }
    if (!last) continue;

    Reply reply;
    reply.code = code_;
    std::string_view status;
    std::string_view rest;
    if (SplitEnhanced(raw_lines_.front(), &status, &rest) && status[0] - '0' == code_ / 100) {
      reply.enhanced = std::string(status);
    }
    for (std::string& raw : raw_lines_) {
      std::string_view s;
      if (!reply.enhanced.empty() && SplitEnhanced(raw, &s, &rest) && s == reply.enhanced) {
        reply.lines.emplace_back(rest);
      } else {
        reply.lines.push_back(std::move(raw));
      }
    }
    raw_lines_.clear();
    code_ = 0;
    return std::optional<Reply>(std::move(reply));
  }
}

}  // namespace mailgrid::smtp
