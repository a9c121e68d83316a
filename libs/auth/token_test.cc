#include "libs/auth/token.h"

#include "gtest/gtest.h"
#include "libs/auth/base64url.h"

namespace mailgrid::auth {
namespace {

Claims Alice(absl::Time now) {
  Claims c;
  c.issuer = "mailgrid-identityd";
  c.subject = "u-123";
  c.tenant_id = "t-42";
  c.address = "alice@acme.test";
  c.roles = {kRoleUser, kRoleTenantAdmin};
  c.token_id = "jti-1";
  c.mailbox_ids = {"mbx-1", "mbx-shared"};
  c.scope = "mail";
  c.auth_methods = {"pwd", "otp"};
  c.issued_at = now;
  c.expires_at = now + absl::Minutes(15);
  return c;
}

struct Keys {
  std::unique_ptr<TokenSigner> signer = *TokenSigner::Generate("k1");
  TokenVerifier verifier{"mailgrid-identityd"};
  Keys() { EXPECT_TRUE(verifier.AddPublicPem("k1", *signer->PublicPem()).ok()); }
};

TEST(Base64UrlTest, RoundTripAndStrictness) {
  for (const std::string& s : std::vector<std::string>{"", "f", "fo", "foo", "foob", "fooba", "foobar", std::string("\0\xff\xfe", 3)}) {
    auto back = Base64UrlDecode(Base64UrlEncode(s));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, s);
  }
  EXPECT_EQ(Base64UrlEncode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
  EXPECT_FALSE(Base64UrlDecode("Zm9v=").ok());
  EXPECT_FALSE(Base64UrlDecode("Zm9 v").ok());
  EXPECT_FALSE(Base64UrlDecode("Zh").ok());  // non-canonical trailing bits
}

TEST(TokenTest, SignedTokenVerifiesWithItsClaims) {
  Keys k;
  absl::Time now = absl::FromUnixSeconds(1800000000);
  auto token = k.signer->Sign(Alice(now));
  ASSERT_TRUE(token.ok());
  auto claims = k.verifier.Verify(*token, now + absl::Minutes(1));
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->subject, "u-123");
  EXPECT_EQ(claims->tenant_id, "t-42");
  EXPECT_EQ(claims->address, "alice@acme.test");
  EXPECT_TRUE(claims->HasRole(kRoleTenantAdmin));
  EXPECT_FALSE(claims->HasRole(kRolePlatformOperator));
  EXPECT_EQ(claims->expires_at, now + absl::Minutes(15));
  EXPECT_EQ(claims->mailbox_ids, (std::vector<std::string>{"mbx-1", "mbx-shared"}));
  EXPECT_EQ(claims->scope, "mail");
  EXPECT_EQ(claims->auth_methods, (std::vector<std::string>{"pwd", "otp"}));
}

TEST(TokenTest, ExpiredTokenIsRefusedEvenWhenCached) {
  Keys k;
  absl::Time now = absl::FromUnixSeconds(1800000000);
  std::string token = *k.signer->Sign(Alice(now));
  ASSERT_TRUE(k.verifier.Verify(token, now).ok());
  auto late = k.verifier.Verify(token, now + absl::Minutes(16));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnauthenticated);
}

TEST(TokenTest, TamperedForgedAndForeignTokensAreRefused) {
  Keys k;
  absl::Time now = absl::FromUnixSeconds(1800000000);
  std::string token = *k.signer->Sign(Alice(now));

  // Change the tenant in the payload, keep the signature.
  size_t dot1 = token.find('.'), dot2 = token.rfind('.');
  Claims other = Alice(now);
  other.tenant_id = "t-victim";
  std::string forged_payload = *k.signer->Sign(other);
  std::string spliced = token.substr(0, dot1 + 1) +
                        forged_payload.substr(forged_payload.find('.') + 1, forged_payload.rfind('.') - forged_payload.find('.') - 1) +
                        token.substr(dot2);
  EXPECT_FALSE(k.verifier.Verify(spliced, now).ok());

  // Signed by another key under the same key id.
  auto stranger = *TokenSigner::Generate("k1");
  EXPECT_FALSE(k.verifier.Verify(*stranger->Sign(Alice(now)), now).ok());

  // Wrong issuer.
  Claims wrong = Alice(now);
  wrong.issuer = "someone-else";
  EXPECT_FALSE(k.verifier.Verify(*k.signer->Sign(wrong), now).ok());

  // alg=none and garbage.
  std::string none = Base64UrlEncode(R"({"alg":"none","kid":"k1"})") + "." + token.substr(dot1 + 1, dot2 - dot1 - 1) + ".";
  EXPECT_FALSE(k.verifier.Verify(none, now).ok());
  std::string typed = Base64UrlEncode(R"({"alg":7,"kid":["k1"]})") + "." + token.substr(dot1 + 1);
  EXPECT_FALSE(k.verifier.Verify(typed, now).ok());
  for (const std::string& bad : std::vector<std::string>{"", ".", "..", "a.b.c", "a.b", std::string(10000, 'a'), std::string("x.\0.y", 5)}) {
    EXPECT_EQ(k.verifier.Verify(bad, now).status().code(), absl::StatusCode::kUnauthenticated) << bad.size();
  }
}

TEST(TokenTest, KeysRoundTripThroughPem) {
  auto signer = *TokenSigner::Generate("k2");
  auto again = TokenSigner::FromPrivatePem("k2", *signer->PrivatePem());
  ASSERT_TRUE(again.ok()) << again.status();
  TokenVerifier v("mailgrid-identityd");
  ASSERT_TRUE(v.AddPublicPem("k2", *signer->PublicPem()).ok());
  absl::Time now = absl::Now();
  EXPECT_TRUE(v.Verify(*(*again)->Sign(Alice(now)), now).ok());
  EXPECT_FALSE(TokenSigner::FromPrivatePem("k", "not a pem").ok());
  EXPECT_FALSE(v.AddPublicPem("k", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").ok());
}

}  // namespace
}  // namespace mailgrid::auth
