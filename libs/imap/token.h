// The receiver's output: a tagged command with its arguments as a tree of
// raw tokens. Command parsers (commands/*.cc) turn tokens into typed structs.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mailgrid::imap {

struct Token {
  enum class Type : unsigned char {
    kAtom,     // bare token: atom, number, NIL, flag, sequence set, FETCH item
    kQuoted,   // "..." with escapes removed
    kLiteral,  // {N}, {N+} or ~{N} (literal8) followed by N bytes
    kList,     // ( ... ), items in `items`
  };
  Type type = Type::kAtom;
  bool literal8 = false;  // kLiteral sent as ~{N}: binary, may contain NUL
  std::string value;      // kAtom, kQuoted, kLiteral
  std::vector<Token> items;

  bool is_string() const { return type == Type::kQuoted || type == Type::kLiteral; }
  // Case-insensitive match of a bare token against an upper-case keyword.
  bool IsKeyword(std::string_view upper) const;
  bool IsNil() const { return IsKeyword("NIL"); }
};

// One complete command as framed by the receiver.
struct Request {
  std::string tag;
  std::string command;  // upper-cased; "UID FETCH" for UID commands
  std::vector<Token> args;
};

// Debug renderings (tests, logs of rejected input): atoms as is, strings
// quoted with C escapes, literals as {N}"...", lists in parentheses.
std::string DebugString(const Token& t);
std::string DebugString(const std::vector<Token>& tokens);

// "..." with \" \\ and \xHH escapes (8-bit bytes kept if the whole string
// is valid UTF-8): how tests show any byte string.
std::string QuoteForDebug(std::string_view s);

}  // namespace mailgrid::imap
