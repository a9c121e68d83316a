// Commands without arguments: CAPABILITY, NOOP, LOGOUT, STARTTLS, CHECK,
// CLOSE, UNSELECT (RFC 3691), EXPUNGE, NAMESPACE (RFC 2342), IDLE (RFC 2177).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "libs/imap/commands/cursor.h"

namespace mailgrid::imap {

struct NoArgs {};

absl::StatusOr<NoArgs> ParseNoArgs(ArgCursor& in, bool uid);
void AppendDebug(const NoArgs& a, std::string* out);

}  // namespace mailgrid::imap
