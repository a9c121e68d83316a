// Fuzz target: header text decoding, MIME parameters and our encoder. Traps
// when decoded text is not valid UTF-8 or carries CR/LF/NUL, or when
// decoding what we encoded does not give the input back.
#include <cstdint>
#include <string>
#include <string_view>

#include "libs/mail/charset.h"
#include "libs/mail/fuzz_checks.h"
#include "libs/mail/header.h"
#include "libs/mail/rfc2047.h"

namespace {

using namespace mailgrid::mail;
using fuzz::Check;
using fuzz::Clean;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view value(reinterpret_cast<const char*>(data), size);
  DecodeOptions gbk;
  gbk.fallback_charset = "gbk";
  for (const DecodeOptions& options : {DecodeOptions{}, gbk}) {
    DecodedText d = DecodeHeaderText(value, options);
    Check(IsValidUtf8(d.text) && Clean(d.text));
    for (const MimeParameter& p : ParseMimeParameters(value, options)) {
      Check(IsValidUtf8(p.decoded) && Clean(p.decoded));
    }
  }
  // Round trip of the encoder: what it writes decodes to its (cleaned) input.
  std::string text = SanitizeUtf8(value);
  for (char& c : text) {
    if (c == '\r' || c == '\n' || c == '\0' || c == '\t') c = ' ';
  }
  std::string encoded = EncodeHeaderText(value);
  Check(Clean(encoded));
  Check(DecodeHeader(encoded) == text);
  std::string field = FoldHeaderField("Subject", encoded);
  Check(Unfold(field.substr(8)) == Unfold(encoded));
  EncodePhrase(value);
  return 0;
}
