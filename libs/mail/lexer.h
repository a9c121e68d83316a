// The lexical layer of RFC 5322 structured fields and RFC 2045 MIME fields:
// white space, comments, quoted strings, atoms and MIME tokens, over an
// unfolded header value. Used by the address and MIME field parsers.
//
// Tolerant by design and linear: an unterminated comment or quoted string
// runs to the end of the input and sets error(); nested comments are counted,
// not recursed into. 8-bit bytes are atom text (RFC 6532).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mailgrid::mail {

class Lexer {
 public:
  explicit Lexer(std::string_view text) : text_(text) {}

  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return AtEnd() ? '\0' : text_[pos_]; }
  bool Consume(char c);  // true and advances when Peek() == c
  void Advance() { ++pos_; }
  size_t pos() const { return pos_; }
  void set_pos(size_t pos) { pos_ = pos; }
  std::string_view rest() const { return text_.substr(pos_); }
  std::string_view text() const { return text_; }
  bool error() const { return error_; }
  void set_error() { error_ = true; }

  // Skips white space (incl. CR/LF) and comments. Returns true when anything
  // was skipped. The text of the last comment (unescaped, nested parens
  // kept) goes to *last_comment when given.
  bool SkipCfws(std::string* last_comment = nullptr);

  // At '"': appends the unescaped content to *out (folding CR/LF removed).
  bool QuotedString(std::string* out);
  // 1*atext, with every byte >= 0x80 counted as atext.
  bool Atom(std::string* out);
  // RFC 2045 token: printable US-ASCII (and 8-bit) except tspecials.
  bool Token(std::string* out);
  // "[" ... "]" kept verbatim, brackets included.
  bool DomainLiteral(std::string* out);

  // Skips to the next byte in `stops` that is outside quotes, comments and
  // angle brackets (or to the end).
  void SkipTo(std::string_view stops);

 private:
  std::string_view text_;
  size_t pos_ = 0;
  bool error_ = false;
};

bool IsAtext(char c);
bool IsMimeTokenChar(char c);

}  // namespace mailgrid::mail
