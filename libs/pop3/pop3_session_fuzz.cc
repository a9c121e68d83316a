// libFuzzer target for pop3::Session: arbitrary client bytes fed in pieces
// of random size, a driver that answers every decision at random. Checks:
//  - output is CRLF-terminated lines with no bare CR or LF, and every line
//    that is not inside a multi-line response starts "+OK", "-ERR" or "+ ";
//  - buffered input never exceeds the line limits plus one piece;
//  - once closed, the session stays closed and says nothing more.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "libs/pop3/session.h"

namespace {

using namespace mailgrid::pop3;

#define CHECK(cond)       \
  do {                    \
    if (!(cond)) abort(); \
  } while (0)

void CheckLines(const std::string& out) {
  size_t pos = 0;
  while (pos < out.size()) {
    size_t crlf = out.find("\r\n", pos);
    CHECK(crlf != std::string::npos);
    std::string_view line(out.data() + pos, crlf - pos);
    CHECK(line.find('\r') == std::string_view::npos && line.find('\n') == std::string_view::npos);
    pos = crlf + 2;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  uint64_t seed = data[0] * 131u + data[1] + 1;
  auto rnd = [&seed]() {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
  };
  SessionConfig config;
  config.tls_active = data[0] & 1;
  config.max_line_length = 128;
  config.max_auth_line_length = 512;
  Session s(config);
  s.Start();
  std::string out = s.TakeOutput();
  std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  while (!in.empty()) {
    size_t n = 1 + rnd() % 64;
    if (n > in.size()) n = in.size();
    bool was_closed = s.closed();
    s.Feed(in.substr(0, n));
    in.remove_prefix(n);
    for (int guard = 0; guard < 100000; ++guard) {
      Event e = s.Next();
      if (std::holds_alternative<event::NeedInput>(e) || std::holds_alternative<event::Closed>(e)) {
        break;
      }
      CHECK(!std::holds_alternative<event::AwaitingDecision>(e));
      bool yes = rnd() % 4 != 0;
      if (std::holds_alternative<event::StartTls>(e)) {
        CHECK((yes ? s.AcceptStartTls() : s.RejectStartTls("no")).ok());
      } else if (std::holds_alternative<event::Authenticate>(e)) {
        std::vector<MaildropEntry> drop;
        for (uint32_t i = 1; i <= rnd() % 5; ++i) drop.push_back({i * 3, 10 + i, "u" + std::to_string(i)});
        CHECK((yes ? s.AcceptAuth(drop) : s.RejectAuth(rnd() % 2, "no")).ok());
      } else if (std::holds_alternative<event::Retrieve>(e)) {
        CHECK((yes ? s.Deliver("Subject: x\r\n\r\n.a\nb\r\n") : s.FailRetrieve("no")).ok());
      } else if (std::holds_alternative<event::Commit>(e)) {
        CHECK(s.CommitDone(yes ? absl::OkStatus() : absl::UnavailableError("x")).ok());
      }
    }
    CHECK(s.buffered_input() <= config.max_auth_line_length + 64 + 2);
    std::string chunk = s.TakeOutput();
    if (was_closed) CHECK(chunk.empty());
    out += chunk;
  }
  CheckLines(out);
  return 0;
}
