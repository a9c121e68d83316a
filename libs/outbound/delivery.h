// Delivery of one queue entry's recipients for one destination domain:
// route selection (smart hosts by domain pattern with failover, else direct
// MX), MX lookup through mailauth::Resolver (c-ares, configurable server),
// MX preference order then the A/AAAA fallback (RFC 5321 §5.1), and one SMTP
// transaction per host tried until one answers at the transaction level.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/mailauth/dns.h"
#include "libs/outbound/mta_sts.h"
#include "libs/outbound/queue.h"
#include "libs/outbound/smtp_client.h"
#include "mailgrid/relay/v1/relay.pb.h"

namespace mailgrid::outbound {

// The routing table (relay.v1.Route), evaluated in relay.proto's order:
// enabled routes only; lowest priority first; at equal priority the most
// specific match: "a.b" > "*.b" > region > "*". Thread-safe.
//
// Regions are DESTINATION regions (relay.proto RouteMatch.region): a
// recipient domain's region is the first entry of the operator's region map
// (relayd --route-regions "pattern=CC,...", same patterns as routes) that
// matches it, else its country-code TLD upper-cased ("example.cn" -> "CN",
// ".uk" -> "GB"); generic TLDs (.com) have no region unless mapped. So
// "mail to China goes through the smart hosts in Hong Kong" is one route
// {region: "CN"}, and a .com company hosted in Japan is one map entry.
class RouteTable {
 public:
  void Set(std::vector<relay::v1::Route> routes);
  // (pattern, ISO 3166-1 alpha-2 code) pairs, tried most specific first.
  void SetRegionMap(std::vector<std::pair<std::string, std::string>> map);
  std::optional<relay::v1::Route> Match(const std::string& domain) const;
  // The destination region of `domain` ("" when none), per the map above.
  std::string RegionOf(const std::string& domain) const;
  // Pure: does `pattern` match `domain`? "example.com", "*.example.com", "*".
  static bool PatternMatches(const std::string& pattern, const std::string& domain);
  // Pure: "pattern=CC,pattern=CC" (relayd's --route-regions) → pairs;
  // INVALID_ARGUMENT on a bad pattern or code.
  static absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseRegionMap(
      const std::string& spec);

