// SELECT and EXAMINE (RFC 3501 §6.3.1-2) with the CONDSTORE and QRESYNC
// select parameters (RFC 7162 §3.1.8, §3.2.5).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "libs/imap/commands/cursor.h"
#include "libs/imap/sequence_set.h"

namespace mailgrid::imap {

// QRESYNC (uidvalidity modseq [known-uids [(known-seqs known-seq-uids)]]).
struct QresyncParams {
  uint32_t uidvalidity = 0;
  uint64_t modseq = 0;
  std::optional<SequenceSet> known_uids;
  // seq-match-data: message numbers and the UIDs the client believes they
  // have, in the same order.
  std::optional<SequenceSet> known_sequence_set;
  std::optional<SequenceSet> known_uid_set;
};

struct SelectArgs {
  std::string mailbox;  // UTF-8
  bool condstore = false;
  std::optional<QresyncParams> qresync;
};

absl::StatusOr<SelectArgs> ParseSelect(ArgCursor& in, bool uid);
void AppendDebug(const SelectArgs& a, std::string* out);

}  // namespace mailgrid::imap
