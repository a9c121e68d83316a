// TranscriptDriver: a CommandReader driven the way a server drives it,
// minus storage, for the golden transcript tests and the fuzz target. It
// applies the mode switches and state changes a successful command would
// cause (LOGIN → authenticated, SELECT → selected, IDLE → expect DONE,
// AUTHENTICATE → expect SASL lines, ENABLE → extensions on) and writes one
// line per result:
//
//   CONT <n>              a synchronizing literal needs "+"
//   CMD <DebugString>     a parsed command
//   SASL <n> bytes | SASL cancel
//   IDLE-DONE
//   ERR <response line>   a ProtocolError as the server would send it
//   CLOSE                 ... and the connection closes (later input ignored)
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "libs/imap/commands/command.h"
#include "libs/imap/reader.h"

namespace mailgrid::imap {

class TranscriptDriver {
 public:
  TranscriptDriver(ReceiverLimits limits, CommandContext ctx);

  // Feeds bytes and drains every available result into *out.
  void Feed(std::string_view bytes, std::string* out);

  CommandContext& context() { return ctx_; }
  // Challenge/response rounds an AUTHENTICATE takes (an initial response
  // counts as the first). Default 1.
  void set_sasl_steps(int n) { sasl_steps_ = n; }
  // Called with every parsed command (the fuzz target checks invariants).
  void set_on_command(std::function<void(const Command&)> f) { on_command_ = std::move(f); }
  bool closed() const { return closed_; }
  CommandReader& reader() { return reader_; }

 private:
  void OnCommand(const Command& c);

  CommandReader reader_;
  CommandContext ctx_;
  int sasl_steps_ = 1;
  int sasl_left_ = 0;
  std::string sasl_tag_;
  bool closed_ = false;
  std::function<void(const Command&)> on_command_;
};

}  // namespace mailgrid::imap
