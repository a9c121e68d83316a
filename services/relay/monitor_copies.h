// Monitoring copies (tenant MonitoringPolicy, policy.proto): mail of a
// monitored user, incoming and/or outgoing as the rule says, is copied
// unchanged into the supervisor's mailbox with X-Mailgrid-Monitor fields
// naming the rule(s) on top. The copy goes straight to mailstored
// (DeliverBatch), never through inbox rules, so it cannot trigger a
// vacation reply, a redirect or another copy (no loops), and it is
// recorded in the tenant's admin audit log ("mail.monitor.copy").
//
// One copy per supervisor mailbox per message, whatever the number of
// monitored parties in it (a message between two monitored users of the
// same supervisor is copied once, with one field per rule and party); the
// delivery id is `<message's delivery id>/monitor`, so a client's retry
// after a 451 does not copy twice.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/relay/backend.h"
#include "services/relay/mail_policy.h"

namespace mailgrid::relay {

struct MonitoredParty {
  std::string user_id;
  std::string address;
  Direction direction = Direction::kIncoming;
};

// Copies `message` (as stored: our trace fields on top) for every rule of
// `tenant_id`'s monitoring policy covering one of `parties`. Returns the
// number of copies committed. UNAVAILABLE (policy, directory or mailstore
// down: the caller answers 451, the retry is deduplicated); a supervisor
// mailbox over quota or gone is logged and skipped, never refusing the
// user's mail.
absl::StatusOr<int> DeliverMonitorCopies(PolicyCache& policies, const std::string& tenant_id,
                                         const std::vector<MonitoredParty>& parties,
                                         const std::string& message,
                                         const std::string& delivery_id,
                                         const std::string& hostname, absl::Time at);

}  // namespace mailgrid::relay
