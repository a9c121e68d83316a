// SPF record parsing and check_host() (RFC 7208 §4-§6).
#include "libs/mailauth/spf.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/base/strings.h"

namespace mailgrid::mailauth {
namespace {

using Kind = SpfTerm::Kind;

std::string Lower(std::string_view s) { return absl::AsciiStrToLower(ToAbsl(s)); }

absl::Status Bad(std::string_view term, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("SPF term '", ToAbsl(term.substr(0, 60)), "': ", ToAbsl(why)));
}

bool ParseCidr(std::string_view s, int max, int* out) {
  if (s.empty() || s.size() > 3) return false;
  int n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  if (n > max) return false;
  *out = n;
  return true;
}

// Splits "domain/24//64" into domain and the dual cidr (§5.6).
absl::Status SplitDualCidr(std::string_view term, std::string_view arg, SpfTerm* t) {
  size_t dd = arg.rfind("//");
  if (dd != std::string_view::npos && arg.find('/', dd + 2) == std::string_view::npos &&
      !arg.substr(dd + 2).empty() &&
      std::all_of(arg.begin() + static_cast<long>(dd) + 2, arg.end(),
                  [](char c) { return c >= '0' && c <= '9'; })) {
    if (!ParseCidr(arg.substr(dd + 2), 128, &t->cidr6)) return Bad(term, "bad ip6-cidr-length");
    arg = arg.substr(0, dd);
  }
  size_t d = arg.rfind('/');
  if (d != std::string_view::npos && std::all_of(arg.begin() + static_cast<long>(d) + 1, arg.end(),
                                                 [](char c) { return c >= '0' && c <= '9'; })) {
    if (!ParseCidr(arg.substr(d + 1), 32, &t->cidr4)) return Bad(term, "bad ip4-cidr-length");
    arg = arg.substr(0, d);
  }
  t->domain_spec = std::string(arg);
  return absl::OkStatus();
}

absl::StatusOr<SpfTerm> ParseTerm(std::string_view text) {
  SpfTerm t;
  t.text = std::string(text);
  // A modifier is name "=" macro-string, name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ).
  size_t name_end = 0;
  while (name_end < text.size() &&
         (absl::ascii_isalnum(static_cast<unsigned char>(text[name_end])) ||
          text[name_end] == '-' || text[name_end] == '_' || text[name_end] == '.'))
    ++name_end;
  if (name_end > 0 && name_end < text.size() && text[name_end] == '=' &&
      absl::ascii_isalpha(static_cast<unsigned char>(text[0]))) {
    std::string name = Lower(text.substr(0, name_end));
    t.domain_spec = std::string(text.substr(name_end + 1));
    if (name == "redirect")
      t.kind = Kind::kRedirect;
    else if (name == "exp")
      t.kind = Kind::kExp;
    else
      t.kind = Kind::kUnknownModifier;
    if (t.kind != Kind::kUnknownModifier && t.domain_spec.empty())
      return Bad(text, "empty domain-spec");
    return t;
  }
  std::string_view rest = text;
  if (!rest.empty() && std::string_view("+-~?").find(rest[0]) != std::string_view::npos) {
    t.qualifier = rest[0];
    rest.remove_prefix(1);
  }
  size_t sep = rest.find_first_of(":/");
  std::string name = Lower(rest.substr(0, sep));
  std::string_view arg = sep == std::string_view::npos ? "" : rest.substr(sep);
  bool colon = !arg.empty() && arg[0] == ':';
  std::string_view after_colon = colon ? arg.substr(1) : arg;
  if (name == "all") {
    if (!arg.empty()) return Bad(text, "all takes no argument");
    t.kind = Kind::kAll;
  } else if (name == "include" || name == "exists") {
    t.kind = name == "include" ? Kind::kInclude : Kind::kExists;
    if (!colon || after_colon.empty()) return Bad(text, "needs a domain");
    t.domain_spec = std::string(after_colon);
  } else if (name == "a" || name == "mx") {
    t.kind = name == "a" ? Kind::kA : Kind::kMx;
    if (colon && after_colon.empty()) return Bad(text, "empty domain");
    auto st = SplitDualCidr(text, after_colon, &t);
    if (!st.ok()) return st;
    if (colon && t.domain_spec.empty()) return Bad(text, "empty domain");
    if (!colon && !t.domain_spec.empty()) return Bad(text, "unexpected text");
  } else if (name == "ptr") {
    t.kind = Kind::kPtr;
    if (colon && after_colon.empty()) return Bad(text, "empty domain");
    if (!colon && !arg.empty()) return Bad(text, "unexpected text");
    t.domain_spec = std::string(after_colon);
  } else if (name == "ip4" || name == "ip6") {
    bool v6 = name == "ip6";
    t.kind = v6 ? Kind::kIp6 : Kind::kIp4;
    if (!colon) return Bad(text, "needs an address");
    std::string_view addr = after_colon;
    size_t slash = addr.find('/');
    if (slash != std::string_view::npos) {
      if (!ParseCidr(addr.substr(slash + 1), v6 ? 128 : 32, v6 ? &t.cidr6 : &t.cidr4))
        return Bad(text, "bad cidr length");
      addr = addr.substr(0, slash);
    }
    auto ip = IpAddress::Parse(addr);
    if (!ip || ip->v6 != v6 || (addr.size() > 0 && addr[0] == '[')) return Bad(text, "bad address");
    t.network = *ip;
  } else {
    return Bad(text, "unknown mechanism");
  }
  return t;
}

// §4.3: a domain we can check: at least two labels, each 1-63 octets.
bool CheckableDomain(std::string_view d) {
  if (d.empty() || d.size() > 253) return false;
  std::vector<absl::string_view> labels = absl::StrSplit(ToAbsl(d), '.');
  if (labels.size() < 2) return false;
  for (auto l : labels) {
    if (l.empty() || l.size() > 63) return false;
  }
  return true;
}

// §7.3 (via §4.8): an expanded name longer than 253 octets loses labels on the left.
std::string TruncateLeft(std::string name) {
  while (name.size() > 253) {
    size_t dot = name.find('.');
    if (dot == std::string::npos) return "";
    name.erase(0, dot + 1);
  }
  while (!name.empty() && name.back() == '.') name.pop_back();
  return name;
}

struct Evaluation {
  const SpfRequest& req;
  Resolver& dns;
  const SpfOptions& options;
  int lookups = 0;
  int voids = 0;
  std::string failure;  // why a permerror/temperror happened

