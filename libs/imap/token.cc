#include "libs/imap/token.h"

#include <cstdio>

#include "libs/imap/chars.h"
#include "libs/imap/utf8.h"

namespace mailgrid::imap {

bool Token::IsKeyword(std::string_view upper) const {
  if (type != Type::kAtom || value.size() != upper.size()) return false;
  for (size_t i = 0; i < upper.size(); ++i) {
    if (chars::ToUpper(value[i]) != upper[i]) return false;
  }
  return true;
}

std::string QuoteForDebug(std::string_view s) {
  // Valid UTF-8 stays readable (mailbox names, search strings); anything
  // else non-printable is escaped.
  const bool utf8 = IsValidUtf8(s);
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8)) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
  return out;
}

std::string DebugString(const Token& t) {
  switch (t.type) {
    case Token::Type::kAtom:
      return t.value;
    case Token::Type::kQuoted:
      return QuoteForDebug(t.value);
    case Token::Type::kLiteral:
      return (t.literal8 ? "~{" : "{") + std::to_string(t.value.size()) + "}" +
             QuoteForDebug(t.value);
    case Token::Type::kList:
      return "(" + DebugString(t.items) + ")";
  }
  return "";
}

std::string DebugString(const std::vector<Token>& tokens) {
  std::string out;
  for (const Token& t : tokens) {
    if (!out.empty()) out.push_back(' ');
    out += DebugString(t);
  }
  return out;
}

}  // namespace mailgrid::imap
