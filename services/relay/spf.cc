#include "services/relay/spf.h"

#include <arpa/inet.h>

#include <array>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace mailgrid::relay {
namespace {

constexpr int kMaxLookups = 10;
constexpr int kMaxVoid = 2;
constexpr size_t kMaxExpansion = 253;

struct Ip {
  bool v6 = false;
  std::array<unsigned char, 16> b{};
};

std::optional<Ip> ParseIp(const std::string& s) {
  Ip ip;
  if (inet_pton(AF_INET, s.c_str(), ip.b.data()) == 1) return ip;
  if (inet_pton(AF_INET6, s.c_str(), ip.b.data()) == 1) {
    ip.v6 = true;
    return ip;
  }
  return std::nullopt;
}

bool InPrefix(const Ip& a, const Ip& net, int bits) {
  if (a.v6 != net.v6) return false;
  int max = a.v6 ? 128 : 32;
  if (bits < 0 || bits > max) return false;
  for (int i = 0; i < bits / 8; ++i)
    if (a.b[i] != net.b[i]) return false;
  if (bits % 8 != 0) {
    unsigned char mask = static_cast<unsigned char>(0xff << (8 - bits % 8));
    if ((a.b[bits / 8] & mask) != (net.b[bits / 8] & mask)) return false;
  }
  return true;
}

class Checker {
 public:
  Checker(Dns& dns, const SpfRequest& req, Ip ip) : dns_(dns), req_(req), ip_(ip) {}

  SpfResult CheckHost(const std::string& domain, int depth) {
    if (depth > kMaxLookups) return SpfResult::kPermError;
    if (domain.empty() || domain.find('.') == std::string::npos || domain.size() > 253)
      return SpfResult::kNone;
    DnsAnswer txt = dns_.Txt(domain);
    if (txt.kind == DnsAnswer::Kind::kError) return SpfResult::kTempError;
    std::vector<std::string> records;
    for (const std::string& v : txt.values) {
      if (absl::EqualsIgnoreCase(v, "v=spf1") || absl::StartsWithIgnoreCase(v, "v=spf1 "))
        records.push_back(v);
    }
    if (records.empty()) return SpfResult::kNone;
    if (records.size() > 1) return SpfResult::kPermError;
    return Evaluate(records[0], domain, depth);
  }

