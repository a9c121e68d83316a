// MTA-STS: parsers, the cache's fetch rules, and enforcement in target
// selection (MemoryResolver + a counting fake fetcher; the real HTTPS fetch
// is exercised by services/relay/outbound_integration_test.py), plus the
// smart-host credentials file.
#include "libs/outbound/mta_sts.h"

#include <cstdio>
#include <fstream>

#include "gtest/gtest.h"
#include "libs/outbound/delivery.h"

namespace mailgrid::outbound {
namespace {

constexpr char kPolicy[] =
    "version: STSv1\r\nmode: enforce\r\nmx: mx1.sts.test\r\nmx: *.backup.test\r\n"
    "max_age: 86400\r\n";

TEST(MtaSts, ParsesPolicy) {
  auto p = ParseMtaStsPolicy(kPolicy);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->mode, MtaStsPolicy::Mode::kEnforce);
  ASSERT_EQ(p->mx.size(), 2u);
  EXPECT_EQ(p->max_age, absl::Hours(24));
  EXPECT_TRUE(p->MxMatches("MX1.sts.test."));
  EXPECT_TRUE(p->MxMatches("a.backup.test"));
  EXPECT_FALSE(p->MxMatches("a.b.backup.test"));  // one label only
  EXPECT_FALSE(p->MxMatches("backup.test"));
  EXPECT_FALSE(p->MxMatches("mx2.sts.test"));
  // LF line ends and unknown keys are fine; bad ones are not.
  EXPECT_TRUE(ParseMtaStsPolicy("version: STSv1\nmode: testing\nmx: a.test\nmax_age: 5\nfoo: x\n").ok());
  EXPECT_FALSE(ParseMtaStsPolicy("version: STSv2\nmode: enforce\nmx: a\nmax_age: 5\n").ok());
  EXPECT_FALSE(ParseMtaStsPolicy("version: STSv1\nmode: enforce\nmax_age: 5\n").ok());  // no mx
  EXPECT_FALSE(ParseMtaStsPolicy("version: STSv1\nmode: strict\nmx: a\nmax_age: 5\n").ok());
  EXPECT_FALSE(ParseMtaStsPolicy("version: STSv1\nmode: enforce\nmx: a\nmax_age: 99999999\n").ok());
  EXPECT_FALSE(ParseMtaStsPolicy("<html>not a policy</html>").ok());
  EXPECT_TRUE(ParseMtaStsPolicy("version: STSv1\nmode: none\nmax_age: 5\n").ok());
}

TEST(MtaSts, ParsesTxt) {
  EXPECT_EQ(ParseMtaStsTxt({"v=STSv1; id=20261127T1;"}).value_or(""), "20261127T1");
  EXPECT_EQ(ParseMtaStsTxt({"v=spf1 -all", "v=STSv1;id=abc"}).value_or(""), "abc");
  EXPECT_FALSE(ParseMtaStsTxt({}).has_value());
  EXPECT_FALSE(ParseMtaStsTxt({"v=STSv1; id=a", "v=STSv1; id=b"}).has_value());  // two: none
  EXPECT_FALSE(ParseMtaStsTxt({"v=STSv1; id=no-dashes"}).has_value());
  EXPECT_FALSE(ParseMtaStsTxt({"v=STSv1"}).has_value());
}

struct Fixture {
  mailauth::MemoryResolver dns;
  int fetches = 0;
  std::string body = kPolicy;
  bool fail = false;
  MtaSts sts{&dns, MtaStsOptions()};
  Fixture() {
    sts.SetFetcherForTest([this](const std::string&) -> absl::StatusOr<std::string> {
      ++fetches;
      if (fail) return absl::UnavailableError("down");
      return body;
    });
  }
};

TEST(MtaSts, CachesByIdRefetchesOnChangeKeepsPolicyWhenFetchFails) {
  Fixture f;
  f.dns.AddTxt("_mta-sts.sts.test", "v=STSv1; id=1");
  absl::Time t0 = absl::FromUnixSeconds(1800000000);
  auto p = f.sts.PolicyFor("sts.test", t0);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->mode, MtaStsPolicy::Mode::kEnforce);
  EXPECT_EQ(f.fetches, 1);
  // Same id, later: no fetch (also past the TXT recheck).
  EXPECT_TRUE(f.sts.PolicyFor("sts.test", t0 + absl::Minutes(1)).has_value());
  EXPECT_TRUE(f.sts.PolicyFor("sts.test", t0 + absl::Minutes(10)).has_value());
  EXPECT_EQ(f.fetches, 1);
  // A new id: fetched again; the fetch fails: the cached policy stays.
  mailauth::MemoryResolver& dns = f.dns;
  dns = mailauth::MemoryResolver();
  dns.AddTxt("_mta-sts.sts.test", "v=STSv1; id=2");
  f.fail = true;
  p = f.sts.PolicyFor("sts.test", t0 + absl::Minutes(20));
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->id, "1");
  EXPECT_EQ(f.fetches, 2);
  // The TXT record disappears: the unexpired policy is still used (§5.1).
  dns = mailauth::MemoryResolver();
  EXPECT_TRUE(f.sts.PolicyFor("sts.test", t0 + absl::Minutes(30)).has_value());
  // Past max_age with no TXT: no policy.
  EXPECT_FALSE(f.sts.PolicyFor("sts.test", t0 + absl::Hours(25)).has_value());
}

