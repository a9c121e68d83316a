// SPF evaluation (RFC 7208) over a fake DNS.
#include "services/relay/spf.h"

#include <map>

#include "gtest/gtest.h"

namespace mailgrid::relay {
namespace {

class FakeDns : public Dns {
 public:
  std::map<std::string, DnsAnswer> txt, a, aaaa, mx;
  int queries = 0;
  DnsAnswer Txt(const std::string& n) override { return Get(txt, n); }
  DnsAnswer A(const std::string& n) override { return Get(a, n); }
  DnsAnswer Aaaa(const std::string& n) override { return Get(aaaa, n); }
  DnsAnswer Mx(const std::string& n) override { return Get(mx, n); }
  static DnsAnswer Found(std::vector<std::string> v) { return {DnsAnswer::Kind::kFound, std::move(v)}; }

 private:
  DnsAnswer Get(std::map<std::string, DnsAnswer>& m, const std::string& n) {
    ++queries;
    auto it = m.find(n);
    if (it == m.end()) return {DnsAnswer::Kind::kNxDomain, {}};
    return it->second;
  }
};

SpfResult Check(FakeDns& dns, const std::string& ip, const std::string& sender) {
  return CheckSpf(dns, {ip, sender, "helo.example"});
}

TEST(SpfTest, Basics) {
  FakeDns dns;
  dns.txt["example.org"] = FakeDns::Found({"some other text", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"});
  EXPECT_EQ(Check(dns, "192.0.2.7", "a@example.org"), SpfResult::kPass);
  EXPECT_EQ(Check(dns, "198.51.100.1", "a@example.org"), SpfResult::kFail);
  EXPECT_EQ(Check(dns, "2001:db8::5", "a@example.org"), SpfResult::kPass);
  EXPECT_EQ(Check(dns, "2001:db9::5", "a@example.org"), SpfResult::kFail);
  EXPECT_EQ(Check(dns, "192.0.2.7", "a@nothing.example"), SpfResult::kNone);
}

TEST(SpfTest, QualifiersAndDefault) {
  FakeDns dns;
  dns.txt["soft.example"] = FakeDns::Found({"v=spf1 ~all"});
  dns.txt["neutral.example"] = FakeDns::Found({"v=spf1 ?all"});
  dns.txt["empty.example"] = FakeDns::Found({"v=spf1"});
  EXPECT_EQ(Check(dns, "192.0.2.1", "x@soft.example"), SpfResult::kSoftFail);
  EXPECT_EQ(Check(dns, "192.0.2.1", "x@neutral.example"), SpfResult::kNeutral);
  EXPECT_EQ(Check(dns, "192.0.2.1", "x@empty.example"), SpfResult::kNeutral);
}

TEST(SpfTest, AMxIncludeRedirectExists) {
  FakeDns dns;
  dns.txt["example.com"] = FakeDns::Found({"v=spf1 a mx/24 include:_spf.example.net -all"});
  dns.a["example.com"] = FakeDns::Found({"203.0.113.10"});
  dns.mx["example.com"] = FakeDns::Found({"mx.example.com"});
  dns.a["mx.example.com"] = FakeDns::Found({"198.51.100.20"});
  dns.txt["_spf.example.net"] = FakeDns::Found({"v=spf1 ip4:192.0.2.99 -all"});
  EXPECT_EQ(Check(dns, "203.0.113.10", "u@example.com"), SpfResult::kPass);
  EXPECT_EQ(Check(dns, "198.51.100.77", "u@example.com"), SpfResult::kPass);  // mx/24
  EXPECT_EQ(Check(dns, "192.0.2.99", "u@example.com"), SpfResult::kPass);     // include
  EXPECT_EQ(Check(dns, "192.0.2.98", "u@example.com"), SpfResult::kFail);
  dns.txt["redir.example"] = FakeDns::Found({"v=spf1 redirect=example.com"});
  EXPECT_EQ(Check(dns, "203.0.113.10", "u@redir.example"), SpfResult::kPass);
  EXPECT_EQ(Check(dns, "192.0.2.1", "u@redir.example"), SpfResult::kFail);
  dns.txt["ex.example"] = FakeDns::Found({"v=spf1 exists:%{i}.%{l}.allow.example -all"});
  dns.a["192.0.2.5.alice.allow.example"] = FakeDns::Found({"127.0.0.2"});
  EXPECT_EQ(Check(dns, "192.0.2.5", "alice@ex.example"), SpfResult::kPass);
  EXPECT_EQ(Check(dns, "192.0.2.5", "bob@ex.example"), SpfResult::kFail);
}

TEST(SpfTest, ErrorsAndLimits) {
  FakeDns dns;
  dns.txt["two.example"] = FakeDns::Found({"v=spf1 -all", "v=spf1 +all"});
  EXPECT_EQ(Check(dns, "192.0.2.1", "x@two.example"), SpfResult::kPermError);
  dns.txt["bad.example"] = FakeDns::Found({"v=spf1 frobnicate -all"});
  EXPECT_EQ(Check(dns, "192.0.2.1", "x@bad.example"), SpfResult::kPermError);
  dns.txt["temp.example"] = {DnsAnswer::Kind::kError, {}};
  EXPECT_EQ(Check(dns, "192.0.2.1", "x@temp.example"), SpfResult::kTempError);
  // An include loop is stopped by the 10-lookup budget.
  dns.txt["loop.example"] = FakeDns::Found({"v=spf1 include:loop.example -all"});
  EXPECT_EQ(Check(dns, "192.0.2.1", "x@loop.example"), SpfResult::kPermError);
  EXPECT_LT(dns.queries, 40);
  // More than two void lookups.
  dns.txt["void.example"] = FakeDns::Found({"v=spf1 a:n1.example a:n2.example a:n3.example -all"});
  EXPECT_EQ(Check(dns, "192.0.2.1", "x@void.example"), SpfResult::kPermError);
  // include of a domain without SPF is a permerror.
  dns.txt["inc.example"] = FakeDns::Found({"v=spf1 include:nospf.example -all"});
  EXPECT_EQ(Check(dns, "192.0.2.1", "x@inc.example"), SpfResult::kPermError);
}

}  // namespace
}  // namespace mailgrid::relay
