#include "services/identity/notices.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace mailgrid::identity {
namespace {

tenant::v1::User Alice() {
  tenant::v1::User u;
  u.set_tenant_id("t-1");
  u.set_user_id("u-1");
  u.set_address("alice@acme.test");
  u.set_recovery_email("alice.home@example.org");
  return u;
}

TEST(ResetNoticeTest, CarriesTheTokenToTheRecoveryAddressFromTheUsersDomain) {
  std::string m = ResetNoticeMessage(Alice(), "tok-123", absl::Minutes(30), absl::UnixEpoch());
  EXPECT_TRUE(absl::StartsWith(m, "From: Password reset <no-reply@acme.test>\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\nTo: <alice.home@example.org>\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\nSubject: Password reset for alice@acme.test\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\nDate: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\nAuto-Submitted: auto-generated\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\n\r\n"));  // header/body separator
  EXPECT_TRUE(absl::StrContains(m, "Reset token: tok-123\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "for 30 minutes"));
  // Every line ends CRLF: no bare LF for relayd's smuggling check to refuse.
  for (size_t i = m.find('\n'); i != std::string::npos; i = m.find('\n', i + 1))
    EXPECT_EQ(m[i - 1], '\r') << "bare LF at " << i;
}

TEST(ResetNoticeTest, RelayNoticesRefusesAUserWithoutAUsableRecoveryAddress) {
  auto notices = RelayNotices::Create({"127.0.0.1:1"}, nullptr, rpc::ClientOptions());
  ASSERT_TRUE(notices.ok()) << notices.status();
  tenant::v1::User u = Alice();
  // No signing key: nothing can be sent at all.
  EXPECT_TRUE(absl::IsUnavailable((*notices)->SendPasswordReset(u, "t", absl::Minutes(30))));
  u.set_recovery_email("");
  EXPECT_TRUE(absl::IsFailedPrecondition((*notices)->SendPasswordReset(u, "t", absl::Minutes(30))));
  u.set_recovery_email("x@example.org\r\nBcc: victim@example.org");
  EXPECT_TRUE(absl::IsFailedPrecondition((*notices)->SendPasswordReset(u, "t", absl::Minutes(30))));
}

}  // namespace
}  // namespace mailgrid::identity
