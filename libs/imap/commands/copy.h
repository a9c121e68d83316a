// COPY (RFC 3501 §6.4.7), MOVE (RFC 6851), and the sequence-set argument of
// UID EXPUNGE (RFC 4315); plain EXPUNGE has none.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "libs/imap/commands/cursor.h"
#include "libs/imap/sequence_set.h"

namespace mailgrid::imap {

struct CopyArgs {
  SequenceSet set;
  std::string mailbox;  // destination, UTF-8
};

struct ExpungeArgs {
  std::optional<SequenceSet> uids;  // UID EXPUNGE only
};

absl::StatusOr<CopyArgs> ParseCopy(ArgCursor& in, bool uid);
absl::StatusOr<ExpungeArgs> ParseExpunge(ArgCursor& in, bool uid);
void AppendDebug(const CopyArgs& a, std::string* out);
void AppendDebug(const ExpungeArgs& a, std::string* out);

}  // namespace mailgrid::imap
