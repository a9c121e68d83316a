// A caching decorator over libs/mailauth's Resolver: SPF, DKIM and DMARC ask
// the same few names for every message of a sender (the SPF record and its
// includes, the DKIM key, _dmarc.<domain>), so relayd keeps answers for a
// short while instead of asking the DNS server per message.
//
// Answers (records, NODATA, NXDOMAIN) are kept 5 minutes, temporary errors
// 30 seconds (a dead resolver is not asked again for every message, and a
// recovered one is used soon). DNS TTLs are not honoured (libs/mailauth's
// Resolver does not report them): 5 minutes is below the TTL of nearly every
// SPF/DKIM/DMARC record. Bounded: past `max_entries` the cache is emptied.
// Thread-safe; the inner resolver is called without the lock held and must
// itself be thread-safe (CaresResolver is).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/mailauth/dns.h"

namespace mailgrid::relay {

class CachingResolver final : public mailauth::Resolver {
 public:
  struct Options {
    absl::Duration answer_ttl = absl::Minutes(5);
    absl::Duration error_ttl = absl::Seconds(30);
    size_t max_entries = 10000;
  };
  CachingResolver(std::unique_ptr<mailauth::Resolver> inner, Options options);
  explicit CachingResolver(std::unique_ptr<mailauth::Resolver> inner)
      : CachingResolver(std::move(inner), Options()) {}

  mailauth::DnsResult Lookup(std::string_view name, mailauth::RrType type) override;
  size_t size() const;

 private:
  struct Cached {
    mailauth::DnsResult result;
    absl::Time expires;
  };
  std::unique_ptr<mailauth::Resolver> inner_;
  Options options_;
  mutable absl::Mutex mu_;
  std::map<std::pair<std::string, mailauth::RrType>, Cached> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mailgrid::relay
