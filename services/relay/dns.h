// DNS lookups for SPF (RFC 7208): TXT, A, AAAA, MX through c-ares to a
// configurable resolver, synchronous (called on the worker pool, one
// channel per query, bounded by a timeout). An interface, so the SPF
// evaluator is tested with a fake.
//
// SECURITY: answers are hostile input: they are parsed as SPF terms or IP
// addresses and compared, never connected to.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace mailgrid::relay {

struct DnsAnswer {
  enum class Kind { kFound, kNoData, kNxDomain, kError };
  Kind kind = Kind::kError;
  std::vector<std::string> values;  // TXT: one per record; A/AAAA: text IPs; MX: host names
};

class Dns {
 public:
  virtual ~Dns() = default;
  virtual DnsAnswer Txt(const std::string& name) = 0;
  virtual DnsAnswer A(const std::string& name) = 0;
  virtual DnsAnswer Aaaa(const std::string& name) = 0;
  virtual DnsAnswer Mx(const std::string& name) = 0;
};

class CaresDns final : public Dns {
 public:
  // `server`: "host:port" or "" for the system's resolv.conf.
  CaresDns(std::string server, absl::Duration timeout);
  DnsAnswer Txt(const std::string& name) override { return Lookup(name, 16); }
  DnsAnswer A(const std::string& name) override { return Lookup(name, 1); }
  DnsAnswer Aaaa(const std::string& name) override { return Lookup(name, 28); }
  DnsAnswer Mx(const std::string& name) override { return Lookup(name, 15); }

 private:
  DnsAnswer Query(const std::string& name, int type);
  DnsAnswer Lookup(const std::string& name, int type);
  std::string server_;
  absl::Duration timeout_;
  // A small answer cache (SPF asks the same few names for every message of
  // a sender): 5 minutes for answers, 30 s for failures; bounded size.
  struct Cached {
    DnsAnswer answer;
    absl::Time expires;
  };
  absl::Mutex mu_;
  std::map<std::pair<int, std::string>, Cached> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mailgrid::relay
