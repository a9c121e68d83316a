// libFuzzer target for ServerSession: arbitrary client bytes, fed in
// pieces of random size, with a driver that decides at random. Checks:
//  - output is always well-formed replies: CRLF-terminated lines starting
//    with a valid 3-digit code and SP/'-', multi-line runs share the code,
//    an enhanced status code (when present) matches the reply class;
//  - DATA messages never contain a bare CR or LF and respect the size limit;
//  - with STARTTLS refused, feeding byte by byte gives the same output and
//    messages as feeding random pieces (no dependence on TCP segmentation).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "libs/smtp/session.h"

namespace {

using namespace mailgrid::smtp;

#define CHECK(cond)       \
  do {                    \
    if (!(cond)) abort(); \
  } while (0)

struct Rng {
  uint64_t s;
  uint64_t Next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  size_t Below(size_t n) { return n == 0 ? 0 : Next() % n; }
};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

void CheckOutput(const std::string& out, bool enhanced) {
  size_t pos = 0;
  int continuing = 0;  // code of an unfinished multi-line reply
  while (pos < out.size()) {
    size_t crlf = out.find("\r\n", pos);
    CHECK(crlf != std::string::npos);
    std::string line = out.substr(pos, crlf - pos);
    pos = crlf + 2;
    CHECK(line.find('\r') == std::string::npos && line.find('\n') == std::string::npos);
    CHECK(line.size() >= 3 && IsDigit(line[0]) && IsDigit(line[1]) && IsDigit(line[2]));
    CHECK(line[0] >= '2' && line[0] <= '5' && line[1] <= '5');
    int code = std::stoi(line.substr(0, 3));
    CHECK(line.size() == 3 || line[3] == ' ' || line[3] == '-');
    if (code != 334) CHECK(line.size() + 2 <= kMaxReplyLineLength);
    if (continuing != 0) CHECK(code == continuing);
    continuing = line.size() > 3 && line[3] == '-' ? code : 0;
    if (line.size() > 4 && IsDigit(line[4])) {
      std::string token = line.substr(4, line.find(' ', 4) - 4);
      if (token.find('.') != std::string::npos) {
        CHECK(enhanced && IsValidEnhancedCode(token) && token[0] == line[0]);
      }
    }
  }
  CHECK(continuing == 0);
}

struct Outcome {
  std::string output;
  std::vector<std::string> messages;
};

Outcome Run(const SessionConfig& config, std::string_view input, uint64_t seed, bool refuse_tls,
            bool byte_at_a_time) {
  ServerSession s(config);
  Rng decide{seed | 1};
  Rng pieces{(seed >> 1) | 1};
  Outcome o;
  auto drain = [&] {
    for (int guard = 0; guard < 100000; ++guard) {
      Event e = s.Next();
      if (std::holds_alternative<event::NeedInput>(e) || std::holds_alternative<event::Closed>(e)) {
        return;
      }
      CHECK(!std::holds_alternative<event::AwaitingDecision>(e));
      if (!NeedsDecision(e)) continue;
      if (auto* m = std::get_if<event::MessageComplete>(&e)) {
        if (config.max_message_size != 0) CHECK(m->message.size() <= config.max_message_size);
        if (!m->bdat) {
          for (size_t i = 0; i < m->message.size(); ++i) {
            if (m->message[i] == '\r')
              CHECK(i + 1 < m->message.size() && m->message[i + 1] == '\n');
            if (m->message[i] == '\n') CHECK(i > 0 && m->message[i - 1] == '\r');
          }
        }
      }
      size_t r = decide.Below(10);
      absl::Status st;
      if (std::holds_alternative<event::StartTls>(e) && refuse_tls) {
        st = s.Reject(Reply::Make(454, "4.7.0", "TLS not available"));
      } else if ((std::holds_alternative<event::Auth>(e) ||
                  std::holds_alternative<event::AuthResponse>(e)) &&
                 r < 4) {
        st = s.Challenge(std::string(decide.Below(40), 'c'));
      } else if (r < 7) {
        st = s.Accept();
        if (auto* m = std::get_if<event::MessageComplete>(&e)) o.messages.push_back(m->message);
      } else if (r < 9) {
        st = s.Reject(Reply::Make(550, "5.7.1", "no\r\nthanks"));
      } else {
        st = s.Reject(Reply::Make(r == 9 && decide.Below(8) == 0 ? 421 : 451, "4.3.0", "later"));
      }
      CHECK(st.ok());
    }
    abort();  // Next() must reach NeedInput or Closed
  };
  drain();
  size_t pos = 0;
  while (pos < input.size() && !s.closed()) {
    size_t n = byte_at_a_time ? 1 : 1 + pieces.Below(64);
    s.Feed(input.substr(pos, n));
    pos += n;
    drain();
    o.output += s.TakeOutput();
  }
  if (!s.closed() && (seed & 0x100) != 0) s.Shutdown();
  o.output += s.TakeOutput();
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  uint8_t flags = data[0];
  uint64_t seed = 0;
  for (int i = 1; i < 5; ++i) seed = seed << 8 | data[i];
  std::string_view input(reinterpret_cast<const char*>(data + 5), size - 5);

  SessionConfig c =
      (flags & 1) ? SessionConfig::Submission("mx.test") : SessionConfig::Mx("mx.test");
  c.enhanced_status_codes = !(flags & 2);
  c.pipelining = !(flags & 4);
  c.chunking = !(flags & 8);
  c.binarymime = c.chunking && (flags & 16);
  c.auth_enabled = (flags & 1) || (flags & 32);
  c.tls_active = flags & 64;
  if (flags & 128) {
    c.max_message_size = 64;
    c.max_recipients = 3;
    c.max_command_line_length = 512;
    c.max_auth_line_length = 512;
    c.max_errors = 5;
  }
  CHECK(ValidateConfig(c).ok());

  Outcome any = Run(c, input, seed, /*refuse_tls=*/false, /*byte_at_a_time=*/false);
  CheckOutput(any.output, c.enhanced_status_codes);

  Outcome pieces = Run(c, input, seed, /*refuse_tls=*/true, /*byte_at_a_time=*/false);
  Outcome bytes = Run(c, input, seed, /*refuse_tls=*/true, /*byte_at_a_time=*/true);
  CheckOutput(pieces.output, c.enhanced_status_codes);
  CHECK(pieces.output == bytes.output);
  CHECK(pieces.messages == bytes.messages);
  return 0;
}
