// MTA-STS (RFC 8461) for direct MX delivery: the policy a recipient domain
// publishes (TXT "_mta-sts.<domain>" = "v=STSv1; id=...", and the policy
// file https://mta-sts.<domain>/.well-known/mta-sts.txt), fetched, cached
// for its max_age and applied by SmtpTransport:
//   mode: enforce  only MX hosts matching the policy's mx patterns are
//                  used, with STARTTLS required and the certificate verified
//                  against the MX name; no match or no valid TLS: deferred.
//   mode: testing  delivery as usual; a violation is only logged and
//                  counted (TLSRPT reports are not sent).
//   mode: none     as if no policy.
// Lookup (§5.1): the TXT id is checked at most every `txt_recheck` per
// domain; a changed id (or an expired policy) triggers a fetch; a failed
// fetch keeps the cached policy until it expires (§5.1: "continue to use
// the cached policy"), and without one the domain has no policy, retried
// after `failure_retry`.
//
// SECURITY: the policy host is hostile: the HTTPS response is bounded
// (64 KiB), redirects are not followed (§3.3), the certificate must verify
// for mta-sts.<domain>, the body must be text/plain and parse strictly.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/mailauth/dns.h"

namespace mailgrid::outbound {

struct MtaStsPolicy {
  enum class Mode { kNone, kTesting, kEnforce };
  Mode mode = Mode::kNone;
  std::vector<std::string> mx;  // "mail.example.com" or "*.example.net", lower case
  absl::Duration max_age = absl::ZeroDuration();
  std::string id;  // the TXT record's id it was fetched under

  // §4.1: exact match, or "*." matching exactly one leftmost label.
  bool MxMatches(std::string_view host) const;
};

// Pure parsers (exposed for tests and fuzzing).
// The policy file (§3.2): "version: STSv1", "mode", "mx" (repeated, at least
// one unless mode none), "max_age" (seconds, <= 31557600); CRLF or LF.
absl::StatusOr<MtaStsPolicy> ParseMtaStsPolicy(std::string_view body);
// The TXT records at _mta-sts.<domain>: the id of the single valid
// "v=STSv1; id=..." record; nullopt when none or several (§3.1).
std::optional<std::string> ParseMtaStsTxt(const std::vector<std::string>& records);
const char* MtaStsModeName(MtaStsPolicy::Mode mode);

struct MtaStsOptions {
  std::string ca_file;  // verifies mta-sts.<domain> (and enforced MXes); "" = system
  uint16_t port = 443;  // tests: a local HTTPS server
  absl::Duration timeout = absl::Seconds(10);
  absl::Duration txt_recheck = absl::Minutes(5);
  absl::Duration failure_retry = absl::Minutes(5);
};

// HTTPS GET of the policy file of `domain` (over `resolver` for the A/AAAA
// of mta-sts.<domain>): the body when 200 and text/plain.
absl::StatusOr<std::string> FetchMtaStsPolicy(mailauth::Resolver* resolver,
                                              const std::string& domain,
                                              const MtaStsOptions& options);

class MtaSts {
 public:
  using Fetcher = std::function<absl::StatusOr<std::string>(const std::string& domain)>;
  MtaSts(mailauth::Resolver* resolver, MtaStsOptions options);

  // The policy in force for `domain` now (mode none / no policy: nullopt).
  // Thread-safe; fetches happen on the calling thread without the lock.
  std::optional<MtaStsPolicy> PolicyFor(const std::string& domain, absl::Time now);

  const MtaStsOptions& options() const { return options_; }
  void SetFetcherForTest(Fetcher fetcher) { fetch_ = std::move(fetcher); }

 private:
  struct Cached {
    std::optional<MtaStsPolicy> policy;  // the last good one
    absl::Time expires;                  // of the policy (fetched + max_age)
    absl::Time txt_checked;              // last TXT lookup
    absl::Time retry_after;              // after a failed fetch without a policy
  };
  mailauth::Resolver* resolver_;
  MtaStsOptions options_;
  Fetcher fetch_;
  absl::Mutex mu_;
  std::map<std::string, Cached> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mailgrid::outbound
