// Fuzz target: compile any bytes as a script; what compiles is evaluated
// against a small fixed message. Traps on a compile error without the
// "line:column: " form, or on an empty action list without a discard.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "libs/sieve/sieve.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

const mailgrid::sieve::MessageContext& Message() {
  static const auto* message =
      new mailgrid::sieve::MessageContext(mailgrid::sieve::MessageContextFromRaw(
          "From: Alice <alice+list@example.org>\r\n"
          "To: bob@example.com, =?UTF-8?B?w6lsw6g=?= <elle@example.com>\r\n"
          "Subject: =?UTF-8?Q?Caf=C3=A9?= meeting\r\n"
          "List-Id: <dev.example.org>\r\n"
          "Content-Type: text/plain; charset=utf-8\r\n"
          "\r\n"
          "Hello, this is the body.\r\n",
          "alice+list@example.org", "bob+tag@example.com"));
  return *message;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view source(reinterpret_cast<const char*>(data), size);
  auto script = mailgrid::sieve::Compile(source);
  if (!script.ok()) {
    std::string_view reason = mailgrid::sieve::CompileErrorReason(script.status());
    Check(!reason.empty());
    if (reason != "TOO_LARGE") {
      std::string_view message(script.status().message().data(), script.status().message().size());
      Check(message.find(": ") != std::string_view::npos && message[0] >= '1' && message[0] <= '9');
    }
    return 0;
  }
  mailgrid::sieve::Actions actions = mailgrid::sieve::Evaluate(*script, Message());
  bool discarded = false;
  for (const auto& a : actions.actions) {
    discarded = discarded || a.kind == mailgrid::sieve::ActionKind::kDiscard;
  }
  Check(!actions.actions.empty());
  Check(actions.Delivers() || actions.Rejected() || discarded ||
        std::any_of(actions.actions.begin(), actions.actions.end(), [](const auto& a) {
          return a.kind == mailgrid::sieve::ActionKind::kRedirect;
        }));
  return 0;
}