  // Counts a DNS-querying term; false (and `failure` set) past the limit.
  bool CountLookup() {
    if (++lookups > options.max_dns_mechanisms) {
      failure = absl::StrCat("more than ", options.max_dns_mechanisms, " DNS lookups");
      return false;
    }
    return true;
  }
  bool CountVoid(const DnsResult& r) {
    if (r.empty() && ++voids > options.max_void_lookups) {
      failure = absl::StrCat("more than ", options.max_void_lookups, " void DNS lookups");
      return false;
    }
    return true;
  }
};

enum class Match { kNo, kYes, kTempError, kPermError };

SpfVerdict Result(SpfResult r, std::string reason = "") {
  SpfVerdict v;
  v.result = r;
  v.reason = std::move(reason);
  return v;
}

// `explain`: fetch exp= on fail (not inside include:, whose fail is only a
// non-match, §5.2; but yes through redirect=, §6.1).
SpfVerdict CheckHostImpl(Evaluation& ev, std::string_view domain, int depth, bool explain);

absl::StatusOr<std::string> TargetOf(Evaluation& ev, const SpfTerm& t, std::string_view domain) {
  if (t.domain_spec.empty()) return std::string(domain);
  auto expanded = ExpandSpfMacros(t.domain_spec, ev.req, domain, false, &ev.dns);
  if (!expanded.ok()) return expanded.status();
  std::string name = TruncateLeft(*std::move(expanded));
  if (name.empty()) return absl::InvalidArgumentError("domain-spec expands to nothing");
  return name;
}

// Does any A/AAAA of `name` (the family of the client) fall in the network?
Match AddressMatch(Evaluation& ev, const std::string& name, int cidr4, int cidr6, bool count_void) {
  IpAddress ip = ev.req.ip.AsV4();
  DnsResult r = ev.dns.Lookup(name, ip.v6 ? RrType::kAaaa : RrType::kA);
  if (r.status == DnsStatus::kTempError) {
    ev.failure = absl::StrCat("DNS error for ", name, ": ", r.error);
    return Match::kTempError;
  }
  if (count_void && !ev.CountVoid(r)) return Match::kPermError;
  for (const std::string& v : r.values) {
    auto addr = IpAddress::Parse(v);
    if (addr && ip.InNetwork(*addr, ip.v6 ? cidr6 : cidr4)) return Match::kYes;
  }
  return Match::kNo;
}

Match Evaluate(Evaluation& ev, const SpfTerm& t, std::string_view domain, int depth) {
  IpAddress ip = ev.req.ip.AsV4();
  switch (t.kind) {
    case Kind::kAll:
      return Match::kYes;
    case Kind::kIp4:
    case Kind::kIp6:
      if (ip.v6 != (t.kind == Kind::kIp6)) return Match::kNo;
      return ip.InNetwork(*t.network, ip.v6 ? t.cidr6 : t.cidr4) ? Match::kYes : Match::kNo;
    default:
      break;
  }
  if (!ev.CountLookup()) return Match::kPermError;
  auto target = TargetOf(ev, t, domain);
  if (!target.ok()) {
    ev.failure = std::string(target.status().message());
    return Match::kPermError;
  }
  switch (t.kind) {
    case Kind::kInclude: {
      SpfVerdict inner = CheckHostImpl(ev, *target, depth + 1, false);
      switch (inner.result) {
        case SpfResult::kPass:
          return Match::kYes;
        case SpfResult::kFail:
        case SpfResult::kSoftFail:
        case SpfResult::kNeutral:
          return Match::kNo;
        case SpfResult::kTempError:
          ev.failure = inner.reason;
          return Match::kTempError;
        case SpfResult::kNone:
          ev.failure = absl::StrCat("include:", *target, " has no SPF record");
          return Match::kPermError;
        case SpfResult::kPermError:
          ev.failure = inner.reason;
          return Match::kPermError;
      }
      return Match::kPermError;
    }
    case Kind::kA:
      return AddressMatch(ev, *target, t.cidr4, t.cidr6, true);
    case Kind::kMx: {
      DnsResult mx = ev.dns.Lookup(*target, RrType::kMx);
      if (mx.status == DnsStatus::kTempError) {
        ev.failure = absl::StrCat("DNS error for MX ", *target, ": ", mx.error);
        return Match::kTempError;
      }
      if (!ev.CountVoid(mx)) return Match::kPermError;
      if (mx.values.size() > 10) {
        ev.failure = absl::StrCat("MX of ", *target, " has more than 10 names (§4.6.4)");
        return Match::kPermError;
      }
      for (const std::string& host : mx.values) {
        if (host.empty()) continue;  // null MX
        Match m = AddressMatch(ev, host, t.cidr4, t.cidr6, false);
        if (m != Match::kNo) return m;
      }
      return Match::kNo;
    }
    case Kind::kPtr: {
      // §5.5, minimal: validated names of the client, at most 10 tried.
      DnsResult ptr = ev.dns.Lookup(ip.ReverseName(), RrType::kPtr);
      if (ptr.status == DnsStatus::kTempError) return Match::kNo;  // §5.5: ignore errors
      if (!ev.CountVoid(ptr)) return Match::kPermError;
      size_t tried = 0;
      for (const std::string& name : ptr.values) {
        if (++tried > 10) break;
        bool in_domain = name == *target || absl::EndsWith(name, absl::StrCat(".", *target));
        if (!in_domain) continue;
        if (AddressMatch(ev, name, ip.v6 ? 0 : 32, 128, false) == Match::kYes) return Match::kYes;
      }
      return Match::kNo;
    }
    case Kind::kExists: {
      DnsResult r = ev.dns.Lookup(*target, RrType::kA);  // always A, whatever the client (§5.7)
      if (r.status == DnsStatus::kTempError) {
        ev.failure = absl::StrCat("DNS error for ", *target, ": ", r.error);
        return Match::kTempError;
      }
      if (!ev.CountVoid(r)) return Match::kPermError;
      return r.values.empty() ? Match::kNo : Match::kYes;
    }
    default:
      return Match::kNo;
  }
}

SpfResult QualifierResult(char q) {
  switch (q) {
    case '-':
      return SpfResult::kFail;
    case '~':
      return SpfResult::kSoftFail;
    case '?':
      return SpfResult::kNeutral;
    default:
      return SpfResult::kPass;
  }
}

std::string Explanation(Evaluation& ev, const SpfTerm& exp, std::string_view domain) {
  // §6.2: any failure along the way means no explanation, never an error.
  auto name = ExpandSpfMacros(exp.domain_spec, ev.req, domain, false, &ev.dns);
  if (!name.ok()) return "";
  DnsResult r = ev.dns.Lookup(TruncateLeft(*name), RrType::kTxt);
  if (!r.ok() || r.values.size() != 1) return "";
  auto text = ExpandSpfMacros(r.values[0], ev.req, domain, true, &ev.dns);
  if (!text.ok()) return "";
  std::string out;
  for (char c : *text) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) out.push_back(c);  // printable ASCII only (§6.2)
  }
  return out.substr(0, 512);
}

