// RFC 5322 header blocks: the fields of a message or MIME part header, with
// the exact byte ranges of each field inside the raw bytes, so that DKIM can
// hash the bytes as they arrived, IMAP HEADER.FIELDS can copy whole lines,
// and nothing is ever rebuilt from a parsed form.
//
// SECURITY: the input is hostile. The parser never fails on content: bare
// LF line ends, obsolete syntax (white space before the colon), NUL bytes,
// 8-bit bytes and lines without a colon are all tolerated; a line that is not
// a field is recorded in Header::malformed and skipped. Memory and time are
// linear in the input and bounded by HeaderLimits; past a limit the parser
// stops collecting fields, still finds where the header ends, and says which
// limit was hit (ParseHeaderLenient) or refuses (ParseHeader).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mailgrid::mail {

// A half-open range [offset, offset + size) of bytes inside the raw input.
struct ByteRange {
  size_t offset = 0;
  size_t size = 0;

  size_t end() const { return offset + size; }
  std::string_view In(std::string_view raw) const { return raw.substr(offset, size); }
  friend bool operator==(const ByteRange&, const ByteRange&) = default;
};

struct HeaderLimits {
  size_t max_header_bytes = 512 * 1024;  // the whole block, blank line included
  size_t max_line_bytes = 64 * 1024;     // one physical line (RFC 5322 says 998)
  size_t max_fields = 5000;
};

struct HeaderField {
  std::string name;     // as written, white space before the colon removed
  ByteRange line;       // the whole field: name to the end of its last line ending
  ByteRange raw_value;  // after the colon up to (not incl.) the last line ending;
                        // folding line ends and leading white space included
  // The value unfolded (RFC 5322 §2.2.3): every CRLF/LF that is followed by
  // white space removed, leading and trailing white space trimmed. Bytes are
  // kept as they are (8-bit, NUL); callers that print it sanitize.
  std::string value;
};

enum class HeaderOverflow : uint8_t {
  kNone,
  kHeaderBytes,  // the block is longer than max_header_bytes
  kLineBytes,    // a physical line is longer than max_line_bytes
  kFields,       // more than max_fields fields
};

struct Header {
  ByteRange block;  // the whole header, the blank line that ends it included
  // The block ended at the end of input without a blank line (a truncated
  // message, or a message that is all header): the body is empty.
  bool missing_blank_line = false;
  bool has_nul = false;
  std::vector<HeaderField> fields;
  std::vector<ByteRange> malformed;  // lines skipped: no colon, bad name, ...
  // Limits: fields after the first violation are not collected (the block
  // still spans to the real end of the header).
  HeaderOverflow overflow = HeaderOverflow::kNone;
  size_t overflow_line = 0;  // 1-based physical line of the violation

  // Case-insensitive lookups (ASCII). First() is the first field of that
  // name; All() every one in order.
  const HeaderField* First(std::string_view name) const;
  std::vector<const HeaderField*> All(std::string_view name) const;
  std::optional<std::string_view> Value(std::string_view name) const;
};

// Parses the header that starts at raw[0]. `base` is added to every range so
// a part header inside a larger message reports offsets into the message.
// Never fails; see Header::overflow.
Header ParseHeaderLenient(std::string_view raw, const HeaderLimits& limits = {}, size_t base = 0);

// The same, but a limit violation is an InvalidArgumentError that names the
// limit and the line ("header line 3 is longer than 65536 bytes").
absl::StatusOr<Header> ParseHeader(std::string_view raw, const HeaderLimits& limits = {});

// A human sentence for an overflow, "" for kNone.
std::string DescribeOverflow(const Header& header, const HeaderLimits& limits);

// ASCII case-insensitive comparison of header names.
bool HeaderNameEquals(std::string_view a, std::string_view b);

// True when `name` is a valid RFC 5322 field name (printable US-ASCII except
// ':', at least one character).
bool IsValidFieldName(std::string_view name);

// Unfolds a raw value: removes CR/LF line ends that precede white space (and
// any other CR LF), trims leading and trailing white space.
std::string Unfold(std::string_view raw_value);

// Rewrites bare LF line ends as CRLF (a CR not followed by LF is content and
// stays). Stored messages should be normalized once at append, so that every
// byte range is also a size an IMAP client can rely on.
std::string ToCrlf(std::string_view raw);

}  // namespace mailgrid::mail
