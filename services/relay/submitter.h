// OutboundSubmitter: how code inside relayd sends a message of its own
// (Sieve redirect and vacation replies, notices) through the normal path.
// See README.md, "Sending from inside relayd".
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace mailgrid::relay {

class OutboundSubmitter {
 public:
  virtual ~OutboundSubmitter() = default;
  // Sends `message` (a complete RFC 5322 message, CRLF) from `mail_from`
  // ("" = the null sender, right for automatic replies: RFC 3834) to
  // `rcpts`: hosted recipients are delivered to their mailboxes now, the
  // others are DKIM-signed with the From: domain's key and queued for
  // remote delivery. OK once everything is committed (mailboxes and
  // queue). Errors: INVALID_ARGUMENT (bad address, unknown local
  // recipient), UNAVAILABLE (store, tenantd or mailstored down: retry
  // later or give up; nothing was queued twice). Blocking: call it on a
  // worker thread, never on the SMTP event loop.
  virtual absl::Status Submit(std::string mail_from, std::vector<std::string> rcpts,
                              std::string message) = 0;
};

}  // namespace mailgrid::relay
