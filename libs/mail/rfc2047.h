// Non-ASCII text in headers: RFC 2047 encoded-words (=?charset?B|Q?...?=),
// RFC 2231 parameter values (continuations, charset and language), raw
// UTF-8 (RFC 6532) and raw legacy 8-bit bytes, all decoded to UTF-8; and
// the encoder for the headers we generate ourselves.
//
// SECURITY: decoding never fails and never throws. An encoded-word in a
// charset we cannot convert is kept as written (it is ASCII) and flagged;
// invalid bytes become U+FFFD, so every result is valid UTF-8. The encoder
// strips CR, LF and NUL from what it is given: a value can never inject a
// header line.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mailgrid::mail {

struct DecodeOptions {
  // Charset assumed for raw 8-bit bytes that are not valid UTF-8 (mail from
  // old Chinese clients often carries raw GBK in headers). Empty: such bytes
  // become U+FFFD.
  std::string fallback_charset;
};

struct DecodedText {
  std::string text;              // valid UTF-8
  bool unknown_charset = false;  // an encoded-word was kept as written
  bool lossy = false;            // invalid bytes were replaced or guessed
};

// Decodes an unstructured header value (already unfolded): encoded-words
// are decoded, white space between two encoded-words dropped (RFC 2047
// §6.2), and adjacent encoded-words in the same charset are joined before
// conversion, so a multi-byte character split across two words survives.
// Encoded-words glued to other text are decoded too (common in practice).
DecodedText DecodeHeaderText(std::string_view value, const DecodeOptions& options = {});

// DecodeHeaderText(value).text.
std::string DecodeHeader(std::string_view value);

// A Content-Type / Content-Disposition parameter after RFC 2231 processing.
struct MimeParameter {
  // The name as IMAP shows it: as written, continuations joined; an RFC 2231
  // extended value keeps its trailing '*' ("filename*").
  std::string name;
  // The value as IMAP shows it (RFC 3501 leaves decoding to the client):
  // quotes removed; an extended value is "charset'lang'percent-encoded".
  std::string value;
  std::string decoded;  // UTF-8: RFC 2231 and RFC 2047 decoded
  bool extended = false;
  bool unknown_charset = false;

  // The name without the RFC 2231 '*'.
  std::string_view base_name() const;
};

// Parses "; name=value; name*0=...; name*1*=..." (the text after the media
// type or disposition). Duplicates keep the first; parameters without '='
// are skipped; unquoted values with spaces or 8-bit bytes are taken up to the
// next ';'. At most `max_params` parameters and 64 continuation segments
// each are kept.
std::vector<MimeParameter> ParseMimeParameters(std::string_view text,
                                               const DecodeOptions& options = {},
                                               size_t max_params = 64);

// Case-insensitive lookup by base name; nullptr when absent.
const MimeParameter* FindParameter(const std::vector<MimeParameter>& params,
                                   std::string_view base_name);

// Encoding for headers we write. The input is UTF-8 (invalid bytes become
// U+FFFD); CR, LF and NUL become spaces.
//
// EncodeHeaderText: unstructured text (Subject). Words that are printable
// ASCII stay as they are; runs of other words become "=?UTF-8?B?...?="
// encoded-words of at most 75 characters, split on character boundaries.
std::string EncodeHeaderText(std::string_view utf8);
// A display name or other phrase: printable ASCII atoms stay, ASCII with
// specials is quoted, anything else is encoded-words.
std::string EncodePhrase(std::string_view utf8);
// "Name: value\r\n", folded at white space so lines stay within 78
// characters where possible. `value` must already be encoded.
std::string FoldHeaderField(std::string_view name, std::string_view value);

}  // namespace mailgrid::mail
