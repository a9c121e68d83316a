// mailctl route: relayd's routing table of smart hosts (RelayService).
//
//   mailctl route list
//   mailctl route set (--domain PATTERN | --region CC) [--id ROUTE_ID] [--priority N]
//                     [--smart-host HOST[:PORT][,HOST[:PORT]...]] [--tls none|opportunistic|require|implicit]
//                     [--credentials-ref NAME] [--allow-plaintext-auth] [--direct]
//                     [--fallback-direct] [--disabled] [--concurrency N]
//                     [--description TEXT]
//   mailctl route delete ROUTE_ID
//
// --region CC: a destination region (ISO 3166-1 alpha-2): the recipient
// domain's country-code TLD, or relayd's --route-regions map. At equal
// priority "a.b" > "*.b" > a region > "*".
// --concurrency N: simultaneous deliveries to the route's destination per
// relayd (0 or absent: relayd's --destination-concurrency, 20).
//
// Platform operators only. Finding relayd and credentials: see queue.cc.
#include <ostream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "mailgrid/relay/v1/relay.grpc.pb.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/relay_call.h"
#include "tools/mailctl/tenant_client.h"

namespace mailgrid::mailctl {
namespace {

namespace rv1 = ::mailgrid::relay::v1;

void PrintRoute(std::ostream& out, const rv1::Route& r) {
  std::string match = r.match().has_region() ? "region:" + r.match().region()
                                             : r.match().domain_pattern();
  out << r.route_id() << "\t" << match << "\tprio " << r.priority() << "\t"
      << (r.enabled() ? "enabled" : "disabled") << "\t";
  if (r.direct()) out << "direct";
  for (int i = 0; i < r.smart_hosts_size(); ++i) {
    const auto& h = r.smart_hosts(i);
    out << (i ? "," : "") << h.host() << ":" << (h.port() ? h.port() : 25) << "/"
        << absl::AsciiStrToLower(EnumWord(rv1::TlsMode_Name(h.tls()), "TLS_MODE_"));
    if (!h.credentials_ref().empty()) out << "+auth(" << h.credentials_ref() << ")";
  }
  if (r.fallback_direct()) out << " then direct";
  if (r.concurrency_limit() != 0) out << "\tconcurrency " << r.concurrency_limit();
  if (!r.description().empty()) out << "\t" << r.description();
  out << "\n";
}

absl::Status RunRoute(const Invocation& inv) {
  ASSIGN_OR_RETURN(const Subcommand sub, ParseSubcommand(inv, {"direct", "fallback-direct", "disabled", "allow-plaintext-auth"}));
  const std::string& verb = sub.verb;
  const Args& a = sub.args;
  ASSIGN_OR_RETURN(const ServiceClient c, ServiceClient::Connect(inv, a, {"relayd", "platform_operator", absl::Seconds(60)}));
  std::ostream& out = *inv.out;
  if (verb == "list") {
    rv1::ListRoutesRequest req;
    rv1::ListRoutesResponse resp;
    auto s = CallRelay(c, &rv1::RelayService::Stub::ListRoutes, req, &resp);
    if (!s.ok()) return s;
    for (const auto& r : resp.routes()) {
      if (c.json()) out << Json(r) << "\n";
      else PrintRoute(out, r);
    }
    return absl::OkStatus();
  }
  if (verb == "set") {
    rv1::SetRouteRequest req;
    rv1::Route* r = req.mutable_route();
    r->set_route_id(a.Get("id"));
    if (a.Has("domain")) r->mutable_match()->set_domain_pattern(a.Get("domain"));
    else if (a.Has("region")) r->mutable_match()->set_region(absl::AsciiStrToUpper(a.Get("region")));
    else return absl::InvalidArgumentError("--domain PATTERN or --region CC is required");
    int prio = 0;
    if (a.Has("priority") && !absl::SimpleAtoi(a.Get("priority"), &prio))
      return absl::InvalidArgumentError("--priority: a number");
    r->set_priority(prio);
    rv1::TlsMode tls = rv1::TLS_MODE_OPPORTUNISTIC;
    if (a.Has("tls") &&
        !rv1::TlsMode_Parse("TLS_MODE_" + absl::AsciiStrToUpper(a.Get("tls") == "require"
                                                                    ? std::string("require_starttls")
                                                                    : a.Get("tls")),
                            &tls))
      return absl::InvalidArgumentError("--tls: none, opportunistic, require or implicit");
    for (absl::string_view hp : absl::StrSplit(a.Get("smart-host"), ',', absl::SkipEmpty())) {
      rv1::SmartHost* h = r->add_smart_hosts();
      size_t colon = hp.rfind(':');
      uint32_t port = 0;
      if (colon != absl::string_view::npos && hp.find(']') == absl::string_view::npos &&
          absl::SimpleAtoi(hp.substr(colon + 1), &port)) {
        h->set_host(std::string(hp.substr(0, colon)));
        h->set_port(port);
      } else {
        h->set_host(std::string(hp));
      }
      h->set_tls(tls);
      h->set_credentials_ref(a.Get("credentials-ref"));
      h->set_allow_plaintext_auth(a.Has("allow-plaintext-auth"));
    }
    r->set_direct(a.Has("direct"));
    r->set_fallback_direct(a.Has("fallback-direct"));
    r->set_enabled(!a.Has("disabled"));
    r->set_description(a.Get("description"));
    uint32_t concurrency = 0;
    if (a.Has("concurrency") && !absl::SimpleAtoi(a.Get("concurrency"), &concurrency))
      return absl::InvalidArgumentError("--concurrency: a number (0: relayd's default)");
    r->set_concurrency_limit(concurrency);
    rv1::Route resp;
    auto s = CallRelay(c, &rv1::RelayService::Stub::SetRoute, req, &resp);
    if (!s.ok()) return s;
    if (c.json()) out << Json(resp) << "\n";
    else PrintRoute(out, resp);
    return absl::OkStatus();
  }
  if (verb == "delete") {
    auto id = a.Positional(0, "ROUTE_ID");
    if (!id.ok()) return id.status();
    rv1::DeleteRouteRequest req;
    req.set_route_id(*id);
    rv1::DeleteRouteResponse resp;
    auto s = CallRelay(c, &rv1::RelayService::Stub::DeleteRoute, req, &resp);
    if (!s.ok()) return s;
    out << (c.json() ? "{}" : absl::StrCat("deleted ", *id)) << "\n";
    return absl::OkStatus();
  }
  return UnknownSubcommand(verb);
}

const bool kRegistered = RegisterCommand(
    {"route", "relayd's smart-host routes (RelayService, platform operators)",
     "mailctl route list | delete ROUTE_ID\n"
     "      mailctl route set --domain PATTERN|--region CC [--id ID] [--priority N]\n"
     "        [--smart-host H[:P],...] [--tls none|opportunistic|require|implicit]\n"
     "        [--credentials-ref NAME (a file in relayd's --outbound-secrets-dir: user:password)]\n"
     "        [--allow-plaintext-auth] [--direct] [--fallback-direct] [--disabled] [--description T]\n"
     "        [--concurrency N (deliveries at once to the route's destination; 0: relayd's 20)]",
     RunRoute});

}  // namespace
}  // namespace mailgrid::mailctl
