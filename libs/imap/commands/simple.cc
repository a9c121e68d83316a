#include "libs/imap/commands/simple.h"

#include "libs/base/status.h"

namespace mailgrid::imap {

absl::StatusOr<NoArgs> ParseNoArgs(ArgCursor& in, bool uid) {
  RETURN_IF_ERROR(in.ExpectEnd());
  return NoArgs{};
}

void AppendDebug(const NoArgs&, std::string*) {}

}  // namespace mailgrid::imap
