#include "libs/auth/service_token.h"

#include "gtest/gtest.h"
#include "libs/auth/key_id.h"

namespace mailgrid::auth {
namespace {

TEST(ServiceTokenSource, MintsServiceTokensTheVerifierAccepts) {
  auto key = TokenSigner::Generate("unused");
  ASSERT_TRUE(key.ok()) << key.status();
  auto private_pem = (*key)->PrivatePem();
  auto public_pem = (*key)->PublicPem();
  ASSERT_TRUE(private_pem.ok() && public_pem.ok());

  auto source = ServiceTokenSource::FromPem(*private_pem, "relayd");
  ASSERT_TRUE(source.ok()) << source.status();
  auto token = (*source)->Token();
  ASSERT_TRUE(token.ok()) << token.status();

  TokenVerifier verifier(kDefaultTokenIssuer);
  auto kid = KeyIdOfPublicPem(*public_pem);
  ASSERT_TRUE(kid.ok());
  ASSERT_TRUE(verifier.AddPublicPem(*kid, *public_pem).ok());
  auto claims = verifier.Verify(*token);
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->service, "relayd");
  EXPECT_EQ(claims->subject, "relayd");
  EXPECT_TRUE(claims->HasRole(kRoleService));
  EXPECT_TRUE(claims->tenant_id.empty());

  // Cached: the same token until it nears expiry.
  EXPECT_EQ(*(*source)->Token(), *token);
  auto header = (*source)->AuthorizationHeader();
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(*header, "Bearer " + *token);
}

TEST(ServiceTokenSource, RefusesBadKeysAndNames) {
  EXPECT_FALSE(ServiceTokenSource::FromPem("not a pem", "relayd").ok());
  auto key = TokenSigner::Generate("unused");
  ASSERT_TRUE(key.ok());
  EXPECT_FALSE(ServiceTokenSource::FromPem(*(*key)->PrivatePem(), "").ok());
  EXPECT_EQ(ServiceTokenSource::FromPemFile("/nonexistent/key.pem", "relayd").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace mailgrid::auth
