#include "libs/imap/reader.h"

#include "libs/imap/commands/registry.h"

namespace mailgrid::imap {

CommandReader::CommandReader(ReceiverLimits limits) : receiver_(limits, &CheckCommand) {}

ReadResult CommandReader::Next(const CommandContext& ctx) {
  receiver_.set_state(ctx.state);
  ReceiverResult r = receiver_.Next();
  if (auto* request = std::get_if<Request>(&r)) {
    std::string tag = request->tag;
    absl::StatusOr<Command> cmd = ParseCommand(std::move(*request), ctx);
    if (cmd.ok()) return std::move(*cmd);
    ProtocolError e = ToProtocolError(tag, cmd.status());
    e.close_connection = receiver_.NoteRejectedCommand();
    return e;
  }
  return std::visit(
      [](auto&& v) -> ReadResult {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, Request>) {
          return NeedMoreData{};  // handled above
        } else {
          return std::move(v);
        }
      },
      std::move(r));
}

}  // namespace mailgrid::imap
