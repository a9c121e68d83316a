// Content decoding: Content-Transfer-Encoding (base64, quoted-printable),
// charset conversion of text parts to UTF-8 (for search indexing and IMAP
// BINARY), and the text of a message for the search index.
//
// SECURITY: the input is hostile and decoding never fails: base64 skips
// whitespace and garbage, quoted-printable keeps malformed escapes as
// written, unknown charsets fall back to UTF-8 sanitizing. Output sizes are
// linear in the input; SearchText is capped by SearchTextOptions.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "libs/mail/mime.h"

namespace mailgrid::mail {

// Tolerant base64 (RFC 2045 §6.8): characters outside the alphabet are
// skipped, a '=' pad ends the current group (so concatenated padded chunks
// decode), a dangling partial group is dropped. *garbage is set when
// anything but white space and pads was skipped.
std::string DecodeBase64(std::string_view text, bool* garbage = nullptr);
std::string EncodeBase64(std::string_view bytes);

// Quoted-printable (RFC 2045 §6.7): "=XX" (either case), soft line breaks
// ("=" then optional white space then the line end), trailing white space of
// each line removed; a malformed "=" is kept literally and sets *malformed.
std::string DecodeQuotedPrintable(std::string_view text, bool* malformed = nullptr);

enum class TransferEncoding : uint8_t { kIdentity, kBase64, kQuotedPrintable, kUnknown };
// "" / 7bit / 8bit / binary → kIdentity; x-uuencode and others → kUnknown.
TransferEncoding ParseTransferEncoding(std::string_view encoding);

// The body of a leaf part with its transfer encoding removed (IMAP BINARY,
// RFC 3516). nullopt for an encoding we do not know (BINARY answers
// [UNKNOWN-CTE]) and for multipart and message parts of another encoding.
std::optional<std::string> DecodedBody(std::string_view raw, const Part& part);

struct PartText {
  std::string text;              // UTF-8
  bool unknown_charset = false;  // the charset was not known: sanitized UTF-8 instead
  bool lossy = false;            // bytes were replaced
};

// The body of a leaf part, transfer-decoded and converted to UTF-8 from its
// charset (none: UTF-8 if valid, else `fallback_charset`, else windows-1252).
PartText DecodeTextPart(std::string_view raw, const Part& part,
                        std::string_view fallback_charset = "");

// Simple HTML to text: tags dropped (block tags become line breaks), script
// and style contents dropped, common entities and numeric references decoded.
std::string HtmlToText(std::string_view html);

struct SearchTextOptions {
  size_t max_body_bytes = 4 * 1024 * 1024;  // of UTF-8 text kept for the body
  std::string fallback_charset;             // for undeclared 8-bit text
};

// What the search index sees of a message, all UTF-8.
struct SearchText {
  std::string subject;  // encoded-words decoded
  std::string from;     // "Name addr@domain" per mailbox, space-separated
  std::string to;
  std::string cc;
  std::string body;  // text parts (plain; html stripped), attachment names
  bool truncated = false;
};

// text/plain and text/html leaves not marked as attachments, in order; in
// multipart/alternative only the first plain part (else the first html
// part). Nested message/rfc822 parts contribute their text and headers.
SearchText ExtractSearchText(std::string_view raw, const Message& message,
                             const SearchTextOptions& options = {});

}  // namespace mailgrid::mail
