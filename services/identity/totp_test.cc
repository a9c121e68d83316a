#include "services/identity/totp.h"

#include "gtest/gtest.h"

namespace mailgrid::identity {
namespace {

// RFC 4226 Appendix D: HOTP with the ASCII key "12345678901234567890".
TEST(Hotp, Rfc4226Vectors) {
  const std::string key = "12345678901234567890";
  const char* expected[] = {"755224", "287082", "359152", "969429", "338314",
                            "254676", "287922", "162583", "399871", "520489"};
  for (uint64_t i = 0; i < 10; ++i) EXPECT_EQ(Hotp(key, i), expected[i]) << i;
}

// RFC 6238 Appendix B (SHA-1 rows, 8 digits).
TEST(Totp, Rfc6238Vectors) {
  const std::string key = "12345678901234567890";
  struct {
    int64_t t;
    const char* code;
  } rows[] = {{59, "94287082"},         {1111111109, "07081804"}, {1111111111, "14050471"},
              {1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000, "65353130"}};
  for (const auto& row : rows)
    EXPECT_EQ(Totp(key, absl::FromUnixSeconds(row.t), 8), row.code) << row.t;
}

TEST(Totp, AcceptsOneStepEitherSideOnce) {
  const std::string key = "12345678901234567890";
  absl::Time now = absl::FromUnixSeconds(1111111111);
  int64_t step = TotpStep(now);
  std::string previous = Hotp(key, step - 1), current = Hotp(key, step), next = Hotp(key, step + 1);
  EXPECT_EQ(MatchTotp(key, previous, now, 0), step - 1);
  EXPECT_EQ(MatchTotp(key, next, now, 0), step + 1);
  EXPECT_FALSE(MatchTotp(key, Hotp(key, step - 2), now, 0).has_value());
  EXPECT_FALSE(MatchTotp(key, Hotp(key, step + 2), now, 0).has_value());
  // Replay: once `current` was used, it (and older codes) are refused.
  EXPECT_FALSE(MatchTotp(key, current, now, step).has_value());
  EXPECT_TRUE(IsReplay(key, current, now, step));
  EXPECT_FALSE(MatchTotp(key, previous, now, step).has_value());
  EXPECT_EQ(MatchTotp(key, next, now, step), step + 1);
}

TEST(Totp, RefusesMalformedCodes) {
  const std::string key = "12345678901234567890";
  absl::Time now = absl::FromUnixSeconds(1111111111);
  EXPECT_FALSE(IsSixDigits("12a456"));
  EXPECT_FALSE(IsSixDigits("12345"));
  EXPECT_FALSE(IsSixDigits("1234567"));
  EXPECT_TRUE(IsSixDigits("012345"));
  EXPECT_FALSE(MatchTotp(key, "abcdef", now, 0).has_value());
  EXPECT_FALSE(MatchTotp(key, "", now, 0).has_value());
}

// RFC 4648 §10 test vectors (unpadded).
TEST(Base32, Rfc4648Vectors) {
  EXPECT_EQ(Base32Encode(""), "");
  EXPECT_EQ(Base32Encode("f"), "MY");
  EXPECT_EQ(Base32Encode("fo"), "MZXQ");
  EXPECT_EQ(Base32Encode("foo"), "MZXW6");
  EXPECT_EQ(Base32Encode("foob"), "MZXW6YQ");
  EXPECT_EQ(Base32Encode("fooba"), "MZXW6YTB");
  EXPECT_EQ(Base32Encode("foobar"), "MZXW6YTBOI");
  EXPECT_EQ(*Base32Decode("MZXW6YTBOI======"), "foobar");
  EXPECT_EQ(*Base32Decode("mzxw 6ytb oi"), "foobar");
  EXPECT_FALSE(Base32Decode("MZ1W").ok());
}

TEST(Otpauth, UriNamesIssuerAndAccount) {
  EXPECT_EQ(OtpauthUri("mailgrid", "ann@example.com", "JBSWY3DPEHPK3PXP"),
            "otpauth://totp/mailgrid:ann%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=mailgrid"
            "&algorithm=SHA1&digits=6&period=30");
}

}  // namespace
}  // namespace mailgrid::identity
