// LIST (RFC 3501 §6.3.8, LIST-EXTENDED RFC 5258, SPECIAL-USE RFC 6154,
// LIST-STATUS RFC 5819) and LSUB (RFC 3501 §6.3.9).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/imap/commands/cursor.h"
#include "libs/imap/commands/status.h"

namespace mailgrid::imap {

struct ListArgs {
  // The extended syntax was used (selection options, several patterns, or
  // RETURN): the response then follows RFC 5258 (e.g. CHILDINFO).
  bool extended = false;
  // Selection options.
  bool select_subscribed = false;
  bool select_remote = false;
  bool select_recursive_match = false;
  bool select_special_use = false;
  std::string reference;              // UTF-8; "" is common
  std::vector<std::string> patterns;  // UTF-8, with "%" and "*" wildcards
  // Return options.
  bool return_subscribed = false;
  bool return_children = false;
  bool return_special_use = false;
  std::optional<std::vector<StatusItem>> return_status;
};

absl::StatusOr<ListArgs> ParseList(ArgCursor& in, bool uid);
absl::StatusOr<ListArgs> ParseLsub(ArgCursor& in, bool uid);
void AppendDebug(const ListArgs& a, std::string* out);

}  // namespace mailgrid::imap
