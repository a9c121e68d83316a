// Key roles: a verifier configured with a separate service-token key pair
// (the chart's secrets.serviceTokenKey) must not let the holder of the
// service key (relayd, accessd, tenantd) mint a user or operator token, and
// a single shared key must keep working for everything (local launcher).
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "libs/auth/key_id.h"
#include "libs/auth/service_token.h"
#include "libs/auth/token.h"

namespace mailgrid::auth {
namespace {

struct KeyPair {
  std::string private_pem, public_pem, kid, public_file;
  std::unique_ptr<TokenSigner> signer;
};

KeyPair MakeKey(const std::string& name) {
  KeyPair k;
  auto generated = TokenSigner::Generate("unused");
  EXPECT_TRUE(generated.ok());
  k.private_pem = *(*generated)->PrivatePem();
  k.public_pem = *(*generated)->PublicPem();
  k.kid = *KeyIdOfPublicPem(k.public_pem);
  k.signer = *TokenSigner::FromPrivatePem(k.kid, k.private_pem);
  k.public_file = ::testing::TempDir() + "/key_use_test_" + name + ".pem";
  std::ofstream(k.public_file) << k.public_pem;
  return k;
}

Claims Operator() {
  Claims c;
  c.issuer = kDefaultTokenIssuer;
  c.subject = "u-op";
  c.roles = {kRolePlatformOperator};
  c.issued_at = absl::Now();
  c.expires_at = c.issued_at + absl::Minutes(5);
  return c;
}

Claims UserOf(const std::string& tenant) {
  Claims c = Operator();
  c.subject = "u-alice";
  c.tenant_id = tenant;
  c.roles = {kRoleUser};
  c.mailbox_ids = {"mbx-1"};
  return c;
}

std::string ServiceToken(const KeyPair& key, const std::string& name) {
  auto source = ServiceTokenSource::FromPem(key.private_pem, name);
  EXPECT_TRUE(source.ok()) << source.status();
  return *(*source)->Token();
}

TEST(KeyUseTest, ParsesPrefixes) {
  EXPECT_EQ(ParseTokenKeySpec("/k.pem")->use, KeyUse::kAny);
  EXPECT_EQ(ParseTokenKeySpec("/k.pem")->path, "/k.pem");
  EXPECT_EQ(ParseTokenKeySpec("service:/s.pem")->use, KeyUse::kServiceOnly);
  EXPECT_EQ(ParseTokenKeySpec("service:/s.pem")->path, "/s.pem");
  EXPECT_EQ(ParseTokenKeySpec("user:/u.pem")->use, KeyUse::kUserOnly);
  EXPECT_EQ(ParseTokenKeySpec("user:/u.pem")->path, "/u.pem");
  EXPECT_FALSE(ParseTokenKeySpec("service:").ok());
  EXPECT_FALSE(ParseTokenKeySpec("").ok());
}

TEST(KeyUseTest, OneSharedKeySignsEverythingAsBefore) {
  KeyPair shared = MakeKey("shared");
  auto verifier = VerifierFromPemFiles(kDefaultTokenIssuer, {shared.public_file});
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  EXPECT_TRUE((*verifier)->Verify(*shared.signer->Sign(Operator())).ok());
  EXPECT_TRUE((*verifier)->Verify(*shared.signer->Sign(UserOf("t-1"))).ok());
  auto service = (*verifier)->Verify(ServiceToken(shared, "relayd"));
  ASSERT_TRUE(service.ok()) << service.status();
  EXPECT_EQ(service->service, "relayd");
}

TEST(KeyUseTest, ServiceKeySignsOnlyServiceTokens) {
  KeyPair user = MakeKey("user");
  KeyPair service = MakeKey("service");
  auto verifier = VerifierFromPemFiles(kDefaultTokenIssuer,
                                       {user.public_file, "service:" + service.public_file});
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  TokenVerifier& v = **verifier;

  // What identityd signs with the user key still verifies (its own service
  // tokens included: the plain entry stays kAny).
  EXPECT_TRUE(v.Verify(*user.signer->Sign(Operator())).ok());
  EXPECT_TRUE(v.Verify(*user.signer->Sign(UserOf("t-1"))).ok());
  EXPECT_TRUE(v.Verify(ServiceToken(user, "identityd")).ok());

  // relayd's service tokens verify with the service key...
  auto relayd = v.Verify(ServiceToken(service, "relayd"));
  ASSERT_TRUE(relayd.ok()) << relayd.status();
  EXPECT_EQ(relayd->roles, std::vector<std::string>{kRoleService});

  // ...but a compromised relayd cannot mint anything else with it.
  auto forged_operator = v.Verify(*service.signer->Sign(Operator()));
  EXPECT_EQ(forged_operator.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(forged_operator.status().message().find("only service tokens"), std::string::npos)
      << forged_operator.status();
  EXPECT_FALSE(v.Verify(*service.signer->Sign(UserOf("t-1"))).ok());
  Claims service_plus = Operator();  // "service" plus a human role
  service_plus.roles = {kRoleService, kRolePlatformOperator};
  service_plus.service = "relayd";
  EXPECT_FALSE(v.Verify(*service.signer->Sign(service_plus)).ok());
  Claims service_in_tenant = UserOf("t-1");  // "service" acting inside a tenant
  service_in_tenant.roles = {kRoleService};
  service_in_tenant.mailbox_ids.clear();
  service_in_tenant.service = "relayd";
  EXPECT_FALSE(v.Verify(*service.signer->Sign(service_in_tenant)).ok());
  Claims anonymous_service = Operator();  // no svc name
  anonymous_service.roles = {kRoleService};
  EXPECT_FALSE(v.Verify(*service.signer->Sign(anonymous_service)).ok());
  // Refused tokens are not cached as valid: asking again still refuses.
  EXPECT_FALSE(v.Verify(*service.signer->Sign(Operator())).ok());
}

TEST(KeyUseTest, UserOnlyKeyRefusesServiceTokens) {
  KeyPair user = MakeKey("user_only");
  KeyPair service = MakeKey("service_only");
  auto verifier = VerifierFromPemFiles(
      kDefaultTokenIssuer, {"user:" + user.public_file, "service:" + service.public_file});
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  EXPECT_TRUE((*verifier)->Verify(*user.signer->Sign(UserOf("t-1"))).ok());
  EXPECT_TRUE((*verifier)->Verify(ServiceToken(service, "accessd")).ok());
  auto status = (*verifier)->Verify(ServiceToken(user, "identityd")).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(status.message().find("user-token key"), std::string::npos) << status;
}

TEST(KeyUseTest, SameKeyWithTwoUsesIsAConfigurationError) {
  KeyPair key = MakeKey("twice");
  auto verifier =
      VerifierFromPemFiles(kDefaultTokenIssuer, {key.public_file, "service:" + key.public_file});
  ASSERT_FALSE(verifier.ok());
  EXPECT_NE(verifier.status().message().find("listed as any and as service"), std::string::npos)
      << verifier.status();
  // Listing the same key twice with the same use is harmless.
  EXPECT_TRUE(VerifierFromPemFiles(kDefaultTokenIssuer, {key.public_file, key.public_file}).ok());
  EXPECT_FALSE(VerifierFromPemFiles(kDefaultTokenIssuer, {"service:/nonexistent.pem"}).ok());
}

}  // namespace
}  // namespace mailgrid::auth
