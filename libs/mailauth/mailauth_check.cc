// mailauth_check: a small command line over libs/mailauth, for operators
// ("why did this message fail DMARC?") and for the interoperability tests
// (dkimpy signs, we verify, and the other way round; lookups through a real
// dnsmasq).
//
//   mailauth_check sign --key=PEM --domain=D --selector=S [--repeat=N] < msg > signed
//   mailauth_check verify [--resolver=H:P] [--txt=NAME=VALUE]... [--now=T]
//                         [--accept-partial-body] < msg
//   mailauth_check inbound --ip=A --helo=H --mail-from=M [--receiver=R] [...] < msg
//   mailauth_check spf --ip=A --helo=H --mail-from=M [--resolver=H:P]
//   mailauth_check dns --resolver=H:P TYPE NAME
// DNS: --resolver uses c-ares towards that server; --txt/--a/--mx entries
// make an in-memory resolver instead (name=value; mx as name=pref:host).
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/mailauth/auth_results.h"
#include "libs/mailauth/cares_resolver.h"
#include "libs/mailauth/dkim.h"

namespace ma = mailgrid::mailauth;

namespace {

struct Args {
  std::string command;
  std::vector<std::pair<std::string, std::string>> flags;
  std::vector<std::string> positional;

  std::string Get(const std::string& name, const std::string& def = "") const {
    for (const auto& [k, v] : flags) {
      if (k == name) return v;
    }
    return def;
  }
  bool Has(const std::string& name) const {
    for (const auto& [k, v] : flags) {
      if (k == name) return true;
    }
    return false;
  }
};

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--", 0) == 0) {
      size_t eq = s.find('=');
      if (eq == std::string::npos)
        a.flags.emplace_back(s.substr(2), "");
      else
        a.flags.emplace_back(s.substr(2, eq - 2), s.substr(eq + 1));
    } else if (a.command.empty()) {
      a.command = s;
    } else {
      a.positional.push_back(s);
    }
  }
  return a;
}

