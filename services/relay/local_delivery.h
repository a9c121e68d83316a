// Local delivery shared by the paths that are not an SMTP session: the
// queue runner (a queued message whose domain turns out to be hosted, e.g. a
// DSN to one of our users) and internal submission (SubmitMessage, the
// OutboundSubmitter). The SMTP session keeps its own pipelined version.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/relay/backend.h"

namespace mailgrid::relay {

// What tenantd says about one recipient address.
struct ResolvedRecipient {
  std::string address;
  bool remote = false;                   // DOMAIN_NOT_HOSTED: goes to the queue
  tenant::v1::ResolveResponse response;  // when local
};

// Resolve with the sender context; NOT_FOUND (ADDRESS_NOT_FOUND), INVALID
// ARGUMENT etc. are returned as errors, DOMAIN_NOT_HOSTED as remote.
absl::StatusOr<ResolvedRecipient> ResolveRecipient(Backend& backend, const std::string& address,
                                                   const tenant::v1::SenderContext& sender);

// One mailbox to deliver to.
struct MailboxTarget {
  uint32_t shard = 0;
  std::string mailbox_id;
};

// One DeliverBatch per shard with the same delivery id (idempotent: a retry
// is deduplicated by mailstored). Returns the status of every mailbox; an
// error when a shard call failed as a whole (nothing known about it).
absl::StatusOr<std::map<std::string, mailstore::v1::DeliveryStatus>> DeliverToMailboxes(
    Backend& backend, const std::string& delivery_id, const std::string& message, absl::Time at,
    const std::vector<MailboxTarget>& targets);

// The fields a locally stored copy gets on top: Return-Path and Received
// ("with LOCAL": made inside relayd, not received over SMTP).
std::string LocalTraceFields(const std::string& hostname, const std::string& envelope_from,
                             const std::string& queue_id, absl::Time at);

}  // namespace mailgrid::relay
