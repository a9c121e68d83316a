// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
// U+10FFFF. Mailbox names and search strings arrive from the network, and
// two byte strings that decode to the same name must never both be accepted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mailgrid::imap {

bool IsValidUtf8(std::string_view s);

// Decodes the code point starting at s[*pos] and advances *pos past it.
// Returns -1 (leaving *pos unchanged) when the bytes there are not valid.
int32_t DecodeUtf8(std::string_view s, size_t* pos);

// Appends the UTF-8 form of `cp` (which must be a valid scalar value).
void AppendUtf8(uint32_t cp, std::string* out);

}  // namespace mailgrid::imap
