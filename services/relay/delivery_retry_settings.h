// The settings of DeliverWithRetry (delivery_retry.h), on their own so that
// relayd's Options (config.h) and Backend (backend.h) can both hold them.
#pragma once

#include "absl/time/time.h"

namespace mailgrid::relay {

// How DeliverWithRetry (delivery_retry.h) sends TEMPORARY_FAILURE recipients
// of a DeliverBatch again.
struct DeliveryRetry {
  // From the first call's start; no new attempt begins after it. An SMTP
  // client waits 10 minutes for the reply to the end of DATA (RFC 5321
  // §4.5.3.2.6), a failover takes 1-3 s.
  absl::Duration budget = absl::Seconds(10);
  absl::Duration first_pause = absl::Milliseconds(50);  // doubled per attempt,
  absl::Duration max_pause = absl::Seconds(1);          // jittered ±25%
};

}  // namespace mailgrid::relay
