#include "libs/sieve/lexer.h"

#include <cctype>
#include <limits>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "libs/base/strings.h"

namespace mailgrid::sieve::internal {
namespace {

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsIdentStart(char c) { return IsAlpha(c) || c == '_'; }
bool IsIdentChar(char c) { return IsIdentStart(c) || IsDigit(c); }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Length of the valid UTF-8 sequence at s[i], or 0 when it is not one
// (overlongs, surrogates and code points past U+10FFFF are invalid).
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char b = byte(i);
  if (b < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if ((b & 0xE0) == 0xC0) {
    n = 2;
    cp = b & 0x1F;
  } else if ((b & 0xF0) == 0xE0) {
    n = 3;
    cp = b & 0x0F;
  } else if ((b & 0xF8) == 0xF0) {
    n = 4;
    cp = b & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {}

  absl::StatusOr<std::vector<Token>> Run() {
    std::vector<Token> tokens;
    while (true) {
      absl::Status skipped = SkipSpaceAndComments();
      if (!skipped.ok()) return skipped;
      Token token;
      token.pos = pos_;
      if (AtEnd()) {
        token.kind = TokenKind::kEnd;
        tokens.push_back(std::move(token));
        return tokens;
      }
      absl::Status status = Next(token);
      if (!status.ok()) return status;
      tokens.push_back(std::move(token));
    }
  }

 private:
  bool AtEnd() const { return i_ >= src_.size(); }
  char Peek(size_t ahead = 0) const { return i_ + ahead < src_.size() ? src_[i_ + ahead] : '\0'; }
  void Advance() {
    if (src_[i_] == '\n') {
      ++pos_.line;
      pos_.column = 1;
    } else {
      ++pos_.column;
    }
    ++i_;
  }

  absl::Status SkipSpaceAndComments() {
    while (!AtEnd()) {
      char c = Peek();
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        Advance();
      } else if (c == '#') {
        while (!AtEnd() && Peek() != '\n') Advance();
      } else if (c == '/' && Peek(1) == '*') {
        Pos start = pos_;
        Advance();
        Advance();
        while (!AtEnd() && !(Peek() == '*' && Peek(1) == '/')) Advance();
        if (AtEnd()) return CompileError(start, "unterminated comment");
        Advance();
        Advance();
      } else {
        break;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Next(Token& token) {
    char c = Peek();
    switch (c) {
      case '[':
        return Punct(token, TokenKind::kLeftBracket);
      case ']':
        return Punct(token, TokenKind::kRightBracket);
      case '{':
        return Punct(token, TokenKind::kLeftBrace);
      case '}':
        return Punct(token, TokenKind::kRightBrace);
      case '(':
        return Punct(token, TokenKind::kLeftParen);
      case ')':
        return Punct(token, TokenKind::kRightParen);
      case ',':
        return Punct(token, TokenKind::kComma);
      case ';':
        return Punct(token, TokenKind::kSemicolon);
      case '"':
        return QuotedString(token);
      case ':':
        return Tag(token);
      default:
        break;
    }
    if (IsDigit(c)) return Number(token);
    if (IsIdentStart(c)) return IdentifierOrText(token);
    if (static_cast<unsigned char>(c) >= 0x21 && static_cast<unsigned char>(c) < 0x7F) {
      return CompileError(pos_, absl::StrCat("unexpected character '", std::string(1, c), "'"));
    }
    return CompileError(pos_, "unexpected character");
  }

  absl::Status Punct(Token& token, TokenKind kind) {
    token.kind = kind;
    Advance();
    return absl::OkStatus();
  }

  std::string_view Identifier() {
    size_t start = i_;
    while (!AtEnd() && IsIdentChar(Peek())) Advance();
    return src_.substr(start, i_ - start);
  }

  absl::Status Tag(Token& token) {
    Advance();
    if (AtEnd() || !IsIdentStart(Peek())) return CompileError(token.pos, "':' must start a tag");
    token.kind = TokenKind::kTag;
    token.text = Lower(Identifier());
    return absl::OkStatus();
  }

  absl::Status Number(Token& token) {
    token.kind = TokenKind::kNumber;
    uint64_t value = 0;
    constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
    while (!AtEnd() && IsDigit(Peek())) {
      uint64_t digit = static_cast<uint64_t>(Peek() - '0');
      if (value > (kMax - digit) / 10) return CompileError(token.pos, "number is too large");
      value = value * 10 + digit;
      Advance();
    }
    uint64_t scale = 1;
    switch (Peek()) {
      case 'k':
      case 'K':
        scale = uint64_t{1} << 10;
        break;
      case 'm':
      case 'M':
        scale = uint64_t{1} << 20;
        break;
      case 'g':
      case 'G':
        scale = uint64_t{1} << 30;
        break;
      default:
        break;
    }
    if (scale != 1) {
      Advance();
      if (value > kMax / scale) return CompileError(token.pos, "number is too large");
      value *= scale;
    }
    if (!AtEnd() && IsIdentChar(Peek())) {
      return CompileError(pos_, "a number must be followed by white space or punctuation");
    }
    token.number = value;
    return absl::OkStatus();
  }

  absl::Status IdentifierOrText(Token& token) {
    std::string name = Lower(Identifier());
    if (name == "text" && Peek() == ':') return MultiLine(token);
    token.kind = TokenKind::kIdentifier;
    token.text = std::move(name);
    return absl::OkStatus();
  }

  // "text:" *(SP / HTAB) (hash-comment / CRLF) *(line) "." CRLF. Lines
  // starting with "." lose that dot (RFC 5228 §2.4.2). Bare LF line ends
  // are accepted; the value always has CRLF line ends.
  absl::Status MultiLine(Token& token) {
    Advance();  // ':'
    while (Peek() == ' ' || Peek() == '\t') Advance();
    if (Peek() == '#') {
      while (!AtEnd() && Peek() != '\n') Advance();
    } else if (Peek() == '\r' && Peek(1) == '\n') {
      Advance();
    } else if (Peek() != '\n') {
      return CompileError(pos_, "\"text:\" must be followed by the end of the line");
    }
    if (AtEnd()) return CompileError(token.pos, "unterminated multi-line string");
    Advance();  // '\n'
    token.kind = TokenKind::kString;
    while (true) {
      if (AtEnd()) return CompileError(token.pos, "unterminated multi-line string");
      size_t start = i_;
      while (!AtEnd() && Peek() != '\n') Advance();
      std::string_view line = src_.substr(start, i_ - start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      bool had_newline = !AtEnd();
      if (had_newline) Advance();
      if (line == ".") {
        if (!had_newline) return CompileError(token.pos, "unterminated multi-line string");
        return absl::OkStatus();
      }
      if (!had_newline) return CompileError(token.pos, "unterminated multi-line string");
      if (!line.empty() && line.front() == '.') line.remove_prefix(1);
      token.text.append(line.data(), line.size());
      token.text += "\r\n";
    }
  }

  // RFC 5228 §2.4.2: "\\" and "\"" are the escapes; a backslash before any
  // other character is dropped. Line breaks inside quotes are kept.
  absl::Status QuotedString(Token& token) {
    token.kind = TokenKind::kString;
    Advance();
    while (true) {
      if (AtEnd()) return CompileError(token.pos, "unterminated string");
      char c = Peek();
      if (c == '"') {
        Advance();
        return absl::OkStatus();
      }
      if (c == '\\') {
        Advance();
        if (AtEnd()) return CompileError(token.pos, "unterminated string");
        c = Peek();
      }
      token.text.push_back(c);
      Advance();
    }
  }

  std::string_view src_;
  size_t i_ = 0;
  Pos pos_;
};

absl::Status CheckUtf8(std::string_view source) {
  Pos pos;
  for (size_t i = 0; i < source.size();) {
    size_t n = Utf8SequenceLength(source, i);
    if (n == 0) return CompileError(pos, "the script is not valid UTF-8");
    if (source[i] == '\n') {
      ++pos.line;
      pos.column = 1;
    } else {
      pos.column += static_cast<uint32_t>(n);
    }
    i += n;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CompileError(Pos pos, std::string_view message, std::string_view reason) {
  absl::Status status =
      absl::InvalidArgumentError(absl::StrCat(pos.line, ":", pos.column, ": ", ToAbsl(message)));
  status.SetPayload(kReasonPayloadUrl, absl::Cord(ToAbsl(reason)));
  return status;
}

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source) {
  absl::Status utf8 = CheckUtf8(source);
  if (!utf8.ok()) return utf8;
  return Lexer(source).Run();
}

std::string Describe(const Token& token) {
  switch (token.kind) {
    case TokenKind::kIdentifier:
      return absl::StrCat("identifier \"", token.text, "\"");
    case TokenKind::kTag:
      return absl::StrCat("tag \":", token.text, "\"");
    case TokenKind::kNumber:
      return "number";
    case TokenKind::kString:
      return "string";
    case TokenKind::kLeftBracket:
      return "'['";
    case TokenKind::kRightBracket:
      return "']'";
    case TokenKind::kLeftBrace:
      return "'{'";
    case TokenKind::kRightBrace:
      return "'}'";
    case TokenKind::kLeftParen:
      return "'('";
    case TokenKind::kRightParen:
      return "')'";
    case TokenKind::kComma:
      return "','";
    case TokenKind::kSemicolon:
      return "';'";
    case TokenKind::kEnd:
      return "end of script";
  }
  return "token";
}

}  // namespace mailgrid::sieve::internal

namespace mailgrid::sieve {

std::string_view CompileErrorReason(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kInvalidArgument) return "";
  auto payload = status.GetPayload(internal::kReasonPayloadUrl);
  if (!payload.has_value()) return "";
  std::string value(*payload);
  if (value == internal::kReasonSyntax) return internal::kReasonSyntax;
  if (value == internal::kReasonUnsupported) return internal::kReasonUnsupported;
  if (value == internal::kReasonTooLarge) return internal::kReasonTooLarge;
  return "";
}

}  // namespace mailgrid::sieve