 private:
  std::string RegionOfLocked(const std::string& domain) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<relay::v1::Route> routes_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, std::string>> region_map_ ABSL_GUARDED_BY(mu_);
};

// Where a delivery goes, for per-destination concurrency limits (the
// runner's DestinationLimits): `key` names the peer ("relay:h1:25,h2:587"
// for a smart-host route, "mx:<first MX host>" for direct delivery,
// "domain:<domain>" when not known yet); `limit` is the route's
// concurrency_limit, 0 for the runner's default.
struct Destination {
  std::string key;
  int limit = 0;
};

// What the runner calls; an interface so runner tests can fake delivery.
class Transport {
 public:
  virtual ~Transport() = default;
  // The destination of `domain`'s recipients. Called by a runner worker
  // before Deliver, without locks held; may consult routes and cached DNS.
  // Default: the recipient domain itself (Postfix's notion of destination).
  virtual Destination DestinationOf(const std::string& domain) { return {"domain:" + domain, 0}; }
  // One outcome per recipient (same order). Never fails as a whole: errors
  // are outcomes (deferred with the reason, or bounced).
  virtual std::vector<RecipientOutcome> Deliver(const std::string& domain,
                                                const std::string& envelope_from,
                                                const std::vector<std::string>& recipients,
                                                const std::string& message) = 0;
};

struct DeliveryOptions {
  std::string helo_name = "localhost";
  uint16_t mx_port = 25;  // tests point it at a sink's port
  TlsPolicy direct_tls = TlsPolicy::kOpportunistic;
  bool pipelining = true;
  size_t max_hosts = 10;  // addresses tried per attempt, all MXes together
  SmtpTimeouts timeouts;
  std::string ca_file;  // for verified TLS to smart hosts
  // Where SmartHost.credentials_ref names files holding "username:password"
  // (a Kubernetes Secret mounted as a directory); "" = no AUTH possible.
  std::string secrets_dir;
  // MTA-STS for direct MX delivery (not owned; nullptr: off). Enforced MX
  // hosts are verified with its options().ca_file.
  MtaSts* mta_sts = nullptr;
  // MTA-STS failures, besides the log line (RFC 8461 §5: testing mode
  // delivers and reports, enforce mode defers): mode "testing"/"enforce",
  // kind "mx_mismatch", "starttls" (not offered) or "certificate" (not
  // valid for the MX name). relayd counts them in /metrics.
  std::function<void(const char* mode, const char* kind)> on_sts_failure;
  // Keep sessions open between transactions (ConnectionCache).
  bool reuse_connections = true;
  ConnectionCache::Options connection_cache;
};

// "username:password" from secrets_dir/ref (the first line; the password may
// hold ':'). INVALID_ARGUMENT for a ref that is not a plain file name (no
// '/', no leading '.'): a route must not read arbitrary files.
absl::StatusOr<SmtpCredentials> LoadCredentials(const std::string& secrets_dir,
                                                const std::string& ref);

// A host to try: address, port, TLS policy, display name.
struct Target {
  std::string ip;
  uint16_t port = 25;
  std::string name;
  TlsPolicy tls = TlsPolicy::kOpportunistic;
  std::optional<SmtpCredentials> auth;  // smart hosts with credentials_ref
  std::string auth_error;               // credentials_ref set but unusable
  std::optional<std::string> ca_file;   // overrides DeliveryOptions.ca_file (MTA-STS)
  bool sts_enforced = false;            // MTA-STS enforce: verified TLS required
  bool sts_testing = false;             // MTA-STS testing: verified, failures reported
};

class SmtpTransport final : public Transport {
 public:
  SmtpTransport(DeliveryOptions options, mailauth::Resolver* resolver, const RouteTable* routes)
      : options_(std::move(options)),
        resolver_(resolver),
        routes_(routes),
        cache_(options_.connection_cache) {}

  std::vector<RecipientOutcome> Deliver(const std::string& domain, const std::string& envelope_from,
                                        const std::vector<std::string>& recipients,
                                        const std::string& message) override;

  // A smart-host route: its host list (no DNS). Direct MX delivery: the
  // most preferred MX host, from the MX answer of the last delivery to the
  // domain (kept `kDestinationTtl`), else one MX lookup when `allow_dns`,
  // else "domain:<domain>". The limit: the matching route's
  // concurrency_limit (0: the runner's default).
  Destination DestinationOf(const std::string& domain) override {
    return DestinationOf(domain, true);
  }
  Destination DestinationOf(const std::string& domain, bool allow_dns);
  static constexpr absl::Duration kDestinationTtl = absl::Seconds(60);

  // The hosts for `domain`, in order; or a final verdict when resolution
  // says so (NXDOMAIN or null MX: *permanent; a DNS failure: temporary).
  std::vector<Target> Targets(const std::string& domain, SmtpReply* failure, bool* permanent);

 private:
  std::vector<Target> DirectTargets(const std::string& domain, SmtpReply* failure, bool* permanent);
  void AddAddresses(const std::string& host, uint16_t port, TlsPolicy tls, std::vector<Target>* out,
                    SmtpReply* failure);

  void ReportSts(const std::string& domain, const std::string& mx, bool enforce, const char* kind,
                 const std::string& detail);
  // After a transaction with an MTA-STS host: report what failed, if anything.
  void CheckSts(const std::string& domain, const Target& target, const TransactionResult& result);
  // The MX-host key of a direct destination, remembered from the MX answer.
  void RememberMx(const std::string& domain, const std::string& key);

  DeliveryOptions options_;
  mailauth::Resolver* resolver_;
  const RouteTable* routes_;
  ConnectionCache cache_;
  absl::Mutex mx_mu_;
  // domain -> ("mx:<host>", expiry); bounded (cleared past 10,000).
  std::map<std::string, std::pair<std::string, absl::Time>> mx_keys_ ABSL_GUARDED_BY(mx_mu_);
};

}  // namespace mailgrid::outbound
