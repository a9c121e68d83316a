// Character classes of RFC 3501 §9 (and RFC 9051 §9), in one place so the
// receiver, the command parsers and the response writer agree on them.
#pragma once

namespace mailgrid::imap::chars {

constexpr bool IsDigit(unsigned char c) { return c >= '0' && c <= '9'; }
constexpr bool IsAlpha(unsigned char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
// CTL = %x00-1F / %x7F.
constexpr bool IsCtl(unsigned char c) { return c < 0x20 || c == 0x7f; }

// ATOM-CHAR = any CHAR except atom-specials:
//   "(" / ")" / "{" / SP / CTL / "%" / "*" / DQUOTE / "\" / "]".
constexpr bool IsAtomChar(unsigned char c) {
  if (c <= 0x20 || c >= 0x7f) return false;
  switch (c) {
    case '(':
    case ')':
    case '{':
    case '%':
    case '*':
    case '"':
    case '\\':
    case ']':
      return false;
    default:
      return true;
  }
}

// ASTRING-CHAR = ATOM-CHAR / "]".
constexpr bool IsAstringChar(unsigned char c) { return IsAtomChar(c) || c == ']'; }

// list-char = ATOM-CHAR / list-wildcards / resp-specials.
constexpr bool IsListChar(unsigned char c) { return IsAstringChar(c) || c == '%' || c == '*'; }

// tag = 1*<any ASTRING-CHAR except "+">.
constexpr bool IsTagChar(unsigned char c) { return IsAstringChar(c) && c != '+'; }

// What the receiver accepts inside a bare (unquoted) token before a command
// parser looks at it: every visible ASCII character except the ones that
// start or end another token. Flags ("\Seen"), wildcards ("%", "*"),
// sequence sets ("1:*") and FETCH sections ("BODY[1]<0.10>") are all such
// tokens; the command parsers then apply the exact class they need.
// 8-bit bytes are let through here (clients such as Python's imaplib send
// a UTF-8 SEARCH string bare); every parser that takes an atom still
// refuses them, except SEARCH strings, which must then be valid UTF-8.
constexpr bool IsBareTokenChar(unsigned char c) {
  if (c <= 0x20 || c == 0x7f) return false;
  return c != '(' && c != ')' && c != '"' && c != '{';
}

// TEXT-CHAR = <any CHAR except CR and LF>, CHAR = %x01-7F.
constexpr bool IsTextChar(unsigned char c) {
  return c >= 0x01 && c <= 0x7f && c != '\r' && c != '\n';
}

constexpr char ToUpper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; }

}  // namespace mailgrid::imap::chars
