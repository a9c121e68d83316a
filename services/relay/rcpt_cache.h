// RcptCache: tenantd's Resolve answers kept for a fraction of a second, so
// a burst of messages to the same recipient from the same sender (one
// session sending many messages, many sessions to one big mailbox) asks
// tenantd once instead of once per message — and the session answers RCPT
// on its own strand, with no hand-off to the worker pool (issue 8: the
// 1-session latency is a chain of such round trips).
//
// Only answers that do not depend on time are kept: a resolved answer
// (recipients, posting decision) and DOMAIN_NOT_HOSTED. Unknown addresses
// and every error are always asked again, so a mailbox created a moment
// ago is found at once. The key is the whole request (address and sender
// context), so a sender-dependent posting decision is never reused for
// another sender. Staleness: tenantd's own bound (--resolve-max-staleness)
// plus --rcpt-cache-ttl; whatever changed meanwhile is still caught where
// it matters (a deleted or full mailbox fails its DeliverBatch).
// Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mailgrid/tenant/v1/directory.pb.h"

namespace mailgrid::relay {

class RcptCache {
 public:
  using Answer = absl::StatusOr<tenant::v1::ResolveResponse>;

  explicit RcptCache(absl::Duration ttl, size_t max_entries = 10000)
      : ttl_(ttl), max_entries_(max_entries) {}

  static std::string Key(const tenant::v1::ResolveRequest& request);
  // True when `answer` may be kept (see above).
  static bool Cacheable(const Answer& answer);

  // The answer kept for `key` and still fresh at `now`, or null.
  std::shared_ptr<const Answer> Get(const std::string& key, absl::Time now);
  // Keeps `answer` (when Cacheable) until now + ttl.
  void Put(const std::string& key, const Answer& answer, absl::Time now);

  size_t size();

 private:
  struct Entry {
    std::shared_ptr<const Answer> answer;
    absl::Time expires;
  };
  const absl::Duration ttl_;
  const size_t max_entries_;
  absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mailgrid::relay
