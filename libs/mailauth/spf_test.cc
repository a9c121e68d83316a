#include "libs/mailauth/spf.h"

#include "gtest/gtest.h"

namespace mailgrid::mailauth {
namespace {

SpfRequest Req(const std::string& ip, const std::string& sender,
               const std::string& helo = "mx.example.org") {
  SpfRequest r;
  r.ip = *IpAddress::Parse(ip);
  r.sender = sender;
  r.helo = helo;
  r.receiver = "mx.mailgrid.test";
  r.now = 1800000000;
  return r;
}

std::string Expand(const std::string& text, const SpfRequest& r, const std::string& domain) {
  auto s = ExpandSpfMacros(text, r, domain, false, nullptr);
  EXPECT_TRUE(s.ok()) << text << ": " << s.status();
  return s.ok() ? *s : "";
}

// RFC 7208 §7.4's examples.
TEST(SpfMacros, Rfc7208Examples) {
  SpfRequest r = Req("192.0.2.3", "strong-bad@email.example.com");
  const std::string d = "email.example.com";
  EXPECT_EQ(Expand("%{s}", r, d), "strong-bad@email.example.com");
  EXPECT_EQ(Expand("%{o}", r, d), "email.example.com");
  EXPECT_EQ(Expand("%{d}", r, d), "email.example.com");
  EXPECT_EQ(Expand("%{d4}", r, d), "email.example.com");
  EXPECT_EQ(Expand("%{d3}", r, d), "email.example.com");
  EXPECT_EQ(Expand("%{d2}", r, d), "example.com");
  EXPECT_EQ(Expand("%{d1}", r, d), "com");
  EXPECT_EQ(Expand("%{dr}", r, d), "com.example.email");
  EXPECT_EQ(Expand("%{d2r}", r, d), "example.email");
  EXPECT_EQ(Expand("%{l}", r, d), "strong-bad");
  EXPECT_EQ(Expand("%{l-}", r, d), "strong.bad");
  EXPECT_EQ(Expand("%{lr}", r, d), "strong-bad");
  EXPECT_EQ(Expand("%{lr-}", r, d), "bad.strong");
  EXPECT_EQ(Expand("%{l1r-}", r, d), "strong");
  EXPECT_EQ(Expand("%{ir}.%{v}._spf.%{d2}", r, d), "3.2.0.192.in-addr._spf.example.com");
  EXPECT_EQ(Expand("%{lr-}.lp._spf.%{d2}", r, d), "bad.strong.lp._spf.example.com");
  EXPECT_EQ(Expand("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", r, d),
            "bad.strong.lp.3.2.0.192.in-addr._spf.example.com");
  EXPECT_EQ(Expand("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", r, d),
            "3.2.0.192.in-addr.strong.lp._spf.example.com");
  EXPECT_EQ(Expand("%{d2}.trusted-domains.example.net", r, d),
            "example.com.trusted-domains.example.net");
  SpfRequest r6 = Req("2001:db8::cb01", "strong-bad@email.example.com");
  EXPECT_EQ(Expand("%{ir}.%{v}._spf.%{d2}", r6, d),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com");
  EXPECT_EQ(Expand("a%%b%_c%-d", r, d), "a%b c%20d");
  EXPECT_EQ(Expand("%{L}", Req("192.0.2.3", "a b@example.com"), d), "a%20b");
  EXPECT_FALSE(ExpandSpfMacros("%{x}", r, d, false, nullptr).ok());
  EXPECT_FALSE(ExpandSpfMacros("%{d0}", r, d, false, nullptr).ok());
  EXPECT_FALSE(ExpandSpfMacros("%{c}", r, d, false, nullptr).ok());  // exp only
  EXPECT_TRUE(ExpandSpfMacros("%{c} %{r} %{t}", r, d, true, nullptr).ok());
  EXPECT_FALSE(ExpandSpfMacros("%{d", r, d, false, nullptr).ok());
  EXPECT_FALSE(ExpandSpfMacros("%z", r, d, false, nullptr).ok());
}

TEST(SpfRecord, Parses) {
  auto rec = ParseSpfRecord(
      "v=spf1 +ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx:mx.example.com/28//64 "
      "-include:_spf.example.net ~exists:%{i}.x.example ptr ?all redirect=x.example "
      "exp=exp.example foo=bar");
  ASSERT_TRUE(rec.ok()) << rec.status();
  ASSERT_EQ(rec->terms.size(), 11u);
  EXPECT_EQ(rec->terms[0].kind, SpfTerm::Kind::kIp4);
  EXPECT_EQ(rec->terms[0].cidr4, 24);
  EXPECT_EQ(rec->terms[1].cidr6, 32);
  EXPECT_EQ(rec->terms[3].domain_spec, "mx.example.com");
  EXPECT_EQ(rec->terms[3].cidr4, 28);
  EXPECT_EQ(rec->terms[3].cidr6, 64);
  EXPECT_EQ(rec->terms[4].qualifier, '-');
  EXPECT_EQ(rec->terms[10].kind, SpfTerm::Kind::kUnknownModifier);
  for (const char* bad :
       {"v=spf2 all", "v=spf1 ip4:300.1.1.1", "v=spf1 ip4:192.0.2.0/33", "v=spf1 foo",
        "v=spf1 include", "v=spf1 redirect=a.example redirect=b.example", "v=spf1 all:x",
        "v=spf1 a:", "v=spf1 ip6:192.0.2.1", "v=spf1 exists:%{q}"}) {
    EXPECT_FALSE(ParseSpfRecord(bad).ok()) << bad;
  }
}

class SpfCheckTest : public ::testing::Test {
 protected:
  SpfVerdict Check(const std::string& ip, const std::string& sender,
                   const std::string& helo = "mx.example.org") {
    return SpfCheck(Req(ip, sender, helo), dns_);
  }
  MemoryResolver dns_;
};

TEST_F(SpfCheckTest, QualifiersAndAll) {
  dns_.AddTxt("example.com", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all");
  dns_.AddTxt("soft.example", "v=spf1 ~all");
  dns_.AddTxt("neutral.example", "v=spf1 ?all");
  dns_.AddTxt("empty.example", "v=spf1");
  dns_.AddTxt("other.example", "some verification token");
  auto pass = Check("192.0.2.10", "a@example.com");
  EXPECT_EQ(pass.result, SpfResult::kPass);
  EXPECT_EQ(pass.mechanism, "ip4:192.0.2.0/24");
  EXPECT_EQ(pass.domain, "example.com");
  EXPECT_EQ(Check("2001:db8::5", "a@example.com").result, SpfResult::kPass);
  EXPECT_EQ(Check("::ffff:192.0.2.10", "a@example.com").result, SpfResult::kPass);  // mapped v4
  EXPECT_EQ(Check("198.51.100.1", "a@example.com").result, SpfResult::kFail);
  EXPECT_EQ(Check("198.51.100.1", "a@soft.example").result, SpfResult::kSoftFail);
  EXPECT_EQ(Check("198.51.100.1", "a@neutral.example").result, SpfResult::kNeutral);
  EXPECT_EQ(Check("198.51.100.1", "a@empty.example").result, SpfResult::kNeutral);
  EXPECT_EQ(Check("198.51.100.1", "a@other.example").result, SpfResult::kNone);
  EXPECT_EQ(Check("198.51.100.1", "a@nowhere.example").result, SpfResult::kNone);
  EXPECT_EQ(Check("198.51.100.1", "a@localhost").result, SpfResult::kNone);  // not a FQDN
}

TEST_F(SpfCheckTest, NullSenderChecksHelo) {
  dns_.AddTxt("mx.example.org", "v=spf1 ip4:203.0.113.7 -all");
  auto v = Check("203.0.113.7", "", "mx.example.org");
  EXPECT_EQ(v.result, SpfResult::kPass);
  EXPECT_EQ(v.domain, "mx.example.org");
  EXPECT_EQ(v.sender, "postmaster@mx.example.org");
}

TEST_F(SpfCheckTest, MechanismsThatLookUp) {
  dns_.AddTxt("example.com",
              "v=spf1 a mx:example.com/30 include:_spf.partner.example exists:%{ir}.allow.example "
              "ptr:trusted.example -all");
  dns_.AddA("example.com", "192.0.2.1");
  dns_.AddMx("example.com", 10, "mx1.example.com");
  dns_.AddA("mx1.example.com", "192.0.2.100");
  dns_.AddTxt("_spf.partner.example", "v=spf1 ip6:2001:db8:1::/48 ip4:198.51.100.0/24 -all");
  dns_.AddA("9.113.0.203.allow.example", "127.0.0.2");
  dns_.AddPtr("203.0.113.50", "host.trusted.example");
  dns_.AddA("host.trusted.example", "203.0.113.50");
  dns_.AddPtr("203.0.113.51", "liar.trusted.example");  // forward does not confirm
  dns_.AddA("liar.trusted.example", "203.0.113.99");
  EXPECT_EQ(Check("192.0.2.1", "x@example.com").mechanism, "a");
  EXPECT_EQ(Check("192.0.2.102", "x@example.com").mechanism, "mx:example.com/30");
  EXPECT_EQ(Check("198.51.100.9", "x@example.com").mechanism, "include:_spf.partner.example");
  EXPECT_EQ(Check("2001:db8:1::1", "x@example.com").result, SpfResult::kPass);
  EXPECT_EQ(Check("203.0.113.9", "x@example.com").mechanism, "exists:%{ir}.allow.example");
  EXPECT_EQ(Check("203.0.113.50", "x@example.com").mechanism, "ptr:trusted.example");
  auto liar = Check("203.0.113.51", "x@example.com");
  EXPECT_EQ(liar.result, SpfResult::kFail);
  EXPECT_EQ(liar.mechanism, "-all");
  EXPECT_EQ(liar.dns_lookups, 5);
}

TEST_F(SpfCheckTest, RedirectAndExplanation) {
  dns_.AddTxt("example.com", "v=spf1 redirect=_spf.example.com");
  dns_.AddTxt("_spf.example.com", "v=spf1 ip4:192.0.2.0/24 -all exp=why.example.com");
  dns_.AddTxt("why.example.com", "%{i} is not one of %{d}'s hosts (sender %{s})");
  dns_.AddTxt("broken.example", "v=spf1 redirect=nothing.example");
  EXPECT_EQ(Check("192.0.2.5", "a@example.com").result, SpfResult::kPass);
  auto fail = Check("198.51.100.1", "a@example.com");
  EXPECT_EQ(fail.result, SpfResult::kFail);
  EXPECT_EQ(fail.explanation,
            "198.51.100.1 is not one of _spf.example.com's hosts (sender a@example.com)");
  EXPECT_EQ(Check("198.51.100.1", "a@broken.example").result, SpfResult::kPermError);
}

TEST_F(SpfCheckTest, Errors) {
  dns_.AddTxt("two.example", "v=spf1 -all");
  dns_.AddTxt("two.example", "v=spf1 +all");
  dns_.AddTxt("syntax.example", "v=spf1 ip4:nope -all");
  dns_.AddTxt("incnone.example", "v=spf1 include:nothing.example -all");
  dns_.FailWith("temp.example", RrType::kTxt);
  dns_.AddTxt("inctemp.example", "v=spf1 include:temp.example -all");
  dns_.AddTxt("atemp.example", "v=spf1 a:temp2.example -all");
  dns_.FailWith("temp2.example", RrType::kA);
  EXPECT_EQ(Check("192.0.2.1", "a@two.example").result, SpfResult::kPermError);
  EXPECT_EQ(Check("192.0.2.1", "a@syntax.example").result, SpfResult::kPermError);
  EXPECT_EQ(Check("192.0.2.1", "a@incnone.example").result, SpfResult::kPermError);
  EXPECT_EQ(Check("192.0.2.1", "a@temp.example").result, SpfResult::kTempError);
  EXPECT_EQ(Check("192.0.2.1", "a@inctemp.example").result, SpfResult::kTempError);
  EXPECT_EQ(Check("192.0.2.1", "a@atemp.example").result, SpfResult::kTempError);
}

TEST_F(SpfCheckTest, LookupLimits) {
  // A chain of 11 includes: the 11th DNS-querying term is a permerror.
  for (int i = 0; i < 11; ++i)
    dns_.AddTxt("l" + std::to_string(i) + ".example",
                "v=spf1 include:l" + std::to_string(i + 1) + ".example -all");
  dns_.AddTxt("l11.example", "v=spf1 +all");
  auto v = Check("192.0.2.1", "a@l0.example");
  EXPECT_EQ(v.result, SpfResult::kPermError);
  EXPECT_EQ(v.dns_lookups, 11);
  // Ten are fine.
  EXPECT_EQ(Check("192.0.2.1", "a@l1.example").result, SpfResult::kPass);
  // Three void lookups.
  dns_.AddTxt("void.example", "v=spf1 a:n1.example a:n2.example a:n3.example -all");
  auto voids = Check("192.0.2.1", "a@void.example");
  EXPECT_EQ(voids.result, SpfResult::kPermError);
  EXPECT_NE(voids.reason.find("void"), std::string::npos);
  dns_.AddTxt("twovoid.example", "v=spf1 a:n1.example a:n2.example -all");
  EXPECT_EQ(Check("192.0.2.1", "a@twovoid.example").result, SpfResult::kFail);
  // Eleven MX names.
  dns_.AddTxt("mxmany.example", "v=spf1 mx -all");
  for (int i = 0; i < 11; ++i)
    dns_.AddMx("mxmany.example", 10, "mx" + std::to_string(i) + ".example");
  EXPECT_EQ(Check("192.0.2.1", "a@mxmany.example").result, SpfResult::kPermError);
}

TEST(IpAddress, ParseAndNetworks) {
  auto a = IpAddress::Parse("192.0.2.130");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->InNetwork(*IpAddress::Parse("192.0.2.128"), 25));
  EXPECT_FALSE(a->InNetwork(*IpAddress::Parse("192.0.2.0"), 25));
  EXPECT_TRUE(a->InNetwork(*IpAddress::Parse("0.0.0.0"), 0));
  EXPECT_EQ(a->ReverseName(), "130.2.0.192.in-addr.arpa");
  auto b = IpAddress::Parse("[IPv6:2001:db8::1]");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->v6);
  EXPECT_EQ(b->ToString(), "2001:db8::1");
  EXPECT_FALSE(IpAddress::Parse("999.1.1.1"));
  EXPECT_FALSE(IpAddress::Parse(""));
  EXPECT_EQ(IpAddress::Parse("::ffff:10.0.0.1")->AsV4().ToString(), "10.0.0.1");
}

}  // namespace
}  // namespace mailgrid::mailauth
