// The arguments of one command line (the text after the command name, or
// after a literal) into the token tree. Quoted strings cannot span lines and
// a literal always ends its line, so every token here is complete; only the
// open lists carry over to the next line.
#include <cstdio>
#include <limits>

#include "libs/base/status.h"
#include "libs/imap/chars.h"
#include "libs/imap/receiver.h"

namespace mailgrid::imap {
namespace {

std::string DescribeByte(unsigned char c) {
  char buf[40];
  if (c > 0x20 && c < 0x7f) {
    std::snprintf(buf, sizeof buf, "Unexpected character '%c'", c);
  } else {
    std::snprintf(buf, sizeof buf, "Unexpected byte 0x%02X", c);
  }
  return buf;
}

}  // namespace

absl::Status Receiver::AddToken(Token token) {
  if (++tokens_ > limits_.max_tokens) return BadArgument("Too many arguments", "LIMIT");
  open_.back()->push_back(std::move(token));
  return absl::OkStatus();
}

absl::Status Receiver::ParseQuoted(std::string_view seg, size_t* pos) {
  Token t;
  t.type = Token::Type::kQuoted;
  size_t i = *pos + 1;
  while (i < seg.size()) {
    const auto c = static_cast<unsigned char>(seg[i]);
    if (c == '"') {
      *pos = i + 1;
      return AddToken(std::move(t));
    }
    if (c == '\\') {
      // RFC 3501: only \" and \\ are escapes.
      if (i + 1 >= seg.size() || (seg[i + 1] != '"' && seg[i + 1] != '\\')) {
        return BadArgument("Invalid escape in quoted string");
      }
      t.value.push_back(seg[i + 1]);
      i += 2;
      continue;
    }
    // TEXT-CHAR excludes NUL, CR and LF. 8-bit bytes are allowed here
    // (RFC 9051 UTF8-2..4); the command parsers validate UTF-8 where the
    // value is text.
    if (c == 0 || c == '\r') return BadArgument("Invalid character in quoted string");
    t.value.push_back(static_cast<char>(c));
    ++i;
  }
  return BadArgument("Unterminated quoted string");
}

absl::Status Receiver::ParseLiteralHeader(std::string_view seg, size_t* pos, LiteralHeader* h) {
  size_t i = *pos;
  if (seg[i] == '~') {
    h->literal8 = true;
    ++i;
  }
  ++i;  // "{"
  const size_t digits = i;
  uint64_t size = 0;
  while (i < seg.size() && chars::IsDigit(static_cast<unsigned char>(seg[i]))) {
    const uint64_t d = static_cast<uint64_t>(seg[i] - '0');
    // Saturate: every limit refuses it, and the skip logic agrees.
    size = size > (std::numeric_limits<uint64_t>::max() - d) / 10
               ? std::numeric_limits<uint64_t>::max()
               : size * 10 + d;
    ++i;
  }
  if (i == digits) return BadArgument("Invalid literal size");
  if (i < seg.size() && seg[i] == '+') {
    h->non_sync = true;
    ++i;
  }
  if (i >= seg.size() || seg[i] != '}') return BadArgument("Invalid literal");
  h->size = size;
  *pos = i + 1;
  return absl::OkStatus();
}

absl::Status Receiver::Tokenize(std::string_view seg, std::optional<LiteralHeader>* literal) {
  size_t i = 0;
  const size_t n = seg.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(seg[i]);
    if (c == ' ') {
      ++i;
      need_space_ = false;
      after_close_ = false;
      continue;
    }
    if (c == ')') {
      if (open_.size() <= 1) return BadArgument("Unexpected \")\"");
      open_.pop_back();
      ++i;
      need_space_ = true;
      after_close_ = true;
      continue;
    }
    // Tokens are separated by SP; the one exception is a FETCH section
    // closing right after its header list: BODY[HEADER.FIELDS (A B)].
    if (need_space_ && !(after_close_ && c == ']')) return BadArgument("Missing space");
    need_space_ = false;
    after_close_ = false;
    if (c == '(') {
      if (open_.size() > limits_.max_depth) return BadArgument("Lists nested too deeply", "LIMIT");
      Token list;
      list.type = Token::Type::kList;
      RETURN_IF_ERROR(AddToken(std::move(list)));
      open_.push_back(&open_.back()->back().items);
      ++i;
      continue;
    }
    if (c == '"') {
      RETURN_IF_ERROR(ParseQuoted(seg, &i));
      need_space_ = true;
      continue;
    }
    if (c == '{' || (c == '~' && i + 1 < n && seg[i + 1] == '{')) {
      LiteralHeader h;
      RETURN_IF_ERROR(ParseLiteralHeader(seg, &i, &h));
      if (i != n) return BadArgument("A literal size must end the line");
      *literal = h;
      return absl::OkStatus();
    }
    const size_t start = i;
    while (i < n && chars::IsBareTokenChar(static_cast<unsigned char>(seg[i]))) ++i;
    if (i == start || (i < n && seg[i] != ' ' && seg[i] != ')')) {
      return BadArgument(DescribeByte(static_cast<unsigned char>(seg[i])));
    }
    Token atom;
    atom.value.assign(seg.data() + start, i - start);
    RETURN_IF_ERROR(AddToken(std::move(atom)));
    need_space_ = true;
  }
  if (open_.size() > 1) return BadArgument("Missing \")\"");
  return absl::OkStatus();
}

}  // namespace mailgrid::imap
