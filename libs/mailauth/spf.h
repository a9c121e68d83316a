// SPF (RFC 7208): record parsing, macro expansion and check_host().
//
// SECURITY: the record and every DNS answer are hostile. check_host() stops
// at 10 DNS-querying terms (§4.6.4: include, a, mx, ptr, exists, redirect),
// at 2 void lookups, at 10 MX names per mx term and 10 PTR names, and at a
// nesting depth the lookup limit already bounds; each limit is a permerror.
// Macro expansion output is capped at 253 bytes per domain-spec (§7.3).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/mailauth/dns.h"

namespace mailgrid::mailauth {

enum class SpfResult : uint8_t { kNone, kNeutral, kPass, kFail, kSoftFail, kTempError, kPermError };
std::string_view SpfResultName(SpfResult r);  // "pass", "softfail", ...

struct SpfTerm {
  enum class Kind : uint8_t {
    kAll,
    kInclude,
    kA,
    kMx,
    kPtr,
    kIp4,
    kIp6,
    kExists,  // mechanisms
    kRedirect,
    kExp,
    kUnknownModifier,  // modifiers
  };
  Kind kind = Kind::kAll;
  char qualifier = '+';              // '+', '-', '~', '?' (mechanisms only)
  std::string domain_spec;           // include/a/mx/ptr/exists/redirect/exp, unexpanded
  std::optional<IpAddress> network;  // ip4/ip6
  int cidr4 = 32;
  int cidr6 = 128;
  std::string text;  // the term as written
};

struct SpfRecord {
  std::vector<SpfTerm> terms;  // in order, modifiers included
};

// Parses "v=spf1 ..." (the version checked, case-insensitive). A syntax
// error is INVALID_ARGUMENT naming the term (a permerror, §4.6).
absl::StatusOr<SpfRecord> ParseSpfRecord(std::string_view txt);

// The identity being checked and the connection it came from.
struct SpfRequest {
  IpAddress ip;
  std::string sender;  // MAIL FROM address ("" = null sender: postmaster@helo is used)
  std::string helo;    // EHLO/HELO name
  std::string receiver = "unknown";  // our host name, for %{r}
  uint64_t now = 0;                  // for %{t}; 0 = the clock
};

// Expands a macro-string (§7). `domain` is the current <domain>; `exp` selects
// the explanation-only macros c, r, t. INVALID_ARGUMENT for a bad macro.
absl::StatusOr<std::string> ExpandSpfMacros(std::string_view text, const SpfRequest& request,
                                            std::string_view domain, bool exp, Resolver* dns);

struct SpfVerdict {
  SpfResult result = SpfResult::kNone;
  std::string domain;       // the domain checked (MAIL FROM's, or HELO's)
  std::string sender;       // the sender used (postmaster@helo for a null sender)
  std::string mechanism;    // the mechanism that matched ("-all", "ip4:192.0.2.0/24"), or ""
  std::string explanation;  // fail: the exp= text, expanded, or ""
  std::string reason;       // a human sentence for temperror/permerror/none
  int dns_lookups = 0;      // DNS-querying terms evaluated
};

struct SpfOptions {
  int max_dns_mechanisms = 10;  // §4.6.4
  int max_void_lookups = 2;     // §4.6.4
};

// check_host(ip, domain, sender) per §4; `domain` is the sender's domain
// (or the HELO name for a HELO check).
SpfVerdict SpfCheckHost(const SpfRequest& request, std::string_view domain, Resolver& dns,
                        const SpfOptions& options = {});

// The whole MAIL FROM check: the sender's domain, or for a null sender the
// HELO identity (§2.4); a malformed domain gives none (§4.3).
SpfVerdict SpfCheck(const SpfRequest& request, Resolver& dns, const SpfOptions& options = {});

}  // namespace mailgrid::mailauth