std::string ReadAll(std::istream& in) {
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::unique_ptr<ma::Resolver> MakeResolver(const Args& a) {
  if (a.Has("resolver"))
    return std::make_unique<ma::CaresResolver>(a.Get("resolver"), absl::Seconds(5));
  auto mem = std::make_unique<ma::MemoryResolver>();
  for (const auto& [k, v] : a.flags) {
    size_t eq = v.find('=');
    if (eq == std::string::npos) continue;
    std::string name = v.substr(0, eq), value = v.substr(eq + 1);
    if (k == "txt") mem->AddTxt(name, value);
    if (k == "a") mem->AddA(name, value);
    if (k == "aaaa") mem->AddAaaa(name, value);
    if (k == "mx") {
      size_t colon = value.find(':');
      uint32_t pref = 0;
      if (colon != std::string::npos && absl::SimpleAtoi(value.substr(0, colon), &pref))
        mem->AddMx(name, static_cast<uint16_t>(pref), value.substr(colon + 1));
    }
  }
  return mem;
}

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

int Sign(const Args& a) {
  std::ifstream f(a.Get("key"));
  if (!f) {
    std::cerr << "cannot read --key\n";
    return 2;
  }
  auto key = ma::DkimPrivateKey::FromPem(ReadAll(f));
  if (!key.ok()) {
    std::cerr << key.status() << "\n";
    return 2;
  }
  ma::DkimSignOptions o;
  o.domain = a.Get("domain");
  o.selector = a.Get("selector");
  if (a.Get("canon") == "simple/simple") o.header_canon = o.body_canon = ma::DkimCanon::kSimple;
  uint64_t t = 0;
  if (absl::SimpleAtoi(a.Get("timestamp"), &t)) o.timestamp = t;
  std::string msg = ReadAll(std::cin);
  auto header = ma::DkimSign(msg, *key, o);
  if (!header.ok()) {
    std::cerr << header.status() << "\n";
    return 1;
  }
  // --repeat=N: sign N more times and report this thread's CPU per
  // signature on stderr (to set beside `openssl speed rsa2048`).
  int repeat = 0;
  if (absl::SimpleAtoi(a.Get("repeat", "0"), &repeat) && repeat > 0) {
    double start = ThreadCpuSeconds();
    for (int i = 0; i < repeat; ++i) {
      if (!ma::DkimSign(msg, *key, o).ok()) return 1;
    }
    std::cerr << "sign: " << (ThreadCpuSeconds() - start) * 1e6 / repeat
              << " us CPU per signature (" << repeat << " signatures, message " << msg.size()
              << " bytes)\n";
  }
  std::cout << *header << msg;
  return 0;
}

int Verify(const Args& a) {
  auto dns = MakeResolver(a);
  ma::DkimVerifyOptions o;
  absl::SimpleAtoi(a.Get("now", "0"), &o.now);
  o.accept_partial_body = a.Has("accept-partial-body");
  std::string msg = ReadAll(std::cin);
  auto verdicts = ma::DkimVerifyAll(msg, *dns, o);
  if (verdicts.empty()) std::cout << "none\n";
  for (const auto& v : verdicts) {
    std::cout << ma::DkimResultName(v.result) << " d=" << v.domain << " s=" << v.selector
              << " a=" << v.algorithm << (v.reason.empty() ? "" : " reason=" + v.reason) << "\n";
  }
  return 0;
}

ma::IpAddress Ip(const Args& a) {
  auto ip = ma::IpAddress::Parse(a.Get("ip", "127.0.0.1"));
  if (!ip) {
    std::cerr << "bad --ip\n";
    std::exit(2);
  }
  return *ip;
}

int Inbound(const Args& a) {
  auto dns = MakeResolver(a);
  std::string msg = ReadAll(std::cin);
  ma::InboundRequest r;
  r.message = msg;
  r.client_ip = Ip(a);
  r.helo = a.Get("helo");
  r.mail_from = a.Get("mail-from");
  r.receiver = a.Get("receiver", "mx.mailgrid.test");
  ma::InboundOptions o;
  absl::SimpleAtoi(a.Get("now", "0"), &o.dkim.now);
  auto res = ma::CheckInbound(r, *dns, o);
  std::cout << res.header << "disposition=" << ma::DmarcPolicyName(res.disposition) << "\n";
  return 0;
}

int Spf(const Args& a) {
  auto dns = MakeResolver(a);
  ma::SpfRequest r;
  r.ip = Ip(a);
  r.helo = a.Get("helo");
  r.sender = a.Get("mail-from");
  auto v = ma::SpfCheck(r, *dns);
  std::cout << ma::SpfResultName(v.result) << " domain=" << v.domain << " mechanism=" << v.mechanism
            << " lookups=" << v.dns_lookups << (v.reason.empty() ? "" : " reason=" + v.reason)
            << "\n";
  return 0;
}

int Dns(const Args& a) {
  if (a.positional.size() != 2) {
    std::cerr << "usage: dns TYPE NAME\n";
    return 2;
  }
  auto dns = MakeResolver(a);
  const std::string& t = a.positional[0];
  ma::RrType type = t == "A"      ? ma::RrType::kA
                    : t == "AAAA" ? ma::RrType::kAaaa
                    : t == "MX"   ? ma::RrType::kMx
                    : t == "PTR"  ? ma::RrType::kPtr
                                  : ma::RrType::kTxt;
  ma::DnsResult r = dns->Lookup(a.positional[1], type);
  const char* status = r.status == ma::DnsStatus::kOk         ? "ok"
                       : r.status == ma::DnsStatus::kNxDomain ? "nxdomain"
                                                              : "temperror";
  std::cout << status << (r.error.empty() ? "" : " " + r.error) << "\n";
  if (type == ma::RrType::kMx) {
    for (const auto& m : r.mx) std::cout << m.preference << " " << m.host << "\n";
  } else {
    for (const auto& v : r.values) std::cout << v << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = Parse(argc, argv);
  if (a.command == "sign") return Sign(a);
  if (a.command == "verify") return Verify(a);
  if (a.command == "inbound") return Inbound(a);
  if (a.command == "spf") return Spf(a);
  if (a.command == "dns") return Dns(a);
  std::cerr
      << "usage: mailauth_check sign|verify|inbound|spf|dns [flags] (see the source header)\n";
  return 2;
}
