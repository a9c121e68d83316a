// What the command parsers need to know about the session.
#pragma once

#include <cstddef>

#include "libs/imap/types.h"

namespace mailgrid::imap {

struct CommandLimits {
  // Ranges in one sequence set (see sequence_set.h for why this is safe).
  size_t max_sequence_ranges = 16384;
  // Nesting of SEARCH keys: parentheses, NOT and OR together (each level is
  // a recursion in the parser and in whoever walks the tree).
  size_t max_search_depth = 64;
};

struct CommandContext {
  SessionState state = SessionState::kNotAuthenticated;
  // ENABLE UTF8=ACCEPT (RFC 6855): mailbox names are UTF-8, not mUTF-7.
  bool utf8_accept = false;
  // ENABLE QRESYNC (RFC 7162 §3.2.3): SELECT (QRESYNC ...) and VANISHED.
  bool qresync_enabled = false;
  CommandLimits limits;
};

}  // namespace mailgrid::imap
