// IMAP views of a parsed message (RFC 3501 §7.4.2): ENVELOPE, BODY and
// BODYSTRUCTURE in IMAP syntax, and BODY[section] resolution (§6.4.5) to the
// bytes to send.
//
// Strings: NIL for absent fields; a quoted string when every byte is 7-bit
// (or, with ImapFormatOptions::utf8 — the client enabled UTF8=ACCEPT — valid
// UTF-8); otherwise a literal {n}. NUL, CR and LF inside header values are
// sent as spaces (IMAP strings cannot carry NUL; quoted ones no CR/LF).
// Media type, subtype, transfer encoding and disposition type are upper
// case; defaults are "TEXT" "PLAIN" ("CHARSET" "US-ASCII") and "7BIT".
// Parameter names and values, and every envelope field, are as written in
// the message (clients decode encoded-words themselves).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/mail/envelope.h"
#include "libs/mail/mime.h"

namespace mailgrid::mail {

struct ImapFormatOptions {
  bool utf8 = false;  // UTF8=ACCEPT (RFC 6855): UTF-8 allowed in quoted strings
};

// "(date subject from sender reply-to to cc bcc in-reply-to message-id)".
// Sender and Reply-To absent or empty are sent as From (RFC 3501).
std::string FormatEnvelope(const Envelope& envelope, const ImapFormatOptions& options = {});

// BODYSTRUCTURE (extended = true) or BODY (false) of the whole message.
std::string FormatBodyStructure(const Message& message, bool extended,
                                const ImapFormatOptions& options = {});

// Appends an IMAP string (quoted or literal) / nstring.
void AppendImapString(std::string_view value, const ImapFormatOptions& options, std::string* out);
void AppendImapNString(const std::optional<std::string>& value, const ImapFormatOptions& options,
                       std::string* out);

// A BODY[section] spec, the shape of libs/imap's FetchSection.
struct SectionSpec {
  std::vector<uint32_t> part;  // 1.2.3; empty: the whole message
  enum class Text : uint8_t { kNone, kHeader, kHeaderFields, kHeaderFieldsNot, kText, kMime };
  Text text = Text::kNone;
  std::vector<std::string> fields;  // HEADER.FIELDS[.NOT] (...)
};

// What to send for a section: a slice of the stored message, or (for
// HEADER.FIELDS, and headers missing their blank line) text built for it.
struct SectionData {
  bool built = false;
  ByteRange range;   // when !built
  std::string text;  // when built

  std::string_view Bytes(std::string_view raw) const { return built ? text : range.In(raw); }
  size_t size() const { return built ? text.size() : range.size; }
};

// NotFoundError for a part that does not exist; InvalidArgumentError for
// HEADER/TEXT on a part that is not message/rfc822 and MIME without a part.
absl::StatusOr<SectionData> ResolveSection(std::string_view raw, const Message& message,
                                           const SectionSpec& spec);

// The <origin.length> window of a section (RFC 3501 §6.4.5): empty when the
// origin is past the end; nullopt length means to the end.
std::string_view ApplyPartial(std::string_view bytes, uint64_t origin,
                              std::optional<uint64_t> length);

}  // namespace mailgrid::mail
