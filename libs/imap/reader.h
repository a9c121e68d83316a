// CommandReader: the receiver and the command table together, so the
// server gets typed commands from bytes in one call:
//
//   reader.Feed(bytes);
//   for (;;) {
//     ReadResult r = reader.Next(ctx);   // ctx: state, ENABLEd extensions
//     NeedMoreData / NeedContinuation / SaslResponse / IdleDone: as Receiver
//     Command        → run it
//     ProtocolError  → write FormatError(e); close if e.close_connection
//   }
//
// The context is passed to every Next() because commands pipelined in one
// read must each be checked against the state left by the one before.
#pragma once

#include <string_view>
#include <variant>

#include "libs/imap/commands/command.h"
#include "libs/imap/commands/context.h"
#include "libs/imap/receiver.h"

namespace mailgrid::imap {

using ReadResult =
    std::variant<NeedMoreData, NeedContinuation, Command, SaslResponse, IdleDone, ProtocolError>;

class CommandReader {
 public:
  explicit CommandReader(ReceiverLimits limits = {});

  void Feed(std::string_view bytes) { receiver_.Feed(bytes); }
  ReadResult Next(const CommandContext& ctx);

  // Mode switches, pending input, limits: see Receiver.
  Receiver& receiver() { return receiver_; }
  const Receiver& receiver() const { return receiver_; }

 private:
  Receiver receiver_;
};

}  // namespace mailgrid::imap
