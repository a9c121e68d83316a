// The MIME structure of a message (RFC 2045/2046), parsed once at append:
// every part's byte ranges inside the raw message (so reads slice the
// stored bytes and never re-parse), its Content-* fields, and the envelope
// of the message and of every message/rfc822 inside it.
//
// SECURITY: the input is hostile. Parsing is one pass over the bytes, in
// time linear in the size (boundary checks cost at most the depth limit per
// line that starts with "--"), recursion bounded by Limits::max_depth.
// Malformed structure never fails the parse: a missing final boundary ends
// the part at its parent's end; a multipart without a boundary or with a
// base64/QP encoding, a container nested deeper than max_depth, and
// everything after max_parts parts become opaque application/octet-stream
// parts; an encoded message/rfc822 stays an unparsed leaf of its type. The
// only errors are the configured refusals (message size; an oversized top
// header when reject_oversized_header is set).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/mail/envelope.h"
#include "libs/mail/header.h"
#include "libs/mail/rfc2047.h"

namespace mailgrid::mail {

struct Limits {
  size_t max_message_bytes = 128 * 1024 * 1024;
  uint32_t max_depth = 32;  // multipart and message/rfc822 nesting (hard cap 128)
  uint32_t max_parts = 10000;
  HeaderLimits header;  // for each part's header
  // false: a header over the limits keeps the fields before the violation
  // (Problem::kHeaderOverflow). true: the top-level header over the limits
  // refuses the message with InvalidArgumentError naming the limit.
  bool reject_oversized_header = false;
  DecodeOptions decode;  // fallback charset for raw 8-bit header text
};

// Problems found while parsing, OR-ed into Part::problems and
// Message::problems. None of them stops the parse.
enum Problem : uint32_t {
  kProblemNone = 0,
  kMalformedHeaderLine = 1u << 0,   // a header line without colon or with a bad name
  kHeaderOverflow = 1u << 1,        // a header hit HeaderLimits
  kMissingBlankLine = 1u << 2,      // the header ran into the end or a boundary
  kNulBytes = 1u << 3,              // NUL in a header
  kMissingBoundary = 1u << 4,       // multipart without a boundary parameter
  kMissingFinalBoundary = 1u << 5,  // multipart ended without its close delimiter
  kNoParts = 1u << 6,               // multipart in which no delimiter was found
  kDepthLimit = 1u << 7,            // nesting beyond max_depth made opaque
  kPartLimit = 1u << 8,             // parts beyond max_parts made opaque
  kEncodedContainer = 1u << 9,      // multipart (made opaque) or message/rfc822 (left
                                    // unparsed) with base64/QP
  kInvalidContentType = 1u << 10,   // Content-Type unreadable: text/plain assumed
};

enum class PartKind : uint8_t {
  kLeaf,
  kMultipart,
  kMessage,  // message/rfc822 parsed: one child, the encapsulated message
};

// The Content-* fields of one part, as RFC 3501 BODYSTRUCTURE needs them.
struct ContentInfo {
  std::string type = "text";  // lower-cased
  std::string subtype = "plain";
  std::vector<MimeParameter> params;  // as written (see MimeParameter)
  std::string disposition;            // lower-cased, "" when absent
  std::vector<MimeParameter> disposition_params;
  std::optional<std::string> id;           // Content-ID, unfolded
  std::optional<std::string> description;  // Content-Description, unfolded
  std::optional<std::string> md5;          // Content-MD5 as written
  std::optional<std::string> location;     // Content-Location, white space removed
  std::vector<std::string> language;       // Content-Language tags
  std::string encoding;                    // Content-Transfer-Encoding lower-cased; "" = 7bit

  bool Is(std::string_view t, std::string_view s) const;  // case-insensitive
  // The charset parameter, "" when absent.
  std::string charset() const;
  // The file name: Content-Disposition filename, else Content-Type name,
  // decoded to UTF-8; "" when neither.
  std::string filename() const;
};

inline constexpr uint32_t kNoPart = 0xFFFFFFFF;

struct Part {
  PartKind kind = PartKind::kLeaf;
  // The IMAP part number ("1", "2.1"); "" for the message itself. The
  // encapsulated message of part "3" is numbered "3" too (its parts are
  // "3.1", ...). ResolvePart() is the authority on section addressing.
  std::string number;
  uint32_t parent = kNoPart;
  std::vector<uint32_t> children;
  uint32_t depth = 0;
  // The root, or the encapsulated message of a message/rfc822 part: its
  // header is an RFC 5322 header and `envelope` is set.
  bool message_root = false;
  ByteRange header;         // the blank line included
  ByteRange body;           // a multipart's body includes preamble and epilogue
  uint64_t body_lines = 0;  // LF count in the body (multiparts: 0)
  ContentInfo content;
  std::shared_ptr<const Envelope> envelope;
  uint32_t problems = kProblemNone;

  // header + body: the whole part as stored.
  ByteRange whole() const { return {header.offset, body.end() - header.offset}; }
};

struct Message {
  size_t size = 0;                   // of the raw input
  std::vector<Part> parts;           // pre-order; parts[0] is the whole message
  Header header;                     // the top-level header, every field
  uint32_t problems = kProblemNone;  // every part's problems OR-ed

  const Part& root() const { return parts.front(); }
  const Envelope& envelope() const { return *parts.front().envelope; }
};

absl::StatusOr<Message> ParseMessage(std::string_view raw, const Limits& limits = {});

// Resolves an IMAP part path (RFC 3501 §6.4.5: "1.2.3"; empty = the whole
// message) to a part index. For a non-multipart message, part 1 is the
// message itself; parts of a message/rfc822 part are the parts of the
// encapsulated message. NotFoundError when the part does not exist.
absl::StatusOr<uint32_t> ResolvePart(const Message& message, const std::vector<uint32_t>& path);
// "1.2.3" form; "" is the whole message.
absl::StatusOr<uint32_t> FindPart(const Message& message, std::string_view number);

}  // namespace mailgrid::mail
