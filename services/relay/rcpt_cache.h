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
//
// DOMAIN_NOT_HOSTED is also kept by domain (DomainKey): for relayd (a
// service caller) tenantd decides it from the domain alone, before the
// local part or the sender are looked at, so every address of a foreign
// domain shares one answer. A submission burst to many distinct remote
// addresses (issue 9's relay path) then asks tenantd once per domain and
// TTL instead of once per RCPT.
// Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mailgrid/tenant/v1/directory.pb.h"

namespace mailgrid::relay {

class RcptCache {
 public:
  using Answer = absl::StatusOr<tenant::v1::ResolveResponse>;

  // `foreign_ttl`: how long PutDomain keeps an answer (default `ttl`).
  explicit RcptCache(absl::Duration ttl, size_t max_entries = 10000,
                     std::optional<absl::Duration> foreign_ttl = std::nullopt)
      : ttl_(ttl), foreign_ttl_(foreign_ttl.value_or(ttl)), max_entries_(max_entries) {}

  static std::string Key(const tenant::v1::ResolveRequest& request);
  // The key of `address`'s domain (lower-cased), for DOMAIN_NOT_HOSTED
  // answers; "" when the address has no domain. Never equal to a Key().
  static std::string DomainKey(std::string_view address);
  // True when `answer` is DOMAIN_NOT_HOSTED (kept under DomainKey too).
  static bool NotHosted(const Answer& answer);
  // True when `answer` may be kept (see above).
  static bool Cacheable(const Answer& answer);

  // The answer kept for `key` and still fresh at `now`, or null.
  std::shared_ptr<const Answer> Get(const std::string& key, absl::Time now);
  // Keeps `answer` (when Cacheable) until now + ttl.
  void Put(const std::string& key, const Answer& answer, absl::Time now);
  // Keeps a DOMAIN_NOT_HOSTED `answer` under `domain_key` (DomainKey) until
  // now + foreign_ttl; anything else is not kept.
  void PutDomain(const std::string& domain_key, const Answer& answer, absl::Time now);

  size_t size();

 private:
  struct Entry {
    std::shared_ptr<const Answer> answer;
    absl::Time expires;
  };
  void Keep(const std::string& key, const Answer& answer, absl::Time expires, absl::Time now);

  const absl::Duration ttl_;
  const absl::Duration foreign_ttl_;
  const size_t max_entries_;
  absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mailgrid::relay
