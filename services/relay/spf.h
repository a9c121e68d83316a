// SPF (RFC 7208) check_host(): is `ip` allowed to send mail for `domain`?
// Pure over a Dns interface (dns.h); the limits of §4.6.4 are enforced (10
// DNS-querying terms, 10 MX names, 2 void lookups), `ptr` never matches
// (§5.5 says do not use it), `exp=` is ignored (we never reject on SPF
// alone, so no explanation is shown).
//
// SECURITY: the record is hostile input from the sender's DNS: every
// recursion is bounded by the lookup budget, macro expansion by a length
// cap, and nothing from it is printed except the result keyword.
#pragma once

#include <string>
#include <string_view>

#include "services/relay/dns.h"

namespace mailgrid::relay {

enum class SpfResult { kNone, kNeutral, kPass, kFail, kSoftFail, kTempError, kPermError };

// "pass", "fail", ... as written in Authentication-Results (RFC 8601).
std::string_view SpfResultName(SpfResult r);

struct SpfRequest {
  std::string ip;      // client IP ("192.0.2.1", "2001:db8::1")
  std::string sender;  // MAIL FROM mailbox, or "postmaster@<helo>" for <>
  std::string helo;
};

// The domain checked is the sender's; returns the overall result.
SpfResult CheckSpf(Dns& dns, const SpfRequest& request);

}  // namespace mailgrid::relay
