#include "services/tenant/dns_records.h"

#include "gtest/gtest.h"

namespace mailgrid::tenant {
namespace {

RecordConfig Config() {
  RecordConfig c;
  c.mx_hosts = {{"mx1.mailgrid.example", 10}, {"mx2.mailgrid.example", 20}};
  c.cluster_hostname = "mail.mailgrid.example";
  c.spf_include = "_spf.mailgrid.example";
  return c;
}

std::vector<v1::DnsRecord> OfPurpose(const std::vector<v1::DnsRecord>& all,
                                     v1::DnsRecordPurpose p) {
  std::vector<v1::DnsRecord> out;
  for (const auto& r : all) {
    if (r.purpose() == p) out.push_back(r);
  }
  return out;
}

TEST(DnsRecordsTest, EveryRecordTheIssueAsksFor) {
  v1::DkimKey ed, rsa, retired;
  ed.set_selector("mg20261127g1-ed");
  ed.set_state(v1::DKIM_KEY_STATE_ACTIVE);
  ed.set_txt_value("v=DKIM1; k=ed25519; p=AAAA");
  rsa.set_selector("mg20261127g1-rsa");
  rsa.set_state(v1::DKIM_KEY_STATE_ACTIVE);
  rsa.set_txt_value("v=DKIM1; k=rsa; p=BBBB");
  retired.set_selector("old-ed");
  retired.set_state(v1::DKIM_KEY_STATE_RETIRED);
  retired.set_txt_value("v=DKIM1; k=ed25519; p=CCCC");
  auto all =
      GenerateRecords("acme.example", Config(), "tok123", {ed, rsa, retired}, "admin@acme.example");

  auto mx = OfPurpose(all, v1::DNS_RECORD_PURPOSE_MX);
  ASSERT_EQ(mx.size(), 2u);
  EXPECT_EQ(mx[0].name(), "acme.example");
  EXPECT_EQ(mx[0].value(), "mx1.mailgrid.example");
  EXPECT_EQ(mx[0].priority(), 10u);
  EXPECT_EQ(mx[1].priority(), 20u);
  EXPECT_TRUE(mx[0].required_for_verification());

  auto spf = OfPurpose(all, v1::DNS_RECORD_PURPOSE_SPF);
  ASSERT_EQ(spf.size(), 1u);
  EXPECT_EQ(spf[0].value(), "v=spf1 mx include:_spf.mailgrid.example ~all");
  EXPECT_FALSE(spf[0].required_for_verification());

  auto dkim = OfPurpose(all, v1::DNS_RECORD_PURPOSE_DKIM);
  ASSERT_EQ(dkim.size(), 2u);  // the retired key is not published
  EXPECT_EQ(dkim[0].name(), "mg20261127g1-ed._domainkey.acme.example");
  EXPECT_EQ(dkim[0].value(), "v=DKIM1; k=ed25519; p=AAAA");
  EXPECT_EQ(dkim[1].name(), "mg20261127g1-rsa._domainkey.acme.example");

  auto dmarc = OfPurpose(all, v1::DNS_RECORD_PURPOSE_DMARC);
  ASSERT_EQ(dmarc.size(), 1u);
  EXPECT_EQ(dmarc[0].name(), "_dmarc.acme.example");
  EXPECT_EQ(dmarc[0].value(),
            "v=DMARC1; p=quarantine; rua=mailto:admin@acme.example; adkim=r; aspf=r");

  auto ver = OfPurpose(all, v1::DNS_RECORD_PURPOSE_VERIFICATION);
  ASSERT_EQ(ver.size(), 1u);
  EXPECT_EQ(ver[0].name(), "_mailgrid-verification.acme.example");
  EXPECT_EQ(ver[0].value(), "mailgrid-verification=tok123");
  EXPECT_TRUE(ver[0].required_for_verification());

  for (auto [purpose, label] :
       {std::pair{v1::DNS_RECORD_PURPOSE_CNAME_MAIL, "mail."},
        std::pair{v1::DNS_RECORD_PURPOSE_CNAME_AUTOCONFIG, "autoconfig."},
        std::pair{v1::DNS_RECORD_PURPOSE_CNAME_AUTODISCOVER, "autodiscover."}}) {
    auto c = OfPurpose(all, purpose);
    ASSERT_EQ(c.size(), 1u) << label;
    EXPECT_EQ(c[0].name(), std::string(label) + "acme.example");
    EXPECT_EQ(c[0].type(), v1::DNS_RECORD_TYPE_CNAME);
    EXPECT_EQ(c[0].value(), "mail.mailgrid.example");
  }
  for (const auto& r : all) {
    EXPECT_EQ(r.check().status(), v1::RECORD_CHECK_STATUS_UNCHECKED);
    EXPECT_GT(r.ttl(), 0u);
  }
}

TEST(DnsRecordsTest, RecordIdsAreDistinct) {
  auto all = GenerateRecords("acme.example", Config(), "t", {}, "a@acme.example");
  std::set<std::string> ids;
  for (const auto& r : all) EXPECT_TRUE(ids.insert(RecordId(r)).second) << RecordId(r);
}

TEST(DnsRecordsTest, VerificationTokensAreRandom) {
  std::string a = NewVerificationToken(), b = NewVerificationToken();
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace mailgrid::tenant