TEST(MtaSts, NoRecordMeansNoPolicyAndFewLookups) {
  Fixture f;
  absl::Time t0 = absl::FromUnixSeconds(1800000000);
  EXPECT_FALSE(f.sts.PolicyFor("plain.test", t0).has_value());
  EXPECT_FALSE(f.sts.PolicyFor("plain.test", t0 + absl::Seconds(30)).has_value());
  EXPECT_EQ(f.fetches, 0);
  EXPECT_EQ(f.dns.queries().size(), 1u);  // the negative answer is cached too
}

TEST(MtaSts, EnforceFiltersMxAndRequiresVerifiedTls) {
  Fixture f;
  f.dns.AddTxt("_mta-sts.sts.test", "v=STSv1; id=1");
  f.dns.AddMx("sts.test", 10, "evil.other.test");
  f.dns.AddMx("sts.test", 20, "mx1.sts.test");
  f.dns.AddA("evil.other.test", "192.0.2.66");
  f.dns.AddA("mx1.sts.test", "192.0.2.1");
  RouteTable routes;
  DeliveryOptions opts;
  opts.mta_sts = &f.sts;
  SmtpTransport t(opts, &f.dns, &routes);
  SmtpReply failure;
  bool permanent = false;
  auto targets = t.Targets("sts.test", &failure, &permanent);
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].name, "mx1.sts.test");
  EXPECT_EQ(targets[0].tls, TlsPolicy::kRequire);
  EXPECT_TRUE(targets[0].sts_enforced);

  // No MX matches: nothing to try, a temporary failure with the reason.
  f.dns.AddTxt("_mta-sts.only-evil.test", "v=STSv1; id=1");
  f.dns.AddMx("only-evil.test", 10, "evil.other.test");
  failure.Clear();
  EXPECT_TRUE(t.Targets("only-evil.test", &failure, &permanent).empty());
  EXPECT_FALSE(permanent);
  EXPECT_NE(failure.error().find("MTA-STS"), std::string::npos) << failure.error();

  // Testing mode: every MX, opportunistic TLS (reported only).
  f.body = "version: STSv1\nmode: testing\nmx: mx1.sts.test\nmax_age: 600\n";
  f.dns.AddTxt("_mta-sts.testing.test", "v=STSv1; id=7");
  f.dns.AddMx("testing.test", 10, "evil.other.test");
  targets = t.Targets("testing.test", &failure, &permanent);
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].tls, TlsPolicy::kOpportunistic);
  EXPECT_FALSE(targets[0].sts_enforced);
}

TEST(Credentials, LoadsUserPasswordAndRefusesPaths) {
  std::string dir = ::testing::TempDir();
  {
    std::ofstream out(dir + "/smarthost-1");
    out << "relay-user:pa:ss\n";
  }
  auto c = LoadCredentials(dir, "smarthost-1");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->username, "relay-user");
  EXPECT_EQ(c->password, "pa:ss");
  EXPECT_FALSE(LoadCredentials(dir, "../etc/passwd").ok());
  EXPECT_FALSE(LoadCredentials(dir, ".hidden").ok());
  EXPECT_FALSE(LoadCredentials(dir, "missing").ok());
  EXPECT_FALSE(LoadCredentials("", "smarthost-1").ok());
  std::remove((dir + "/smarthost-1").c_str());
}

}  // namespace
}  // namespace mailgrid::outbound