 private:
  SpfResult Evaluate(const std::string& record, const std::string& domain, int depth) {
    std::optional<std::string> redirect;
    std::vector<std::string> terms = absl::StrSplit(record.substr(6), ' ', absl::SkipEmpty());
    for (std::string term : terms) {
      // Modifiers: name=value (name starts with a letter, no ':' before '=').
      size_t eq = term.find('=');
      size_t colon = term.find(':');
      if (eq != std::string::npos && (colon == std::string::npos || eq < colon) &&
          term.find('/') > eq) {
        std::string name = absl::AsciiStrToLower(term.substr(0, eq));
        if (name == "redirect") {
          if (redirect) return SpfResult::kPermError;
          redirect = term.substr(eq + 1);
        }
        continue;  // exp= and unknown modifiers are ignored
      }
      char q = '+';
      if (!term.empty() && std::strchr("+-~?", term[0]) != nullptr) {
        q = term[0];
        term.erase(0, 1);
      }
      std::optional<SpfResult> m = Mechanism(term, domain, depth);
      if (!m) continue;  // no match
      if (*m != SpfResult::kPass) return *m;  // an error
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
    if (redirect) {
      if (++lookups_ > kMaxLookups) return SpfResult::kPermError;
      std::optional<std::string> target = Expand(*redirect, domain);
      if (!target) return SpfResult::kPermError;
      SpfResult r = CheckHost(*target, depth + 1);
      return r == SpfResult::kNone ? SpfResult::kPermError : r;
    }
    return SpfResult::kNeutral;
  }

  // nullopt: no match; kPass: match; any other value: that error.
  std::optional<SpfResult> Mechanism(const std::string& term, const std::string& domain,
                                     int depth) {
    std::string name = term, arg;
    size_t sep = term.find_first_of(":/");
    if (sep != std::string::npos) {
      name = term.substr(0, sep);
      arg = term.substr(sep);
    }
    name = absl::AsciiStrToLower(name);
    if (name == "all") {
      if (!arg.empty()) return SpfResult::kPermError;
      return SpfResult::kPass;
    }
    if (name == "ip4" || name == "ip6") {
      if (arg.size() < 2 || arg[0] != ':') return SpfResult::kPermError;
      std::string net = arg.substr(1);
      int bits = name == "ip4" ? 32 : 128;
      size_t slash = net.find('/');
      if (slash != std::string::npos) {
        if (!absl::SimpleAtoi(net.substr(slash + 1), &bits)) return SpfResult::kPermError;
        net.resize(slash);
      }
      std::optional<Ip> n = ParseIp(net);
      if (!n || n->v6 != (name == "ip6")) return SpfResult::kPermError;
      if (InPrefix(ip_, *n, bits)) return SpfResult::kPass;
      return std::nullopt;
    }
    if (name == "a" || name == "mx" || name == "include" || name == "exists" || name == "ptr") {
      if (++lookups_ > kMaxLookups) return SpfResult::kPermError;
    } else {
      return SpfResult::kPermError;  // unknown mechanism
    }
    // Target domain and dual CIDR ("a:host/24//64").
    std::string target = domain;
    int cidr4 = 32, cidr6 = 128;
    std::string rest = arg;
    if (!rest.empty() && rest[0] == ':') {
      size_t slash = rest.find('/');
      std::optional<std::string> t = Expand(rest.substr(1, slash == std::string::npos ? rest.npos : slash - 1), domain);
      if (!t) return SpfResult::kPermError;
      target = *t;
      rest = slash == std::string::npos ? "" : rest.substr(slash);
    }
    if (name == "include" || name == "exists" || name == "ptr") {
      if (!rest.empty() || (name != "ptr" && arg.empty())) return SpfResult::kPermError;
    } else if (!rest.empty()) {
      std::vector<std::string> parts = absl::StrSplit(rest.substr(1), '/');
      if (!parts[0].empty() && !absl::SimpleAtoi(parts[0], &cidr4)) return SpfResult::kPermError;
      if (parts.size() == 3 && !absl::SimpleAtoi(parts[2], &cidr6)) return SpfResult::kPermError;
    }
    if (name == "ptr") return std::nullopt;
    if (name == "include") {
      SpfResult r = CheckHost(target, depth + 1);
      if (r == SpfResult::kPass) return SpfResult::kPass;
      if (r == SpfResult::kTempError) return r;
      if (r == SpfResult::kPermError || r == SpfResult::kNone) return SpfResult::kPermError;
      return std::nullopt;
    }
    if (name == "exists") {
      DnsAnswer a = dns_.A(target);
      if (a.kind == DnsAnswer::Kind::kError) return SpfResult::kTempError;
      if (a.kind != DnsAnswer::Kind::kFound) return Void();
      return SpfResult::kPass;
    }
    std::vector<std::string> hosts;
    if (name == "mx") {
      DnsAnswer mx = dns_.Mx(target);
      if (mx.kind == DnsAnswer::Kind::kError) return SpfResult::kTempError;
      if (mx.kind != DnsAnswer::Kind::kFound) return Void();
      if (mx.values.size() > 10) return SpfResult::kPermError;
      hosts = mx.values;
    } else {
      hosts = {target};
    }
    for (const std::string& h : hosts) {
      DnsAnswer addrs = ip_.v6 ? dns_.Aaaa(h) : dns_.A(h);
      if (addrs.kind == DnsAnswer::Kind::kError) return SpfResult::kTempError;
      if (addrs.kind != DnsAnswer::Kind::kFound) {
        if (name == "a") return Void();
        continue;
      }
      for (const std::string& v : addrs.values) {
        std::optional<Ip> n = ParseIp(v);
        if (n && InPrefix(ip_, *n, ip_.v6 ? cidr6 : cidr4)) return SpfResult::kPass;
      }
    }
    return std::nullopt;
  }

  std::optional<SpfResult> Void() {
    if (++voids_ > kMaxVoid) return SpfResult::kPermError;
    return std::nullopt;
  }

  // RFC 7208 §7 macros: %{s l o d i h v} with digits / 'r' / delimiters.
  std::optional<std::string> Expand(const std::string& spec, const std::string& domain) {
    std::string out;
    for (size_t i = 0; i < spec.size(); ++i) {
      char c = spec[i];
      if (c != '%') {
        out.push_back(c);
        continue;
      }
      if (++i >= spec.size()) return std::nullopt;
      char n = spec[i];
      if (n == '%') { out.push_back('%'); continue; }
      if (n == '_') { out.push_back(' '); continue; }
      if (n == '-') { out += "%20"; continue; }
      if (n != '{') return std::nullopt;
      size_t close = spec.find('}', i);
      if (close == std::string::npos || close == i + 1) return std::nullopt;
      std::string body = spec.substr(i + 1, close - i - 1);
      i = close;
      char letter = static_cast<char>(absl::ascii_tolower(static_cast<unsigned char>(body[0])));
      std::string value;
      std::string sender = req_.sender;
      size_t at = sender.rfind('@');
      switch (letter) {
        case 's': value = sender; break;
        case 'l': value = at == std::string::npos ? "postmaster" : sender.substr(0, at); break;
        case 'o': value = at == std::string::npos ? sender : sender.substr(at + 1); break;
        case 'd': value = domain; break;
        case 'h': value = req_.helo; break;
        case 'v': value = ip_.v6 ? "ip6" : "in-addr"; break;
        case 'i':
          if (!ip_.v6) {
            value = req_.ip;
          } else {
            static const char* kHex = "0123456789abcdef";
            std::vector<std::string> nib;
            for (unsigned char b : ip_.b) {
              nib.emplace_back(1, kHex[b >> 4]);
              nib.emplace_back(1, kHex[b & 15]);
            }
            value = absl::StrJoin(nib, ".");
          }
          break;
        default:
          return std::nullopt;
      }
      // Transformers: digits, 'r', then delimiters.
      size_t k = 1;
      int keep = 0;
      while (k < body.size() && absl::ascii_isdigit(static_cast<unsigned char>(body[k])))
        keep = keep * 10 + (body[k++] - '0');
      bool reverse = k < body.size() && (body[k] == 'r' || body[k] == 'R');
      if (reverse) ++k;
      std::string delims = body.substr(k);
      if (delims.empty()) delims = ".";
      if (delims.find_first_not_of(".-+,/_=") != std::string::npos) return std::nullopt;
      std::vector<std::string> parts = absl::StrSplit(value, absl::ByAnyChar(delims));
      if (reverse) std::reverse(parts.begin(), parts.end());
      if (keep > 0 && static_cast<size_t>(keep) < parts.size())
        parts.erase(parts.begin(), parts.end() - keep);
      out += absl::StrJoin(parts, ".");
      if (out.size() > 4 * kMaxExpansion) return std::nullopt;
    }
    // §7.3: cut from the left to 253 characters at a label boundary.
    while (out.size() > kMaxExpansion) {
      size_t dot = out.find('.');
      if (dot == std::string::npos) return std::nullopt;
      out.erase(0, dot + 1);
    }
    return out;
  }

  Dns& dns_;
  const SpfRequest& req_;
  Ip ip_;
  int lookups_ = 0;
  int voids_ = 0;
};

}  // namespace

std::string_view SpfResultName(SpfResult r) {
  switch (r) {
    case SpfResult::kNone: return "none";
    case SpfResult::kNeutral: return "neutral";
    case SpfResult::kPass: return "pass";
    case SpfResult::kFail: return "fail";
    case SpfResult::kSoftFail: return "softfail";
    case SpfResult::kTempError: return "temperror";
    case SpfResult::kPermError: return "permerror";
  }
  return "none";
}

SpfResult CheckSpf(Dns& dns, const SpfRequest& req) {
  std::optional<Ip> ip = ParseIp(req.ip);
  if (!ip) return SpfResult::kNone;
  size_t at = req.sender.rfind('@');
  std::string domain = absl::AsciiStrToLower(at == std::string::npos ? req.helo : req.sender.substr(at + 1));
  Checker c(dns, req, *ip);
  return c.CheckHost(domain, 0);
}

}  // namespace mailgrid::relay
