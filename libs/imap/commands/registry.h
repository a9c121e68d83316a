// The command table: every command this library parses, in one place (the
// Dovecot imap-commands.c idea). A reader finds FETCH's grammar in
// fetch.cc and its states here.
#pragma once

#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/imap/commands/command.h"
#include "libs/imap/commands/context.h"
#include "libs/imap/receiver.h"
#include "libs/imap/types.h"

namespace mailgrid::imap {

struct CommandSpec {
  std::string_view name;  // upper-case; "UID FETCH" for UID forms
  CommandId id;
  bool uid;
  StateMask states;  // where the command is valid (RFC 3501 §6)
  // May carry message-sized literals (ReceiverLimits::max_literal_size).
  bool large_literals;
  // Works with message sequence numbers: RFC 3501 §7.4.1 forbids untagged
  // EXPUNGE while it runs (FETCH, STORE, SEARCH, and COPY/MOVE by number).
  bool uses_sequence_numbers;
  absl::Status (*parse)(ArgCursor& in, Command& cmd);
};

std::span<const CommandSpec> AllCommands();
// nullptr if unknown. `upper_name` as the receiver produces it.
const CommandSpec* FindCommand(std::string_view upper_name);

// The receiver's CommandLookup: unknown / not allowed in `state` / OK, and
// whether large literals are allowed.
CommandCheck CheckCommand(std::string_view upper_name, SessionState state);

// Typed parsing of a framed request. BadArgument (→ BAD) for syntax,
// Refused (→ NO, e.g. BADCHARSET) for valid syntax the parser will not
// accept; either may carry a response code ("[LIMIT] ...").
absl::StatusOr<Command> ParseCommand(Request&& request, const CommandContext& ctx);

}  // namespace mailgrid::imap
