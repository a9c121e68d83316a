// libFuzzer target for the client-side ReplyParser: arbitrary server bytes
// in random pieces. Invariants: no crash; every parsed reply has a valid
// code, text lines without CR/LF, and survives Serialize -> parse unchanged.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "libs/smtp/reply.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mailgrid::smtp;
  if (size < 1) return 0;
  size_t piece = 1 + data[0] % 32;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  ReplyParser parser(ReplyParser::Limits{.max_line_length = 512, .max_lines = 16});
  for (size_t pos = 0; pos < in.size(); pos += piece) {
    parser.Feed(in.substr(pos, piece));
    while (true) {
      absl::StatusOr<std::optional<Reply>> r = parser.Next();
      if (!r.ok() || !r->has_value()) break;
      const Reply& reply = **r;
      if (reply.code < 200 || reply.code > 559 || reply.lines.empty()) abort();
      for (const std::string& line : reply.lines) {
        if (line.find_first_of("\r\n") != std::string::npos) abort();
      }
      // Round trip: tabs are the one control the parser tolerates and
      // Serialize replaces, so compare only tab-free replies; long lines are
      // cut by Serialize, so only short ones.
      bool comparable = true;
      for (const std::string& line : reply.lines) {
        comparable = comparable && line.find('\t') == std::string::npos && line.size() < 400;
      }
      if (!comparable) continue;
      ReplyParser again;
      again.Feed(reply.Serialize());
      absl::StatusOr<std::optional<Reply>> back = again.Next();
      if (!back.ok() || !back->has_value() || **back != reply) abort();
    }
  }
  return 0;
}
