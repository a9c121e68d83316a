// libFuzzer target for ImapSession over the in-memory FakeMailstore: the
// first byte picks logged-in-and-selected or not, the rest are client bytes
// fed in pieces. Checks: no crash or hang, every output line ends with
// CRLF outside literals (literal framing is checked by counting {N}), and a
// closed session stays silent.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "services/access/fake_backend.h"
#include "services/access/imap_session.h"

namespace {

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::fprintf(stderr, "check failed: %s (line %d)\n", #cond, __LINE__); \
      abort();                                                               \
    }                                                                        \
  } while (0)

// Walks responses: lines end with CRLF; "{N}\r\n" is followed by N bytes.
void CheckFraming(const std::string& out) {
  size_t pos = 0;
  while (pos < out.size()) {
    size_t crlf = out.find("\r\n", pos);
    CHECK(crlf != std::string::npos);
    std::string_view line(out.data() + pos, crlf - pos);
    CHECK(line.find('\n') == std::string_view::npos);
    pos = crlf + 2;
    if (!line.empty() && line.back() == '}') {
      size_t open = line.rfind('{');
      CHECK(open != std::string_view::npos);
      uint64_t n = std::strtoull(std::string(line.substr(open + 1)).c_str(), nullptr, 10);
      CHECK(pos + n <= out.size());
      pos += n;
      // The response continues after the literal on the same "line".
      size_t next = out.find("\r\n", pos);
      CHECK(next != std::string::npos);
      pos = next + 2;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mailgrid::access;
  if (size < 1) return 0;
  FakeAuthenticator auth;
  FakeMailstore store;
  store.AddMailbox("m");
  Principal p;
  mailgrid::common::v1::MailboxAccess own;
  own.set_mailbox_id("m");
  p.mailboxes.push_back(own);
  // A seat in a shared mailbox: COPY/MOVE across mailboxes is reachable.
  store.AddMailbox("s");
  mailgrid::common::v1::MailboxAccess seat;
  seat.set_mailbox_id("s");
  seat.set_address("s@x");
  p.mailboxes.push_back(seat);
  auth.AddUser("u", "p", p);
  store.Deliver("m", "INBOX", "Subject: a\r\n\r\nbody\r\n");
  store.Deliver("m", "INBOX", "Subject: b\r\nFrom: x@y\r\n\r\nmore\r\n", {"\\Seen"});
  ImapConfig config;
  config.tls_active = true;
  config.limits.max_line_length = 4096;
  ImapSession s(config, &auth, &store);
  s.Start();
  std::string out = s.TakeOutput();
  if (data[0] & 1) {
    s.Feed("1 LOGIN u p\r\n2 SELECT INBOX\r\n");
    out += s.TakeOutput();
  }
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  size_t piece = 1 + data[0] % 61;
  while (!in.empty()) {
    size_t n = std::min(piece, in.size());
    bool was_closed = s.closed();
    s.Feed(in.substr(0, n));
    in.remove_prefix(n);
    std::string chunk = s.TakeOutput();
    if (was_closed && !chunk.empty()) {
      fprintf(stderr, "output after close (%zu): %.200s\n", chunk.size(), chunk.c_str());
      abort();
    }
    out += chunk;
    if (s.TakeStartTls()) s.TlsEstablished();
  }
  CheckFraming(out);
  return 0;
}