SpfVerdict CheckHostImpl(Evaluation& ev, std::string_view domain_in, int depth, bool explain) {
  std::string domain = CanonicalDnsName(domain_in);
  SpfVerdict v;
  v.domain = domain;
  if (!CheckableDomain(domain))
    return Result(SpfResult::kNone, absl::StrCat("'", domain, "' is not a domain to check"));
  DnsResult txt = ev.dns.Lookup(domain, RrType::kTxt);
  if (txt.status == DnsStatus::kTempError)
    return Result(SpfResult::kTempError,
                  absl::StrCat("DNS error for TXT ", domain, ": ", txt.error));
  if (depth > 0 && !ev.CountVoid(txt)) return Result(SpfResult::kPermError, ev.failure);
  std::vector<std::string> records;
  for (const std::string& r : txt.values) {
    if (absl::EqualsIgnoreCase(r, "v=spf1") || absl::StartsWithIgnoreCase(r, "v=spf1 "))
      records.push_back(r);
  }
  if (records.empty()) return Result(SpfResult::kNone, absl::StrCat("no SPF record at ", domain));
  if (records.size() > 1)
    return Result(SpfResult::kPermError, absl::StrCat("more than one SPF record at ", domain));
  auto record = ParseSpfRecord(records[0]);
  if (!record.ok()) return Result(SpfResult::kPermError, std::string(record.status().message()));

  const SpfTerm* redirect = nullptr;
  const SpfTerm* exp = nullptr;
  for (const SpfTerm& t : record->terms) {
    if (t.kind == Kind::kRedirect) redirect = &t;
    if (t.kind == Kind::kExp) exp = &t;
  }
  for (const SpfTerm& t : record->terms) {
    if (t.kind == Kind::kRedirect || t.kind == Kind::kExp || t.kind == Kind::kUnknownModifier)
      continue;
    Match m = Evaluate(ev, t, domain, depth);
    if (m == Match::kTempError) return Result(SpfResult::kTempError, ev.failure);
    if (m == Match::kPermError) return Result(SpfResult::kPermError, ev.failure);
    if (m == Match::kYes) {
      SpfVerdict out = Result(QualifierResult(t.qualifier));
      out.domain = domain;
      out.mechanism = t.text;
      if (out.result == SpfResult::kFail && exp != nullptr && explain)
        out.explanation = Explanation(ev, *exp, domain);
      return out;
    }
  }
  if (redirect != nullptr) {
    if (!ev.CountLookup()) return Result(SpfResult::kPermError, ev.failure);
    auto target = ExpandSpfMacros(redirect->domain_spec, ev.req, domain, false, &ev.dns);
    if (!target.ok()) return Result(SpfResult::kPermError, std::string(target.status().message()));
    SpfVerdict inner = CheckHostImpl(ev, TruncateLeft(*target), depth + 1, explain);
    if (inner.result == SpfResult::kNone)
      return Result(SpfResult::kPermError,
                    absl::StrCat("redirect=", *target, " has no SPF record"));
    return inner;
  }
  SpfVerdict out = Result(SpfResult::kNeutral, "no mechanism matched");
  out.domain = domain;
  return out;
}

}  // namespace

