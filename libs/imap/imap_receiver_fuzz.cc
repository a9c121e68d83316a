// Fuzz target: arbitrary bytes, fed in random pieces, through the receiver
// and every command parser (via the transcript driver, which also switches
// IDLE / AUTHENTICATE modes and session states as a server would).
// Checks: no crash or hang (sanitizers, libFuzzer timeouts), memory held by
// the receiver stays within its limits, and every mailbox name the parser
// accepts can be written back by the response writer.
//
// Input: byte 0 picks the initial state and extensions, byte 1 seeds the
// piece sizes, the rest is the client's byte stream.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>

#include "libs/imap/response.h"
#include "libs/imap/transcript_driver.h"

namespace {

using namespace mailgrid::imap;

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckMailbox(std::string_view name, const CommandContext& ctx) {
  WriterOptions o;
  o.utf8 = ctx.utf8_accept;
  ResponseWriter w = ResponseWriter::Untagged(o);
  w.Mailbox(name);
  Check(w.Finish().ok());
}

void CheckCommand(const Command& c, const CommandContext& ctx) {
  Check(!DebugString(c).empty());
  if (const auto* s = std::get_if<SelectArgs>(&c.args)) CheckMailbox(s->mailbox, ctx);
  if (const auto* m = std::get_if<MailboxArgs>(&c.args)) CheckMailbox(m->mailbox, ctx);
  if (const auto* r = std::get_if<RenameArgs>(&c.args)) {
    CheckMailbox(r->from, ctx);
    CheckMailbox(r->to, ctx);
  }
  if (const auto* f = std::get_if<FetchArgs>(&c.args)) {
    for (const FetchItem& item : f->items) Check(!FetchResponseName(item).empty());
    // Normalizing against a huge mailbox stays proportional to the ranges.
    Check(f->set.Normalize(4000000000u).size() <= f->set.ranges().size());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  ReceiverLimits limits;
  limits.max_line_length = 512;
  limits.max_literal_size = 2048;
  limits.max_argument_literal_size = 256;
  limits.max_command_size = 8192;
  limits.max_small_command_size = 4096;
  limits.max_tokens = 256;
  limits.max_depth = 8;
  limits.max_discard_size = 1 << 20;
  limits.max_consecutive_errors = 64;
  CommandContext ctx;
  ctx.state = static_cast<SessionState>(data[0] % 3);
  ctx.utf8_accept = (data[0] & 4) != 0;
  ctx.qresync_enabled = (data[0] & 8) != 0;
  ctx.limits.max_sequence_ranges = 64;
  ctx.limits.max_search_depth = 16;

  TranscriptDriver driver(limits, ctx);
  driver.set_on_command([&driver](const Command& c) { CheckCommand(c, driver.context()); });
  std::minstd_rand rng(data[1] + 1u);
  std::string out;
  const size_t max_piece = 64;
  for (size_t i = 2; i < size;) {
    const size_t n = std::min<size_t>(size - i, 1 + rng() % max_piece);
    driver.Feed(std::string_view(reinterpret_cast<const char*>(data) + i, n), &out);
    out.clear();
    i += n;
    // After draining, what is held is at most one command and a partial line.
    Check(driver.reader().receiver().buffered_bytes() <=
          limits.max_command_size + limits.max_line_length + max_piece + 2);
  }
  return 0;
}
