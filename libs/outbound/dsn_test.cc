#include "libs/outbound/dsn.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "libs/outbound/test_util.h"
#include "libs/outbound/time_util.h"

namespace mailgrid::outbound {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1800000000);

QueueEntry Entry(std::string from) {
  QueueEntry e;
  e.set_queue_id("00000000000000aa12345678");
  e.set_tenant_id("t1");
  e.set_envelope_from(std::move(from));
  ToProto(kT0, e.mutable_created_at());
  ToProto(kT0 + absl::Hours(120), e.mutable_expires_at());
  return e;
}

QueueRecipient Bounced() {
  QueueRecipient r;
  r.set_address("bob@dest.test");
  r.set_state(relay::v1::RECIPIENT_STATE_BOUNCED);
  r.mutable_last_reply()->set_code(550);
  r.mutable_last_reply()->set_enhanced_code("5.1.1");
  r.mutable_last_reply()->set_text("no such user\r\nInjected: header");
  r.mutable_last_reply()->set_remote_host("mx.dest.test [127.0.0.1]");
  ToProto(kT0 + absl::Minutes(1), r.mutable_last_attempt_at());
  return r;
}

TEST(Dsn, FailureIsMultipartReportWithHeadersOnly) {
  auto dsn = MakeDsn(Entry("alice@example.org"), {Bounced()}, testing::kMessage, DsnKind::kFailure,
                     "relay.mailgrid.test", kT0 + absl::Minutes(2));
  ASSERT_TRUE(dsn.has_value());
  EXPECT_EQ(dsn->envelope_from, "");  // null sender: never bounced again
  EXPECT_EQ(dsn->recipients, std::vector<std::string>{"alice@example.org"});
  const std::string& m = dsn->body;
  EXPECT_TRUE(absl::StrContains(m, "Content-Type: multipart/report; report-type=delivery-status;"));
  EXPECT_TRUE(absl::StrContains(m, "Content-Type: message/delivery-status\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "Content-Type: text/rfc822-headers\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "Reporting-MTA: dns; relay.mailgrid.test\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "Final-Recipient: rfc822; bob@dest.test\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "Action: failed\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "Status: 5.1.1\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "Remote-MTA: dns; mx.dest.test [127.0.0.1]\r\n"));
  EXPECT_TRUE(
      absl::StrContains(m, "Diagnostic-Code: smtp; 550 5.1.1 no such user  Injected: header\r\n"));
  EXPECT_FALSE(absl::StrContains(m, "\r\nInjected: header"));
  EXPECT_TRUE(absl::StrContains(m, "Subject: hello there\r\n"));  // original header quoted
  EXPECT_FALSE(absl::StrContains(m, "Body line one."));           // never the body
  EXPECT_TRUE(absl::StrContains(m, "Subject: Undelivered Mail Returned to Sender\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "Auto-Submitted: auto-replied\r\n"));
  // Every boundary that opens is closed.
  size_t b = m.find("boundary=\"");
  ASSERT_NE(b, std::string::npos);
  std::string boundary = m.substr(b + 10, m.find('"', b + 10) - b - 10);
  EXPECT_TRUE(absl::StrContains(m, "\r\n--" + boundary + "--\r\n"));
  // No bare LF anywhere.
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\n') {
      ASSERT_TRUE(i > 0 && m[i - 1] == '\r') << "bare LF at " << i;
    }
  }
}

TEST(Dsn, DelayWarningSaysDelayedAndUntilWhen) {
  QueueRecipient r = Bounced();
  r.set_state(relay::v1::RECIPIENT_STATE_DEFERRED);
  r.mutable_last_reply()->set_code(451);
  r.mutable_last_reply()->set_enhanced_code("4.3.0");
  auto dsn = MakeDsn(Entry("alice@example.org"), {r}, testing::kMessage, DsnKind::kDelay,
                     "relay.mailgrid.test", kT0 + absl::Hours(4));
  ASSERT_TRUE(dsn.has_value());
  EXPECT_TRUE(absl::StrContains(dsn->body, "Action: delayed\r\n"));
  EXPECT_TRUE(absl::StrContains(dsn->body, "Status: 4.3.0\r\n"));
  EXPECT_TRUE(absl::StrContains(dsn->body, "Will-Retry-Until: "));
  EXPECT_TRUE(absl::StrContains(dsn->body, "THIS IS A WARNING ONLY"));
}

TEST(Dsn, NeverBounceABounce) {
  EXPECT_FALSE(MakeDsn(Entry(""), {Bounced()}, testing::kMessage, DsnKind::kFailure, "h", kT0));
  EXPECT_FALSE(MakeDsn(Entry("a@b.test"), {}, testing::kMessage, DsnKind::kFailure, "h", kT0));
}

TEST(Dsn, StatusOf) {
  SmtpReply r;
  EXPECT_EQ(DsnStatusOf(r, DsnKind::kFailure), "4.4.7");
  EXPECT_EQ(DsnStatusOf(r, DsnKind::kDelay), "4.4.1");
  r.set_code(554);
  EXPECT_EQ(DsnStatusOf(r, DsnKind::kFailure), "5.0.0");
  r.set_enhanced_code("5.7.1");
  EXPECT_EQ(DsnStatusOf(r, DsnKind::kFailure), "5.7.1");
}

TEST(Dsn, OriginalHeadersStopsAtBlankLineAndNormalizesLf) {
  EXPECT_EQ(OriginalHeaders("A: 1\nB: 2\n\tcont\n\nbody\n"), "A: 1\r\nB: 2\r\n\tcont\r\n");
  EXPECT_EQ(OriginalHeaders("A: 1"), "A: 1\r\n");
}

}  // namespace
}  // namespace mailgrid::outbound
