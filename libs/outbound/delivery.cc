#include "libs/outbound/delivery.h"

#include <algorithm>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/base/log.h"
#include "libs/outbound/time_util.h"

namespace mailgrid::outbound {
namespace {

// "a.b" > "*.b" > region > "*" (the catch-all must not shadow a region).
int Specificity(const relay::v1::Route& r) {
  if (r.match().has_region()) return 2;
  if (!r.match().has_domain_pattern()) return 0;
  const std::string& p = r.match().domain_pattern();
  if (p == "*") return 1;
  if (absl::StartsWith(p, "*.")) return 3;
  return 4;
}

int PatternSpecificity(const std::string& p) {
  if (p == "*") return 0;
  return absl::StartsWith(p, "*.") ? 1 : 2;
}

bool IsAlpha2(const std::string& s) {
  return s.size() == 2 && absl::ascii_isalpha(static_cast<unsigned char>(s[0])) &&
         absl::ascii_isalpha(static_cast<unsigned char>(s[1]));
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

std::string MxKey(const std::string& host) { return "mx:" + absl::AsciiStrToLower(host); }

SmtpReply LocalError(std::string error, uint32_t code = 0, std::string enhanced = "") {
  SmtpReply r;
  r.set_code(code);
  r.set_enhanced_code(std::move(enhanced));
  r.set_error(std::move(error));
  return r;
}

}  // namespace

absl::StatusOr<SmtpCredentials> LoadCredentials(const std::string& secrets_dir,
                                                const std::string& ref) {
  if (ref.empty() || ref.size() > 200 || ref[0] == '.' ||
      ref.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
          std::string::npos) {
    return absl::InvalidArgumentError("credentials_ref: not a plain secret name");
  }
  if (secrets_dir.empty()) {
    return absl::FailedPreconditionError("no secrets directory (--outbound-secrets-dir)");
  }
  std::ifstream in(absl::StrCat(secrets_dir, "/", ref));
  std::string line;
  if (!in || !std::getline(in, line)) {
    return absl::NotFoundError(absl::StrCat("secret ", ref, " not readable"));
  }
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  size_t colon = line.find(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat("secret ", ref, " is not username:password"));
  }
  SmtpCredentials c;
  c.username = line.substr(0, colon);
  c.password = line.substr(colon + 1);
  return c;
}

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

void RouteTable::SetRegionMap(std::vector<std::pair<std::string, std::string>> map) {
  std::stable_sort(map.begin(), map.end(), [](const auto& a, const auto& b) {
    return PatternSpecificity(a.first) > PatternSpecificity(b.first);
  });
  for (auto& [pattern, region] : map) region = absl::AsciiStrToUpper(region);
  absl::MutexLock lock(&mu_);
  region_map_ = std::move(map);
}

std::string RouteTable::RegionOf(const std::string& domain) const {
  absl::MutexLock lock(&mu_);
  return RegionOfLocked(domain);
}

std::string RouteTable::RegionOfLocked(const std::string& domain) const {
  for (const auto& [pattern, region] : region_map_) {
    if (PatternMatches(pattern, domain)) return region;
  }
  size_t dot = domain.rfind('.');
  std::string tld =
      absl::AsciiStrToUpper(dot == std::string::npos ? domain : domain.substr(dot + 1));
  if (!IsAlpha2(tld)) return "";
  return tld == "UK" ? "GB" : tld;  // the one ccTLD that is not its ISO code
}

std::optional<relay::v1::Route> RouteTable::Match(const std::string& domain) const {
  std::string region;  // computed once, only if a region route is reached
  bool region_known = false;
  absl::MutexLock lock(&mu_);
  for (const auto& r : routes_) {
    if (!r.enabled()) continue;
    if (r.match().has_domain_pattern()) {
      if (PatternMatches(r.match().domain_pattern(), domain)) return r;
    } else if (r.match().has_region()) {
      if (!region_known) {
        region = RegionOfLocked(domain);
        region_known = true;
      }
      if (!region.empty() && absl::EqualsIgnoreCase(r.match().region(), region)) return r;
    }
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> RouteTable::ParseRegionMap(
    const std::string& spec) {
  std::vector<std::pair<std::string, std::string>> out;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    std::vector<std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    if (kv.size() != 2)
      return absl::InvalidArgumentError(
          absl::StrCat("route regions: '", item, "' is not pattern=CC"));
    std::string pattern(absl::StripAsciiWhitespace(kv[0]));
    std::string region(absl::StripAsciiWhitespace(kv[1]));
    if (pattern.empty() || !IsAlpha2(region)) {
      return absl::InvalidArgumentError(absl::StrCat("route regions: bad entry '", item, "'"));
    }
    out.emplace_back(absl::AsciiStrToLower(pattern), absl::AsciiStrToUpper(region));
  }
  return out;
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
  std::vector<std::string> hosts;
  if (mx.mx.empty()) {
    hosts.push_back(domain);  // RFC 5321 §5.1: no MX, the domain itself is the implicit MX
  } else {
    for (const auto& host : mx.mx) {  // sorted by preference by the resolver
      if (!host.host.empty()) hosts.push_back(host.host);
    }
  }
  if (!hosts.empty()) RememberMx(domain, MxKey(hosts.front()));
  std::optional<MtaStsPolicy> sts;
  if (options_.mta_sts != nullptr) sts = options_.mta_sts->PolicyFor(domain, absl::Now());
  const bool enforce = sts && sts->mode == MtaStsPolicy::Mode::kEnforce;
  for (const std::string& host : hosts) {
    if (sts && !sts->MxMatches(host)) {
      ReportSts(domain, host, enforce, "mx_mismatch", "MX host not in the policy");
      if (enforce) continue;  // testing: reported only
    }
    size_t first = out.size();
    AddAddresses(host, options_.mx_port, enforce ? TlsPolicy::kRequire : options_.direct_tls, &out,
                 failure);
    for (size_t i = first; i < out.size() && sts; ++i) {
      // Both modes check the certificate against the policy's CA and the MX
      // name; only enforce refuses to send without it.
      out[i].ca_file = options_.mta_sts->options().ca_file;
      out[i].sts_enforced = enforce;
      out[i].sts_testing = !enforce;
    }
  }
  if (out.empty() && enforce && failure->error().empty()) {
    *failure = LocalError("MTA-STS policy (enforce): no MX host matches the policy");
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
      size_t first = out.size();
      AddAddresses(sh.host(), port, tls, &out, failure);
      if (sh.credentials_ref().empty()) continue;
      // Read per attempt: a rotated secret is used at the next delivery.
      absl::StatusOr<SmtpCredentials> creds =
          LoadCredentials(options_.secrets_dir, sh.credentials_ref());
      for (size_t i = first; i < out.size(); ++i) {
        if (creds.ok()) {
          out[i].auth = *creds;
          out[i].auth->allow_plaintext = sh.allow_plaintext_auth();
        } else {
          out[i].auth_error = std::string(creds.status().message());
        }
      }
    }
    if (!route->fallback_direct()) return out;
  }
  std::vector<Target> direct = DirectTargets(domain, failure, permanent);
  // A permanent DNS verdict matters only when no smart host is left to try.
  if (!out.empty()) *permanent = false;
  out.insert(out.end(), direct.begin(), direct.end());
  return out;
}

void SmtpTransport::ReportSts(const std::string& domain, const std::string& mx, bool enforce,
                              const char* kind, const std::string& detail) {
  const char* mode = enforce ? "enforce" : "testing";
  log::Warn(enforce ? "MTA-STS (enforce): not delivered to this MX"
                    : "MTA-STS (testing): delivered anyway; enforce would refuse",
            {{"domain", domain}, {"mx", mx}, {"mode", mode}, {"kind", kind}, {"detail", detail}});
  if (options_.on_sts_failure) options_.on_sts_failure(mode, kind);
}

void SmtpTransport::CheckSts(const std::string& domain, const Target& target,
                             const TransactionResult& result) {
  const std::string& why = result.session_reply.error();
  if (target.sts_testing) {
    if (result.tls_used && !result.tls_verify_error.empty()) {
      ReportSts(domain, target.name, false, "certificate", result.tls_verify_error);
    } else if (!result.tls_used && !result.recipients.empty()) {
      ReportSts(domain, target.name, false, "starttls", "sent without TLS: STARTTLS not offered");
    }
    return;
  }
  // Enforce: the transaction stopped before any mail left in clear.
  if (!result.session_failed || result.tls_used) return;
  if (absl::StrContains(why, "STARTTLS not offered")) {
    ReportSts(domain, target.name, true, "starttls", why);
  } else if (absl::StrContains(why, "TLS handshake failed")) {
    ReportSts(domain, target.name, true, "certificate", why);
  }
}

void SmtpTransport::RememberMx(const std::string& domain, const std::string& key) {
  absl::MutexLock lock(&mx_mu_);
  if (mx_keys_.size() > 10000) mx_keys_.clear();
  mx_keys_[absl::AsciiStrToLower(domain)] = {key, absl::Now() + kDestinationTtl};
}

Destination SmtpTransport::DestinationOf(const std::string& domain, bool allow_dns) {
  std::optional<relay::v1::Route> route;
  if (routes_ != nullptr) route = routes_->Match(domain);
  const int limit = route ? static_cast<int>(route->concurrency_limit()) : 0;
  if (route && !route->direct() && route->smart_hosts_size() > 0) {
    // One destination per smart-host list: failover moves between its
    // hosts, the limit bounds the route's connections as a whole.
    std::string key = "relay:";
    for (int i = 0; i < route->smart_hosts_size(); ++i) {
      const auto& sh = route->smart_hosts(i);
      absl::StrAppend(&key, i ? "," : "", absl::AsciiStrToLower(sh.host()), ":", sh.port());
    }
    return {key, limit};
  }
  {
    absl::MutexLock lock(&mx_mu_);
    auto it = mx_keys_.find(absl::AsciiStrToLower(domain));
    if (it != mx_keys_.end() && it->second.second > absl::Now()) return {it->second.first, limit};
  }
  if (allow_dns) {
    mailauth::DnsResult mx = resolver_->Lookup(domain, mailauth::RrType::kMx);
    if (mx.ok()) {
      std::string host = domain;  // no MX: the domain is its own MX
      for (const auto& h : mx.mx) {
        if (!h.host.empty()) {
          host = h.host;
          break;
        }
      }
      std::string key = MxKey(host);
      RememberMx(domain, key);
      return {key, limit};
    }
  }
  // Not known (DNS failed, or not asked): the domain stands for itself.
  return {"domain:" + absl::AsciiStrToLower(domain), limit};
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
    if (!target.auth_error.empty()) {  // a smart host we cannot log in to: the next one
      failure = LocalError(absl::StrCat("AUTH credentials unavailable: ", target.auth_error));
      failure.set_remote_host(target.name);
      permanent = false;
      continue;
    }
    TransactionRequest req;
    req.helo_name = options_.helo_name;
    req.envelope_from = envelope_from;
    req.recipients = recipients;
    req.message = message;
    req.tls = target.tls;
    req.tls_server_name = target.name;
    req.ca_file = target.ca_file ? *target.ca_file : options_.ca_file;
    req.pipelining = options_.pipelining;
    req.auth = target.auth;
    req.timeouts = options_.timeouts;
    req.report_tls_verification = target.sts_testing;
    TransactionResult result = SendMail(target.ip, target.port, target.name, req,
                                        options_.reuse_connections ? &cache_ : nullptr);
    if (target.sts_enforced || target.sts_testing) CheckSts(domain, target, result);
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
