// STORE (RFC 3501 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/imap/commands/cursor.h"
#include "libs/imap/sequence_set.h"

namespace mailgrid::imap {

struct StoreArgs {
  enum class Op : unsigned char { kReplace, kAdd, kRemove };  // FLAGS, +FLAGS, -FLAGS
  SequenceSet set;
  std::optional<uint64_t> unchanged_since;
  Op op = Op::kReplace;
  bool silent = false;  // .SILENT: no untagged FETCH back
  std::vector<std::string> flags;
};

absl::StatusOr<StoreArgs> ParseStore(ArgCursor& in, bool uid);
void AppendDebug(const StoreArgs& a, std::string* out);

}  // namespace mailgrid::imap
