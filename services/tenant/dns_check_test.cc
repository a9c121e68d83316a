#include "services/tenant/dns_check.h"

#include "gtest/gtest.h"
#include "services/tenant/dns_records.h"

namespace mailgrid::tenant {
namespace {

v1::DnsRecord Want(v1::DnsRecordPurpose purpose, v1::DnsRecordType type, std::string name,
                   std::string value, uint32_t priority = 0) {
  v1::DnsRecord r;
  r.set_purpose(purpose);
  r.set_type(type);
  r.set_name(std::move(name));
  r.set_value(std::move(value));
  r.set_priority(priority);
  return r;
}

LookupResult Found(std::vector<std::string> values) {
  LookupResult r;
  r.kind = LookupResult::Kind::kFound;
  r.values = std::move(values);
  return r;
}

const absl::Time kNow = absl::FromUnixSeconds(1800000000);

TEST(EvaluateTest, Mx) {
  auto want =
      Want(v1::DNS_RECORD_PURPOSE_MX, v1::DNS_RECORD_TYPE_MX, "a.example", "mx.mg.example", 10);
  EXPECT_EQ(Evaluate(want, Found({"10 mx.mg.example"}), kNow).status(), v1::RECORD_CHECK_STATUS_OK);
  auto other_prio = Evaluate(want, Found({"5 MX.mg.example"}), kNow);
  EXPECT_EQ(other_prio.status(), v1::RECORD_CHECK_STATUS_OK);
  EXPECT_NE(other_prio.detail().find("priority 5"), std::string::npos);
  auto wrong = Evaluate(want, Found({"10 mx.elsewhere.example"}), kNow);
  EXPECT_EQ(wrong.status(), v1::RECORD_CHECK_STATUS_WRONG);
  ASSERT_EQ(wrong.found_size(), 1);
  EXPECT_EQ(wrong.found(0), "10 mx.elsewhere.example");
  LookupResult none;
  none.kind = LookupResult::Kind::kNoData;
  EXPECT_EQ(Evaluate(want, none, kNow).status(), v1::RECORD_CHECK_STATUS_MISSING);
  LookupResult failed;
  failed.kind = LookupResult::Kind::kFailed;
  failed.error = "Timeout while contacting DNS servers";
  auto f = Evaluate(want, failed, kNow);
  EXPECT_EQ(f.status(), v1::RECORD_CHECK_STATUS_LOOKUP_FAILED);
  EXPECT_NE(f.detail().find("Timeout"), std::string::npos);
  EXPECT_EQ(f.checked_at().seconds(), 1800000000);
}

TEST(EvaluateTest, Spf) {
  auto want = Want(v1::DNS_RECORD_PURPOSE_SPF, v1::DNS_RECORD_TYPE_TXT, "a.example",
                   "v=spf1 mx include:_spf.mg.example ~all");
  EXPECT_EQ(
      Evaluate(want,
               Found({"google-site-verification=x", "v=spf1 mx include:_spf.mg.example -all"}),
               kNow)
          .status(),
      v1::RECORD_CHECK_STATUS_OK);
  EXPECT_EQ(Evaluate(want, Found({"v=spf1 include:other.example ~all"}), kNow).status(),
            v1::RECORD_CHECK_STATUS_WRONG);
  EXPECT_EQ(Evaluate(want, Found({"v=spf1 a ~all", "v=spf1 include:_spf.mg.example ~all"}), kNow)
                .status(),
            v1::RECORD_CHECK_STATUS_WRONG);
  EXPECT_EQ(Evaluate(want, Found({"something else"}), kNow).status(),
            v1::RECORD_CHECK_STATUS_MISSING);
}

TEST(EvaluateTest, DkimComparesTheKeyIgnoringSpaces) {
  auto want = Want(v1::DNS_RECORD_PURPOSE_DKIM, v1::DNS_RECORD_TYPE_TXT, "s._domainkey.a.example",
                   "v=DKIM1; k=ed25519; p=ABCDEF==");
  EXPECT_EQ(Evaluate(want, Found({"v=DKIM1;k=ed25519;p=ABC DEF=="}), kNow).status(),
            v1::RECORD_CHECK_STATUS_OK);
  EXPECT_EQ(Evaluate(want, Found({"v=DKIM1; k=ed25519; p=OTHER"}), kNow).status(),
            v1::RECORD_CHECK_STATUS_WRONG);
}

TEST(EvaluateTest, Dmarc) {
  auto want = Want(v1::DNS_RECORD_PURPOSE_DMARC, v1::DNS_RECORD_TYPE_TXT, "_dmarc.a.example",
                   "v=DMARC1; p=quarantine; rua=mailto:x@a.example");
  EXPECT_EQ(Evaluate(want, Found({"v=DMARC1; p=quarantine"}), kNow).status(),
            v1::RECORD_CHECK_STATUS_OK);
  EXPECT_EQ(Evaluate(want, Found({"v=DMARC1; p=reject"}), kNow).status(),
            v1::RECORD_CHECK_STATUS_OK);
  EXPECT_EQ(Evaluate(want, Found({"v=DMARC1; p=none"}), kNow).status(),
            v1::RECORD_CHECK_STATUS_WRONG);
  EXPECT_EQ(Evaluate(want, Found({"v=DMARC1"}), kNow).status(), v1::RECORD_CHECK_STATUS_WRONG);
}

TEST(EvaluateTest, VerificationAndCname) {
  auto ver = Want(v1::DNS_RECORD_PURPOSE_VERIFICATION, v1::DNS_RECORD_TYPE_TXT,
                  "_mailgrid-verification.a.example", "mailgrid-verification=tok");
  EXPECT_EQ(Evaluate(ver, Found({"mailgrid-verification=tok"}), kNow).status(),
            v1::RECORD_CHECK_STATUS_OK);
  EXPECT_EQ(Evaluate(ver, Found({"mailgrid-verification=other"}), kNow).status(),
            v1::RECORD_CHECK_STATUS_WRONG);
  auto cname = Want(v1::DNS_RECORD_PURPOSE_CNAME_MAIL, v1::DNS_RECORD_TYPE_CNAME, "mail.a.example",
                    "mail.mg.example");
  EXPECT_EQ(Evaluate(cname, Found({"MAIL.mg.example"}), kNow).status(), v1::RECORD_CHECK_STATUS_OK);
  EXPECT_EQ(Evaluate(cname, Found({"elsewhere.example"}), kNow).status(),
            v1::RECORD_CHECK_STATUS_WRONG);
}

TEST(QueriesTest, OneQueryPerNameAndType) {
  RecordConfig c;
  c.mx_hosts = {{"mx1.mg.example", 10}, {"mx2.mg.example", 20}};
  c.cluster_hostname = "mg.example";
  c.spf_include = "_spf.mg.example";
  auto records = GenerateRecords("a.example", c, "t", {}, "");
  auto q = QueriesFor(records);
  // MX + TXT at the apex, _dmarc TXT, verification TXT, three CNAMEs.
  EXPECT_EQ(q.size(), 7u);
}

TEST(CaresResolverTest, UnreachableResolverIsUnavailable) {
  // Port 9 on loopback (discard) has no DNS server: refused or timed out.
  CaresResolver r("127.0.0.1:9", absl::Milliseconds(400));
  auto got = r.LookupAll(
      {{"example.com", v1::DNS_RECORD_TYPE_MX}, {"example.com", v1::DNS_RECORD_TYPE_TXT}});
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
}

}  // namespace
}  // namespace mailgrid::tenant
