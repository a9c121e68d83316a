#include "libs/outbound/delivery.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/outbound/time_util.h"

namespace mailgrid::outbound {
namespace {

int Specificity(const relay::v1::Route& r) {
  if (!r.match().has_domain_pattern()) return 0;
  const std::string& p = r.match().domain_pattern();
  if (p == "*") return 1;
  if (absl::StartsWith(p, "*.")) return 2;
  return 3;
}

TlsPolicy FromProtoTls(relay::v1::TlsMode mode) {
  switch (mode) {
    case relay::v1::TLS_MODE_NONE:
      return TlsPolicy::kNone;
    case relay::v1::TLS_MODE_REQUIRE_STARTTLS:
      return TlsPolicy::kRequire;
    case relay::v1::TLS_MODE_IMPLICIT:
      return TlsPolicy::kImplicit;
    default:
      return TlsPolicy::kOpportunistic;
  }
}

SmtpReply LocalError(std::string error, uint32_t code = 0, std::string enhanced = "") {
  SmtpReply r;
  r.set_code(code);
  r.set_enhanced_code(std::move(enhanced));
  r.set_error(std::move(error));
  return r;
}

}  // namespace

bool RouteTable::PatternMatches(const std::string& pattern, const std::string& domain) {
  if (pattern == "*") return true;
  if (absl::StartsWith(pattern, "*.")) {
    return absl::EndsWithIgnoreCase(domain, pattern.substr(1)) &&
           domain.size() > pattern.size() - 1;
  }
  return absl::EqualsIgnoreCase(pattern, domain);
}

void RouteTable::Set(std::vector<relay::v1::Route> routes) {
  std::stable_sort(routes.begin(), routes.end(), [](const auto& a, const auto& b) {
    if (a.priority() != b.priority()) return a.priority() < b.priority();
    return Specificity(a) > Specificity(b);
  });
  absl::MutexLock lock(&mu_);
  routes_ = std::move(routes);
}

std::optional<relay::v1::Route> RouteTable::Match(const std::string& domain) const {
  absl::MutexLock lock(&mu_);
  for (const auto& r : routes_) {
    if (!r.enabled() || !r.match().has_domain_pattern()) continue;
    if (PatternMatches(r.match().domain_pattern(), domain)) return r;
  }
  return std::nullopt;
}

void SmtpTransport::AddAddresses(const std::string& host, uint16_t port, TlsPolicy tls,
                                 std::vector<Target>* out, SmtpReply* failure) {
  if (mailauth::IpAddress::Parse(host)) {
    out->push_back(Target{host, port, host, tls});
    return;
  }
  for (auto type : {mailauth::RrType::kA, mailauth::RrType::kAaaa}) {
    mailauth::DnsResult r = resolver_->Lookup(host, type);
    if (r.status == mailauth::DnsStatus::kTempError) {
      *failure = LocalError(absl::StrCat("DNS lookup of ", host, " failed: ", r.error));
    }
    for (const auto& ip : r.values) out->push_back(Target{ip, port, host, tls});
  }
}

std::vector<Target> SmtpTransport::DirectTargets(const std::string& domain, SmtpReply* failure,
                                                 bool* permanent) {
  std::vector<Target> out;
  mailauth::DnsResult mx = resolver_->Lookup(domain, mailauth::RrType::kMx);
  if (mx.status == mailauth::DnsStatus::kTempError) {
    *failure = LocalError(absl::StrCat("MX lookup failed: ", mx.error));
    return out;
  }
  if (mx.status == mailauth::DnsStatus::kNxDomain) {
    *permanent = true;
    *failure = LocalError("domain not found", 550, "5.1.2");
    return out;
  }
  if (mx.mx.size() == 1 && mx.mx[0].host.empty()) {  // RFC 7505 null MX
    *permanent = true;
    *failure = LocalError("domain does not accept mail (null MX)", 556, "5.1.10");
    return out;
  }
  if (mx.mx.empty()) {
    // RFC 5321 §5.1: no MX, the domain itself is the implicit MX.
    AddAddresses(domain, options_.mx_port, options_.direct_tls, &out, failure);
  } else {
    for (const auto& host : mx.mx) {  // sorted by preference by the resolver
      if (host.host.empty()) continue;
      AddAddresses(host.host, options_.mx_port, options_.direct_tls, &out, failure);
    }
  }
  if (out.empty() && failure->error().empty()) {
    *failure = LocalError("no address for the domain's mail hosts");
  }
  return out;
}

std::vector<Target> SmtpTransport::Targets(const std::string& domain, SmtpReply* failure,
                                           bool* permanent) {
  std::optional<relay::v1::Route> route;
  if (routes_ != nullptr) route = routes_->Match(domain);
  std::vector<Target> out;
  if (route && !route->direct()) {
    for (const auto& sh : route->smart_hosts()) {
      TlsPolicy tls = FromProtoTls(sh.tls());
      uint16_t port = static_cast<uint16_t>(
          sh.port() != 0 ? sh.port() : (tls == TlsPolicy::kImplicit ? 465 : 25));
      AddAddresses(sh.host(), port, tls, &out, failure);
    }
    if (!route->fallback_direct()) return out;
  }
  std::vector<Target> direct = DirectTargets(domain, failure, permanent);
  // A permanent DNS verdict matters only when no smart host is left to try.
  if (!out.empty()) *permanent = false;
  out.insert(out.end(), direct.begin(), direct.end());
  return out;
}

std::vector<RecipientOutcome> SmtpTransport::Deliver(const std::string& domain,
                                                     const std::string& envelope_from,
                                                     const std::vector<std::string>& recipients,
                                                     const std::string& message) {
  SmtpReply failure;
  bool permanent = false;
  std::vector<Target> targets = Targets(domain, &failure, &permanent);
  if (targets.size() > options_.max_hosts) targets.resize(options_.max_hosts);
  for (const Target& target : targets) {
    TransactionRequest req;
    req.helo_name = options_.helo_name;
    req.envelope_from = envelope_from;
    req.recipients = recipients;
    req.message = message;
    req.tls = target.tls;
    req.tls_server_name = target.name;
    req.ca_file = options_.ca_file;
    req.pipelining = options_.pipelining;
    req.timeouts = options_.timeouts;
    TransactionResult result = SendMail(target.ip, target.port, target.name, req);
    if (result.recipients.size() == recipients.size() && !result.session_failed) {
      return result.recipients;
    }
    if (!result.recipients.empty()) {
      // Broke off after RCPT: recipients without a final answer are retried.
      std::vector<RecipientOutcome> out = result.recipients;
      for (auto& o : out) {
        if (o.reply.code() >= 200 && o.reply.code() < 300) {
          o.kind = RecipientOutcome::Kind::kDeferred;
          o.reply = result.session_reply;
        }
      }
      for (size_t i = out.size(); i < recipients.size(); ++i) {
        out.push_back(RecipientOutcome{recipients[i], RecipientOutcome::Kind::kDeferred,
                                       result.session_reply});
      }
      return out;
    }
    failure = result.session_reply;
    // A 5xx at the session level (greeting, EHLO, MAIL) is the server's
    // decision about this message: bounce. Anything else: the next host.
    permanent = result.session_permanent;
    if (permanent) {
      break;
    }
  }
  std::vector<RecipientOutcome> out;
  for (const auto& r : recipients) {
    out.push_back(RecipientOutcome{
        r, permanent ? RecipientOutcome::Kind::kBounced : RecipientOutcome::Kind::kDeferred,
        failure});
  }
  return out;
}

}  // namespace mailgrid::outbound