std::string_view SpfResultName(SpfResult r) {
  switch (r) {
    case SpfResult::kNone:
      return "none";
    case SpfResult::kNeutral:
      return "neutral";
    case SpfResult::kPass:
      return "pass";
    case SpfResult::kFail:
      return "fail";
    case SpfResult::kSoftFail:
      return "softfail";
    case SpfResult::kTempError:
      return "temperror";
    case SpfResult::kPermError:
      return "permerror";
  }
  return "?";
}

absl::StatusOr<SpfRecord> ParseSpfRecord(std::string_view txt) {
  std::vector<absl::string_view> words = absl::StrSplit(ToAbsl(txt), ' ', absl::SkipEmpty());
  if (words.empty() || !absl::EqualsIgnoreCase(words[0], "v=spf1"))
    return absl::InvalidArgumentError("not an SPF record (v=spf1)");
  SpfRecord rec;
  bool redirect = false, exp = false;
  for (size_t i = 1; i < words.size(); ++i) {
    auto term = ParseTerm(ToStd(words[i]));
    if (!term.ok()) return term.status();
    if (term->kind == Kind::kRedirect) {
      if (redirect) return Bad(term->text, "redirect= appears twice");
      redirect = true;
    }
    if (term->kind == Kind::kExp) {
      if (exp) return Bad(term->text, "exp= appears twice");
      exp = true;
    }
    // Unknown modifiers are skipped, but their macro-string must be valid.
    if (term->kind == Kind::kRedirect || term->kind == Kind::kExp || term->kind == Kind::kInclude ||
        term->kind == Kind::kExists || term->kind == Kind::kUnknownModifier) {
      SpfRequest probe;
      auto expanded = ExpandSpfMacros(term->domain_spec, probe, "example.com", false, nullptr);
      if (!expanded.ok()) return Bad(term->text, ToStd(expanded.status().message()));
    }
    rec.terms.push_back(*std::move(term));
  }
  return rec;
}

SpfVerdict SpfCheckHost(const SpfRequest& request, std::string_view domain, Resolver& dns,
                        const SpfOptions& options) {
  Evaluation ev{request, dns, options};
  SpfVerdict v = CheckHostImpl(ev, domain, 0, true);
  v.dns_lookups = ev.lookups;
  v.sender = request.sender;
  if (v.domain.empty()) v.domain = CanonicalDnsName(domain);
  return v;
}

SpfVerdict SpfCheck(const SpfRequest& request, Resolver& dns, const SpfOptions& options) {
  SpfRequest req = request;
  std::string domain;
  if (req.sender.empty()) {
    req.sender = absl::StrCat("postmaster@", req.helo);
    domain = req.helo;
  } else {
    size_t at = req.sender.rfind('@');
    if (at == std::string::npos) {
      domain = req.sender;
      req.sender = absl::StrCat("postmaster@", domain);
    } else {
      domain = req.sender.substr(at + 1);
    }
  }
  return SpfCheckHost(req, domain, dns, options);
}

}  // namespace mailgrid::mailauth
