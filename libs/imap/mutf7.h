// IMAP modified UTF-7 (RFC 3501 §5.1.3), the wire form of mailbox names
// unless the client enabled UTF8=ACCEPT.
//
// Decoding is strict because the decoded name is what the store looks up:
// if two wire spellings decoded to the same name, access checks and caches
// keyed on the wire form could be bypassed. So exactly one encoding of each
// name is accepted, the one EncodeMutf7 produces.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mailgrid::imap {

// UTF-8 → modified UTF-7. Printable ASCII (0x20-0x7E) stands for itself,
// "&" becomes "&-", every other character goes into a "&...-" shift of
// modified BASE64 ("," for "/") over UTF-16BE. Fails on invalid UTF-8.
absl::StatusOr<std::string> EncodeMutf7(std::string_view utf8);

// Modified UTF-7 → UTF-8. InvalidArgument for: 8-bit or control bytes; an
// unterminated shift; characters outside the modified BASE64 alphabet; a
// shift that encodes a printable ASCII character (including "&"); non-zero
// padding bits or a dangling BASE64 character; an unpaired surrogate; an
// encoded U+0000; and two shifts back to back (which must be one).
absl::StatusOr<std::string> DecodeMutf7(std::string_view mutf7);

}  // namespace mailgrid::imap
