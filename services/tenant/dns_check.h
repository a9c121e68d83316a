// Looking a domain's records up in DNS and judging each against what was
// generated (dns_records.h).
//
// Lookups go through c-ares to a configurable resolver (--dns-resolver
// host:port; the system's resolv.conf when empty), all queries of one check
// in flight at once on one channel, bounded by --dns-timeout. The judging
// (Evaluate) is a pure function, unit-tested without a network.
//
// SECURITY: DNS answers are hostile input: they are only compared with the
// expected values, never used as addresses to connect to.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailgrid/tenant/v1/domain.pb.h"

namespace mailgrid::tenant {

struct LookupResult {
  enum class Kind { kFound, kNoData, kFailed };
  Kind kind = Kind::kFailed;
  // MX: "priority host"; TXT: one string per record (its character strings
  // joined); CNAME: the target. Names without the trailing dot.
  std::vector<std::string> values;
  std::string error;           // for kFailed: c-ares' words ("Connection refused", "Timeout")
  bool network_error = false;  // kFailed because the resolver did not answer
};

// (owner name, type) -> result.
using LookupKey = std::pair<std::string, tenant::v1::DnsRecordType>;
using Lookups = std::map<LookupKey, LookupResult>;

class Resolver {
 public:
  virtual ~Resolver() = default;
  // Resolves every key; UNAVAILABLE when the resolver could not be reached
  // at all (every lookup failed for network reasons).
  virtual absl::StatusOr<Lookups> LookupAll(const std::vector<LookupKey>& queries) = 0;
};

class CaresResolver final : public Resolver {
 public:
  // `server`: "host:port" or "" for the system configuration.
  CaresResolver(std::string server, absl::Duration timeout);
  absl::StatusOr<Lookups> LookupAll(const std::vector<LookupKey>& queries) override;

 private:
  std::string server_;
  absl::Duration timeout_;
};

// Judges one expected record against the lookup of its name and type.
tenant::v1::RecordCheck Evaluate(const tenant::v1::DnsRecord& expected, const LookupResult& found,
                                 absl::Time now);

// Lower case, no trailing dot: how names are compared and keyed.
std::string CanonicalName(std::string_view name);

// The distinct (name, type) queries `records` need.
std::vector<LookupKey> QueriesFor(const std::vector<tenant::v1::DnsRecord>& records);

}  // namespace mailgrid::tenant
