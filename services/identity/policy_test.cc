#include "services/identity/policy.h"

#include "gtest/gtest.h"
#include "services/identity/errors.h"

namespace mailgrid::identity {
namespace {

std::string Reason(const absl::Status& s) {
  auto d = ErrorDetailOf(s);
  return d ? d->reason() : "";
}

TEST(Policy, DefaultsFollowNist) {
  v1::PasswordPolicy p;
  auto common = CommonPasswords::Builtin();
  EXPECT_GT(common.size(), 100u);
  EXPECT_EQ(EffectiveMinLength(p), 12u);
  EXPECT_TRUE(CheckNewPassword(p, "violet-kettle-orbit", common, "new_password").ok());
  EXPECT_EQ(Reason(CheckNewPassword(p, "short", common, "new_password")), "TOO_SHORT");
  EXPECT_EQ(Reason(CheckNewPassword(p, "password1234", common, "new_password")), "TOO_COMMON");
  EXPECT_EQ(Reason(CheckNewPassword(p, "Password2026!!", common, "new_password")), "TOO_COMMON");
  EXPECT_EQ(Reason(CheckNewPassword(p, "QwertyUiop123", common, "new_password")), "TOO_COMMON");
  EXPECT_EQ(Reason(CheckNewPassword(p, "aaaaaaaaaaaaaaa", common, "new_password")), "TOO_COMMON");
  EXPECT_EQ(Reason(CheckNewPassword(p, "123412341234123", common, "new_password")), "TOO_COMMON");
  EXPECT_EQ(
      Reason(CheckNewPassword(p, std::string("abc\xff\xfe defghijkl"), common, "new_password")),
      "NOT_UTF8");
  EXPECT_EQ(Reason(CheckNewPassword(p, std::string(2000, 'x') + "y", common, "new_password")),
            "TOO_LONG");
  auto s = CheckNewPassword(p, "short", common, "entries[3].password");
  EXPECT_EQ(ErrorDetailOf(s)->field(), "entries[3].password");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

TEST(Policy, LengthCountsCharactersNotBytes) {
  v1::PasswordPolicy p;
  p.set_min_length(8);
  auto common = CommonPasswords::Builtin();
  // 7 CJK characters: 21 bytes, still too short.
  EXPECT_EQ(Reason(CheckNewPassword(p,
                                    "\xe5\xaf\x86\xe7\xa0\x81\xe5\xae\x89\xe5\x85\xa8\xe9\x95\xbf"
                                    "\xe5\xba\xa6\xe5\xa5\xbd",
                                    common, "new_password")),
            "TOO_SHORT");
  EXPECT_TRUE(CheckNewPassword(p,
                               "\xe5\xaf\x86\xe7\xa0\x81\xe5\xae\x89\xe5\x85\xa8\xe9\x95\xbf"
                               "\xe5\xba\xa6\xe5\xa5\xbd\xe5\x90\x97",
                               common, "new_password")
                  .ok());
  p.set_allow_common_passwords(true);
  EXPECT_TRUE(CheckNewPassword(p, "password1234", common, "new_password").ok());
}

TEST(Policy, Utf8Validation) {
  EXPECT_TRUE(IsUtf8("plain ascii"));
  EXPECT_TRUE(IsUtf8("\xc3\xa9t\xc3\xa9"));
  EXPECT_FALSE(IsUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsUtf8("\xe2\x82"));          // truncated
  EXPECT_FALSE(IsUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_EQ(CodePoints("\xc3\xa9t\xc3\xa9"), 3u);
  EXPECT_EQ(Reason(CheckPresentedPassword("\xff", "password")), "NOT_UTF8");
}

TEST(Policy, ValidatesAdminInput) {
  v1::PasswordPolicy p;
  EXPECT_TRUE(ValidatePolicy(p).ok());
  p.set_min_length(6);
  EXPECT_FALSE(ValidatePolicy(p).ok());
  p.set_min_length(12);
  p.set_history_count(25);
  EXPECT_FALSE(ValidatePolicy(p).ok());
  p.set_history_count(5);
  p.set_max_password_age_days(4000);
  EXPECT_FALSE(ValidatePolicy(p).ok());
}

}  // namespace
}  // namespace mailgrid::identity
