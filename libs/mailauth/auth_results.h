// Authentication-Results (RFC 8601) for the three checks, and the one-call
// inbound check relayd runs at DATA: SPF on MAIL FROM/HELO, every DKIM
// signature, DMARC on the From domain.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "libs/mailauth/dkim.h"
#include "libs/mailauth/dmarc.h"
#include "libs/mailauth/dns.h"
#include "libs/mailauth/spf.h"

namespace mailgrid::mailauth {

struct AuthVerdicts {
  SpfVerdict spf;
  std::string helo;               // smtp.helo, shown when SPF checked the HELO identity
  std::vector<DkimVerdict> dkim;  // empty = dkim=none
  DmarcVerdict dmarc;
};

// "Authentication-Results: mx.example.net;\r\n spf=pass smtp.mailfrom=a@b;\r\n
//  dkim=pass header.d=b header.s=sel header.b=abcdEFGH;\r\n dmarc=pass
//  (p=reject) header.from=b\r\n" — the whole field with its final CRLF.
// Values that are not RFC 2045 tokens are quoted; CR, LF and other controls
// never pass into the header.
std::string RenderAuthenticationResults(std::string_view authserv_id, const AuthVerdicts& v);

// True when an existing Authentication-Results value claims `authserv_id`:
// such fields arriving from outside must be removed (RFC 8601 §5).
bool AuthResultsClaims(std::string_view value, std::string_view authserv_id);

struct InboundRequest {
  std::string_view message;  // header and body as received
  IpAddress client_ip;
  std::string helo;
  std::string mail_from;  // "" = null sender
  std::string receiver;   // our host name (%{r}, and the authserv-id default)
};

struct InboundOptions {
  SpfOptions spf;
  DkimVerifyOptions dkim;
  DmarcOptions dmarc;
  std::string authserv_id;  // "" = InboundRequest::receiver
};

struct InboundResult {
  AuthVerdicts verdicts;
  std::string header;  // RenderAuthenticationResults(...)
  // DMARC's disposition, for relayd: kReject → 550 5.7.1, kQuarantine → Junk.
  DmarcPolicy disposition = DmarcPolicy::kNone;
};

InboundResult CheckInbound(const InboundRequest& request, Resolver& dns,
                           const InboundOptions& options = {});

}  // namespace mailgrid::mailauth
