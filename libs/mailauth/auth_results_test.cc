#include "libs/mailauth/auth_results.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "libs/mail/header.h"
#include "libs/mailauth/test_keys.h"

namespace mailgrid::mailauth {
namespace {

TEST(AuthResults, RendersEachMethod) {
  AuthVerdicts v;
  v.spf.result = SpfResult::kPass;
  v.spf.sender = "alice@example.com";
  v.spf.mechanism = "ip4:192.0.2.0/24";
  v.helo = "mx.example.com";
  DkimVerdict d;
  d.result = DkimResult::kPass;
  d.domain = "example.com";
  d.selector = "mg1";
  d.algorithm = "ed25519-sha256";
  d.b_prefix = "abcd+/EF";
  v.dkim.push_back(d);
  v.dmarc.result = DmarcResult::kPass;
  v.dmarc.record_domain = "example.com";
  v.dmarc.from_domain = "example.com";
  v.dmarc.policy = DmarcPolicy::kReject;
  std::string h = RenderAuthenticationResults("mx.mailgrid.test", v);
  EXPECT_EQ(h,
            "Authentication-Results: mx.mailgrid.test;\r\n"
            "\tspf=pass (matched ip4:192.0.2.0/24) smtp.mailfrom=alice@example.com;\r\n"
            "\tdkim=pass header.d=example.com header.s=mg1 header.a=ed25519-sha256 "
            "header.b=\"abcd+/EF\";\r\n"
            "\tdmarc=pass (p=reject dis=NONE) header.from=example.com\r\n");
  // It parses as one header field.
  auto parsed = mail::ParseHeader(h + "\r\n");
  ASSERT_TRUE(parsed.ok());
  ASSERT_EQ(parsed->fields.size(), 1u);
  EXPECT_TRUE(AuthResultsClaims(parsed->fields[0].value, "MX.mailgrid.test"));
}

TEST(AuthResults, HostileTextNeverBreaksTheHeader) {
  AuthVerdicts v;
  v.spf.result = SpfResult::kPermError;
  v.spf.reason = "bad\r\nX-Injected: yes (oops)";
  v.spf.sender = "\"evil\r\nX-Bad: 1\"@example.com";
  v.dmarc.result = DmarcResult::kNone;
  v.dmarc.reason = "no DMARC record";
  std::string h = RenderAuthenticationResults("mx", v);
  EXPECT_FALSE(absl::StrContains(h, "\r\nX-"));
  auto parsed = mail::ParseHeader(h + "\r\n");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->fields.size(), 1u);
  EXPECT_TRUE(absl::StrContains(h, "dkim=none;"));
  EXPECT_TRUE(absl::StrContains(h, "(badX-Injected: yes \\(oops\\))"));
}

TEST(AuthResults, Claims) {
  EXPECT_TRUE(AuthResultsClaims(" (comment) mx.mailgrid.test; spf=pass", "mx.mailgrid.test"));
  EXPECT_TRUE(AuthResultsClaims("mx.mailgrid.test 1; none", "mx.mailgrid.test"));
  EXPECT_FALSE(AuthResultsClaims("mx.mailgrid.test.evil; spf=pass", "mx.mailgrid.test"));
  EXPECT_FALSE(AuthResultsClaims("", "mx.mailgrid.test"));
}

TEST(CheckInboundTest, SignedMailFromAnAllowedHostPasses) {
  auto key = testing::MakeKey(true);
  auto pk = DkimPrivateKey::FromPem(key.private_pem);
  ASSERT_TRUE(pk.ok());
  std::string msg =
      "From: Alice <alice@example.com>\r\nTo: bob@mailgrid.test\r\nSubject: hi\r\n\r\nhello\r\n";
  DkimSignOptions so;
  so.domain = "example.com";
  so.selector = "s1";
  auto sig = DkimSign(msg, *pk, so);
  ASSERT_TRUE(sig.ok());
  std::string signed_msg = *sig + msg;

  MemoryResolver dns;
  dns.AddTxt("example.com", "v=spf1 ip4:192.0.2.0/24 -all");
  dns.AddTxt("s1._domainkey.example.com", key.txt);
  dns.AddTxt("_dmarc.example.com", "v=DMARC1; p=reject");
  InboundRequest r;
  r.message = signed_msg;
  r.client_ip = *IpAddress::Parse("192.0.2.9");
  r.helo = "mail.example.com";
  r.mail_from = "alice@example.com";
  r.receiver = "mx.mailgrid.test";
  auto res = CheckInbound(r, dns);
  EXPECT_EQ(res.verdicts.spf.result, SpfResult::kPass);
  ASSERT_EQ(res.verdicts.dkim.size(), 1u);
  EXPECT_EQ(res.verdicts.dkim[0].result, DkimResult::kPass);
  EXPECT_EQ(res.verdicts.dmarc.result, DmarcResult::kPass);
  EXPECT_EQ(res.disposition, DmarcPolicy::kNone);
  EXPECT_TRUE(absl::StrContains(res.header, "spf=pass")) << res.header;
  EXPECT_TRUE(absl::StrContains(res.header, "dmarc=pass")) << res.header;

  // A forged copy from elsewhere with the body changed: SPF and DKIM fail, reject.
  std::string forged = signed_msg.substr(0, signed_msg.size() - 7) + "pay me\r\n";
  r.message = forged;
  r.client_ip = *IpAddress::Parse("198.51.100.66");
  auto bad = CheckInbound(r, dns);
  EXPECT_EQ(bad.verdicts.spf.result, SpfResult::kFail);
  EXPECT_EQ(bad.verdicts.dkim[0].result, DkimResult::kFail);
  EXPECT_EQ(bad.verdicts.dmarc.result, DmarcResult::kFail);
  EXPECT_EQ(bad.disposition, DmarcPolicy::kReject);
  EXPECT_TRUE(
      absl::StrContains(bad.header, "dmarc=fail (p=reject dis=REJECT) header.from=example.com"))
      << bad.header;
}

}  // namespace
}  // namespace mailgrid::mailauth
