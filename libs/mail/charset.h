// Charset conversion to UTF-8 through glibc iconv, with the label mapping
// that real mail needs: a message labelled GB2312 is almost always GBK (and
// GBK is a subset of GB18030), ISO-8859-1 is really windows-1252, Shift_JIS
// is CP932, and so on (the WHATWG Encoding Standard's practice).
//
// SECURITY: labels come from hostile headers. Only names made of letters,
// digits and "-_.:+" (at most 40 bytes) reach iconv_open, so iconv's "//"
// suffixes and paths can never be injected; we only ever convert *to*
// UTF-8. Invalid input bytes become U+FFFD, never an error.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mailgrid::mail {

// The iconv name a MIME charset label maps to ("gb2312" → "GB18030",
// "utf8" → "UTF-8", "us-ascii" → "US-ASCII"), or "" when the label is not a
// plausible charset name. It does not check that iconv knows the name.
std::string CanonicalCharset(std::string_view label);

// Converts `bytes` from `charset` to UTF-8. nullopt when the charset is
// unknown (to us or to iconv). Invalid or truncated sequences become U+FFFD
// and set *lossy. US-ASCII text that is not ASCII is read as UTF-8 when it
// is valid UTF-8 and as windows-1252 otherwise (mislabelled mail is common).
std::optional<std::string> ConvertToUtf8(std::string_view bytes, std::string_view charset,
                                         bool* lossy = nullptr);

bool IsValidUtf8(std::string_view text);

// The end of the run of ASCII bytes (< 0x80) that starts at text[from]:
// the first index at or after `from` holding a byte >= 0x80, or
// text.size(). Eight bytes a test: mail bodies are mostly ASCII, and the
// byte-at-a-time UTF-8 walks over a 100 KB body were a visible part of the
// mailstore leader's time before its Raft proposal (issue 8).
size_t AsciiRunEnd(std::string_view text, size_t from);

// Valid UTF-8 is returned unchanged; each invalid byte becomes U+FFFD.
std::string SanitizeUtf8(std::string_view text, bool* lossy = nullptr);

// Text that may be UTF-8 or a legacy charset (raw 8-bit header bytes): valid
// UTF-8 is kept; otherwise it is converted from `fallback_charset` when that
// is known, else sanitized. *lossy is set when anything was guessed.
std::string BytesToUtf8(std::string_view bytes, std::string_view fallback_charset,
                        bool* lossy = nullptr);

// Appends the UTF-8 encoding of a code point (U+FFFD for invalid ones).
void AppendUtf8(char32_t cp, std::string* out);

}  // namespace mailgrid::mail
