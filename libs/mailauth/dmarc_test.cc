#include "libs/mailauth/dmarc.h"

#include "gtest/gtest.h"

namespace mailgrid::mailauth {
namespace {

const char kPsl[] =
    "// comment\n"
    "com\nuk\nco.uk\njp\n*.kawasaki.jp\n!city.kawasaki.jp\nexample\n";

TEST(PublicSuffix, Rules) {
  auto psl = PublicSuffixList::FromString(kPsl);
  EXPECT_EQ(psl.OrganizationalDomain("mail.example.com"), "example.com");
  EXPECT_EQ(psl.OrganizationalDomain("a.b.Example.COM."), "example.com");
  EXPECT_EQ(psl.OrganizationalDomain("example.com"), "example.com");
  EXPECT_EQ(psl.OrganizationalDomain("com"), "com");
  EXPECT_EQ(psl.OrganizationalDomain("x.shop.co.uk"), "shop.co.uk");
  EXPECT_EQ(psl.OrganizationalDomain("a.b.foo.kawasaki.jp"), "b.foo.kawasaki.jp");  // wildcard
  EXPECT_EQ(psl.OrganizationalDomain("www.city.kawasaki.jp"), "city.kawasaki.jp");  // exception
  EXPECT_EQ(psl.OrganizationalDomain("a.unlisted"), "a.unlisted");                  // implicit *
}

// The Debian list is required (tools/packages.txt installs publicsuffix):
// without it organizational domains fall back to the built-in rules.
TEST(PublicSuffix, DebianList) {
  const PublicSuffixList& psl = PublicSuffixList::Default();
  ASSERT_TRUE(psl.loaded_from_file()) << "publicsuffix package not installed";
  EXPECT_GT(psl.size(), 5000u);
  EXPECT_EQ(psl.OrganizationalDomain("mail.example.co.uk"), "example.co.uk");
  EXPECT_EQ(psl.OrganizationalDomain("x.y.example.com.au"), "example.com.au");
  EXPECT_EQ(psl.OrganizationalDomain("foo.github.io"),
            "foo.github.io");  // a private-section suffix
}

TEST(DmarcRecord, Parses) {
  auto r = ParseDmarcRecord(
      "v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=r; pct=50; "
      "rua=mailto:a@example.com, mailto:b@example.com");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->policy, DmarcPolicy::kReject);
  EXPECT_EQ(*r->subdomain_policy, DmarcPolicy::kQuarantine);
  EXPECT_TRUE(r->strict_dkim);
  EXPECT_FALSE(r->strict_spf);
  EXPECT_EQ(r->pct, 50);
  EXPECT_EQ(r->rua.size(), 2u);
  EXPECT_FALSE(ParseDmarcRecord("p=reject; v=DMARC1").ok());
  EXPECT_FALSE(ParseDmarcRecord("v=DMARC1; p=bogus").ok());
  EXPECT_FALSE(ParseDmarcRecord("v=DMARC1; p=none; pct=101").ok());
  EXPECT_FALSE(ParseDmarcRecord("v=DMARC1; p=none; adkim=x").ok());
  auto rua_only = ParseDmarcRecord("v=DMARC1; rua=mailto:a@example.com");
  ASSERT_TRUE(rua_only.ok());
  EXPECT_EQ(rua_only->policy, DmarcPolicy::kNone);
}

TEST(FromDomainTest, ExactlyOneMailbox) {
  EXPECT_EQ(*FromDomain("From: A <a@Mail.Example.COM>\r\n\r\n"), "mail.example.com");
  EXPECT_FALSE(FromDomain("From: a@x.example\r\nFrom: b@y.example\r\n\r\n").ok());
  EXPECT_FALSE(FromDomain("From: a@x.example, b@y.example\r\n\r\n").ok());
  EXPECT_FALSE(FromDomain("To: a@x.example\r\n\r\n").ok());
  EXPECT_FALSE(FromDomain("From: undisclosed\r\n\r\n").ok());
}

class DmarcCheckTest : public ::testing::Test {
 protected:
  DmarcCheckTest() : psl_(PublicSuffixList::FromString(kPsl)) {
    dns_.AddTxt("_dmarc.example.com", "v=DMARC1; p=reject; sp=quarantine");
    dns_.AddTxt("_dmarc.strict.com", "v=DMARC1; p=reject; adkim=s; aspf=s");
    dns_.AddTxt("_dmarc.sample.com", "v=DMARC1; p=reject; pct=20");
    dns_.AddTxt("_dmarc.twice.com", "v=DMARC1; p=reject");
    dns_.AddTxt("_dmarc.twice.com", "v=DMARC1; p=none");
    dns_.AddTxt("_dmarc.bad.com", "v=DMARC1; p=sometimes");
    dns_.FailWith("_dmarc.temp.com", RrType::kTxt);
  }
  DmarcVerdict Check(const std::string& from, SpfResult spf, const std::string& spf_domain,
                     const std::string& dkim_domain = "", std::optional<int> roll = 0) {
    DmarcInput in;
    in.from_domain = from;
    in.spf = spf;
    in.spf_domain = spf_domain;
    if (!dkim_domain.empty()) {
      DkimVerdict d;
      d.result = DkimResult::kPass;
      d.domain = dkim_domain;
      in.dkim.push_back(d);
    }
    DmarcOptions o;
    o.psl = &psl_;
    o.pct_roll = roll;
    return DmarcCheck(in, dns_, o);
  }
  PublicSuffixList psl_;
  MemoryResolver dns_;
};

TEST_F(DmarcCheckTest, AlignmentAndPolicy) {
  auto spf = Check("example.com", SpfResult::kPass, "bounces.example.com");
  EXPECT_EQ(spf.result, DmarcResult::kPass);
  EXPECT_TRUE(spf.spf_aligned);
  EXPECT_FALSE(spf.dkim_aligned);
  EXPECT_EQ(spf.disposition, DmarcPolicy::kNone);
  auto dkim = Check("example.com", SpfResult::kFail, "example.com", "mail.example.com");
  EXPECT_EQ(dkim.result, DmarcResult::kPass);
  EXPECT_TRUE(dkim.dkim_aligned);
  // A pass for another domain does not align.
  auto other = Check("example.com", SpfResult::kPass, "evil.com", "evil.com");
  EXPECT_EQ(other.result, DmarcResult::kFail);
  EXPECT_EQ(other.policy, DmarcPolicy::kReject);
  EXPECT_EQ(other.disposition, DmarcPolicy::kReject);
  EXPECT_EQ(other.record_domain, "example.com");
  // softfail is not pass.
  EXPECT_EQ(Check("example.com", SpfResult::kSoftFail, "example.com").result, DmarcResult::kFail);
}

TEST_F(DmarcCheckTest, SubdomainUsesOrganizationalRecordAndSp) {
  dns_.ClearQueries();
  auto v = Check("news.example.com", SpfResult::kNone, "", "");
  EXPECT_EQ(v.result, DmarcResult::kFail);
  EXPECT_EQ(v.record_domain, "example.com");
  EXPECT_EQ(v.policy, DmarcPolicy::kQuarantine);
  EXPECT_EQ(v.disposition, DmarcPolicy::kQuarantine);
  ASSERT_EQ(dns_.queries().size(), 2u);
  EXPECT_EQ(dns_.queries()[0], "TXT _dmarc.news.example.com");
  EXPECT_EQ(dns_.queries()[1], "TXT _dmarc.example.com");
}

TEST_F(DmarcCheckTest, StrictAlignment) {
  EXPECT_EQ(Check("strict.com", SpfResult::kPass, "mail.strict.com", "mail.strict.com").result,
            DmarcResult::kFail);
  EXPECT_EQ(Check("strict.com", SpfResult::kPass, "strict.com").result, DmarcResult::kPass);
}

TEST_F(DmarcCheckTest, PctSampling) {
  EXPECT_EQ(Check("sample.com", SpfResult::kFail, "sample.com", "", 10).disposition,
            DmarcPolicy::kReject);
  EXPECT_EQ(Check("sample.com", SpfResult::kFail, "sample.com", "", 50).disposition,
            DmarcPolicy::kQuarantine);
}

TEST_F(DmarcCheckTest, NoneAndErrors) {
  auto none = Check("nodmarc.com", SpfResult::kFail, "nodmarc.com");
  EXPECT_EQ(none.result, DmarcResult::kNone);
  EXPECT_EQ(none.disposition, DmarcPolicy::kNone);
  EXPECT_EQ(Check("twice.com", SpfResult::kFail, "twice.com").result, DmarcResult::kNone);
  EXPECT_EQ(Check("bad.com", SpfResult::kFail, "bad.com").result, DmarcResult::kPermError);
  EXPECT_EQ(Check("temp.com", SpfResult::kFail, "temp.com").result, DmarcResult::kTempError);
}

}  // namespace
}  // namespace mailgrid::mailauth
