#include "services/relay/dns_cache.h"

#include "absl/time/clock.h"

namespace mailgrid::relay {

CachingResolver::CachingResolver(std::unique_ptr<mailauth::Resolver> inner, Options options)
    : inner_(std::move(inner)), options_(options) {}

mailauth::DnsResult CachingResolver::Lookup(std::string_view name, mailauth::RrType type) {
  std::pair<std::string, mailauth::RrType> key{mailauth::CanonicalDnsName(name), type};
  absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(key);
    if (it != cache_.end() && it->second.expires > now) return it->second.result;
  }
  // Two workers may ask the same name at once; both answers are equal
  // enough, the later one is kept.
  mailauth::DnsResult r = inner_->Lookup(name, type);
  absl::Duration ttl =
      r.status == mailauth::DnsStatus::kTempError ? options_.error_ttl : options_.answer_ttl;
  absl::MutexLock lock(&mu_);
  if (cache_.size() >= options_.max_entries) cache_.clear();
  cache_[key] = Cached{r, now + ttl};
  return r;
}

size_t CachingResolver::size() const {
  absl::MutexLock lock(&mu_);
  return cache_.size();
}

}  // namespace mailgrid::relay
