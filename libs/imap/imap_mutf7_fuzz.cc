// Fuzz target: modified UTF-7 and the response writer's string forms.
//  - DecodeMutf7 accepts only canonical input: Encode(Decode(x)) == x.
//  - Valid UTF-8 survives Decode(Encode(x)) == x.
//  - Whatever ResponseWriter::AString writes, the receiver reads back as the
//    same bytes (the writer's quoting matches the parser's).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <variant>

#include "libs/imap/commands/cursor.h"
#include "libs/imap/mutf7.h"
#include "libs/imap/receiver.h"
#include "libs/imap/response.h"
#include "libs/imap/utf8.h"

namespace {

using namespace mailgrid::imap;

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckWriterRoundTrip(const std::string& s) {
  ResponseWriter w = ResponseWriter::Tagged("a");
  w.Atom("X").AString(s);
  auto line = w.Finish();
  if (!line.ok()) {
    Check(s.find('\0') != std::string::npos);  // only NUL is refused
    return;
  }
  Receiver r;
  r.Feed(*line);
  for (;;) {
    ReceiverResult res = r.Next();
    if (std::holds_alternative<NeedContinuation>(res)) continue;
    auto* req = std::get_if<Request>(&res);
    Check(req != nullptr && req->args.size() == 1);
    auto back = TakeAstring(req->args[0], "string");
    Check(back.ok() && *back == s);
    return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  if (auto decoded = DecodeMutf7(in); decoded.ok()) {
    auto again = EncodeMutf7(*decoded);
    Check(again.ok() && *again == in);
  }
  if (IsValidUtf8(in)) {
    auto encoded = EncodeMutf7(in);
    Check(encoded.ok());
    auto back = DecodeMutf7(*encoded);
    // Decoding refuses only U+0000, which Encode happily shifts.
    Check((back.ok() && *back == in) || in.find('\0') != std::string::npos);
  }
  if (size <= 4096) CheckWriterRoundTrip(in);
  return 0;
}
