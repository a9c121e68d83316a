// DeliverBatch, with the recipients mailstored answered TEMPORARY_FAILURE
// sent again (same delivery id) until they are stored or the budget is spent.
//
// Why: a mailstored replica that stalls past the Raft election timeout (a
// busy shared machine: CPU or fsync starved for ~1 s) loses its leadership
// while deliveries are in flight. Those come back as per-recipient
// TEMPORARY_FAILURE ("store: not leader"), not as a gRPC error, so the
// mailstore client's leader following never sees them; without this the
// SMTP client got `451 4.3.0` for a cluster that was healthy again a second
// later. A retry cannot store a copy twice: mailstored keeps the delivery
// id per mailbox in the same atomic write as the copy and answers DUPLICATE
// (store_messages.cc, `d:` idempotency records).
#pragma once

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailgrid/mailstore/v1/mailbox.pb.h"
#include "services/relay/backend.h"

namespace mailgrid::relay {

// Backend::Deliver, then again for the TEMPORARY_FAILURE recipients only,
// their new results merged in place (the response keeps the request's
// recipient order). A whole-call error of the first attempt is returned as
// is (the mailstore client already retried UNAVAILABLE); one of a retry
// ends the retries with the results so far. Each retry is logged at
// warning level (at most one line per second per process): shard, delivery
// id, how many recipients, mailstored's detail, time spent so far.
// `retry`: the backend's own settings (relayd's --delivery-retry-* flags)
// unless given.
absl::StatusOr<mailstore::v1::DeliverBatchResponse> DeliverWithRetry(
    Backend& backend, uint32_t shard, const mailstore::v1::DeliverBatchRequest& request,
    const std::optional<DeliveryRetry>& retry = std::nullopt);

}  // namespace mailgrid::relay
