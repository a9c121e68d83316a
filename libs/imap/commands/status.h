// STATUS (RFC 3501 §6.3.10) with the status items of RFC 9051 (DELETED,
// SIZE), RFC 7162 (HIGHESTMODSEQ) and RFC 7889 (APPENDLIMIT). The item list
// is shared with LIST ... RETURN (STATUS (...)) (RFC 5819).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/imap/commands/cursor.h"

namespace mailgrid::imap {

enum class StatusItem : unsigned char {
  kMessages,
  kRecent,
  kUidNext,
  kUidValidity,
  kUnseen,
  kDeleted,
  kSize,
  kHighestModSeq,
  kAppendLimit,
};

std::string_view StatusItemName(StatusItem item);

struct StatusArgs {
  std::string mailbox;
  std::vector<StatusItem> items;  // in the order asked, duplicates removed
};

// "(" status-att *(SP status-att) ")": at least one item.
absl::StatusOr<std::vector<StatusItem>> ParseStatusItems(std::vector<Token>& list,
                                                         const CommandContext& ctx);
absl::StatusOr<StatusArgs> ParseStatus(ArgCursor& in, bool uid);
void AppendDebug(const StatusArgs& a, std::string* out);
void AppendStatusItems(const std::vector<StatusItem>& items, std::string* out);

}  // namespace mailgrid::imap
