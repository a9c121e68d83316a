// APPEND (RFC 3501 §6.3.11) with MULTIAPPEND (RFC 3502) and literal8
// message data (RFC 3516 BINARY).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/imap/commands/cursor.h"
#include "libs/imap/datetime.h"

namespace mailgrid::imap {

struct AppendMessage {
  std::vector<std::string> flags;
  std::optional<DateTime> internal_date;
  std::string data;     // the message, moved out of the literal
  bool binary = false;  // sent as literal8 ~{N}: may contain NUL, needs BINARY
};

struct AppendArgs {
  std::string mailbox;
  std::vector<AppendMessage> messages;  // more than one: MULTIAPPEND
};

absl::StatusOr<AppendArgs> ParseAppend(ArgCursor& in, bool uid);
void AppendDebug(const AppendArgs& a, std::string* out);

}  // namespace mailgrid::imap
