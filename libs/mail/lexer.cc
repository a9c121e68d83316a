#include "libs/mail/lexer.h"

#include <utility>

namespace mailgrid::mail {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

}  // namespace

bool IsAtext(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u >= 0x80) return true;
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '/':
    case '=':
    case '?':
    case '^':
    case '_':
    case '`':
    case '{':
    case '|':
    case '}':
    case '~':
      return true;
    default:
      return false;
  }
}

bool IsMimeTokenChar(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u >= 0x80) return true;
  if (u <= 32 || u == 127) return false;
  switch (c) {
    case '(':
    case ')':
    case '<':
    case '>':
    case '@':
    case ',':
    case ';':
    case ':':
    case '\\':
    case '"':
    case '/':
    case '[':
    case ']':
    case '?':
    case '=':
      return false;
    default:
      return true;
  }
}

bool Lexer::Consume(char c) {
  if (Peek() != c || AtEnd()) return false;
  ++pos_;
  return true;
}

bool Lexer::SkipCfws(std::string* last_comment) {
  size_t start = pos_;
  while (!AtEnd()) {
    char c = text_[pos_];
    if (IsSpace(c)) {
      ++pos_;
      continue;
    }
    if (c != '(') break;
    // A comment: nesting counted, never recursed into.
    std::string comment;
    int depth = 0;
    while (!AtEnd()) {
      char d = text_[pos_++];
      if (d == '\\' && !AtEnd()) {
        comment.push_back(text_[pos_++]);
        continue;
      }
      if (d == '(') {
        if (depth++ == 0) continue;
      } else if (d == ')') {
        if (--depth == 0) break;
      } else if (d == '\r' || d == '\n') {
        continue;
      }
      comment.push_back(d);
    }
    if (depth != 0) error_ = true;
    if (last_comment != nullptr) *last_comment = std::move(comment);
  }
  return pos_ != start;
}

bool Lexer::QuotedString(std::string* out) {
  if (Peek() != '"' || AtEnd()) return false;
  ++pos_;
  while (!AtEnd()) {
    char c = text_[pos_++];
    if (c == '"') return true;
    if (c == '\\' && !AtEnd()) {
      out->push_back(text_[pos_++]);
      continue;
    }
    if (c == '\r' || c == '\n') continue;
    out->push_back(c);
  }
  error_ = true;  // unterminated: everything to the end was taken
  return true;
}

bool Lexer::Atom(std::string* out) {
  size_t start = pos_;
  while (!AtEnd() && IsAtext(text_[pos_])) ++pos_;
  out->append(text_.substr(start, pos_ - start));
  return pos_ != start;
}

bool Lexer::Token(std::string* out) {
  size_t start = pos_;
  while (!AtEnd() && IsMimeTokenChar(text_[pos_])) ++pos_;
  out->append(text_.substr(start, pos_ - start));
  return pos_ != start;
}

bool Lexer::DomainLiteral(std::string* out) {
  if (Peek() != '[' || AtEnd()) return false;
  size_t start = pos_;
  while (!AtEnd() && text_[pos_] != ']') {
    if (text_[pos_] == '\\' && pos_ + 1 < text_.size()) ++pos_;
    ++pos_;
  }
  if (AtEnd()) {
    error_ = true;
  } else {
    ++pos_;
  }
  out->append(text_.substr(start, pos_ - start));
  return true;
}

void Lexer::SkipTo(std::string_view stops) {
  while (!AtEnd()) {
    char c = text_[pos_];
    if (stops.find(c) != std::string_view::npos) return;
    if (c == '"') {
      std::string ignored;
      QuotedString(&ignored);
    } else if (c == '(') {
      SkipCfws();
    } else if (c == '<') {
      while (!AtEnd() && text_[pos_] != '>') ++pos_;
      if (!AtEnd()) ++pos_;
    } else {
      ++pos_;
    }
  }
}

}  // namespace mailgrid::mail
