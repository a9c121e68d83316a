// Internal to libs/mail: small ASCII helpers shared by the parsers.
#pragma once

#include <string>
#include <string_view>

namespace mailgrid::mail::ascii {

inline bool IsWsp(char c) { return c == ' ' || c == '\t'; }
inline bool IsLwsp(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

inline char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }
inline char Upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; }

inline std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Lower(c);
  return out;
}

inline std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Upper(c);
  return out;
}

// The value of a hex digit, -1 if it is not one.
inline int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "%XX" / "=XX" at s[i] (the marker itself not checked): the byte, or -1.
inline int HexPair(std::string_view s, size_t i) {
  if (i + 2 >= s.size() || HexValue(s[i + 1]) < 0 || HexValue(s[i + 2]) < 0) return -1;
  return HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]);
}

// CR, LF and NUL become spaces: text that may reach a header line again.
inline void ReplaceControls(std::string* text) {
  for (char& c : *text) {
    if (c == '\r' || c == '\n' || c == '\0') c = ' ';
  }
}

}  // namespace mailgrid::mail::ascii
