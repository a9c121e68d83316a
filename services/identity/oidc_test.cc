// OIDC relying party: ID tokens signed in the test by throwaway RSA and
// P-256 keys, verified through Core (SetOidcConfig / BeginSsoLogin /
// CompleteSsoLogin) and directly (VerifyIdToken).
#include "services/identity/oidc.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include <filesystem>

#include "gtest/gtest.h"
#include "libs/auth/base64url.h"
#include "libs/redis/testing/redis_server.h"
#include "libs/redis/testing/status_macros.h"
#include "libs/store/local_store.h"
#include "nlohmann/json.hpp"
#include "services/identity/core.h"
#include "services/identity/errors.h"
#include "services/identity/testing_fake_directory.h"

namespace mailgrid::identity {
namespace {

using Json = nlohmann::json;

std::string Bn(EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(key, name, &bn);
  std::string out(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return out;
}

struct TestKey {
  explicit TestKey(bool ec) : ec(ec) {
    key = ec ? EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")
             : EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
  }
  ~TestKey() { EVP_PKEY_free(key); }
  Json Jwk(const std::string& kid) const {
    if (!ec)
      return {{"kty", "RSA"},
              {"kid", kid},
              {"use", "sig"},
              {"alg", "RS256"},
              {"n", auth::Base64UrlEncode(Bn(key, OSSL_PKEY_PARAM_RSA_N))},
              {"e", auth::Base64UrlEncode(Bn(key, OSSL_PKEY_PARAM_RSA_E))}};
    unsigned char point[65];
    size_t len = 0;
    EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point), &len);
    std::string p(reinterpret_cast<char*>(point), len);
    return {{"kty", "EC"},
            {"kid", kid},
            {"crv", "P-256"},
            {"x", auth::Base64UrlEncode(p.substr(1, 32))},
            {"y", auth::Base64UrlEncode(p.substr(33, 32))}};
  }
  std::string Sign(const Json& claims, const std::string& kid) const {
    Json header = {{"alg", ec ? "ES256" : "RS256"}, {"typ", "JWT"}, {"kid", kid}};
    std::string input =
        auth::Base64UrlEncode(header.dump()) + "." + auth::Base64UrlEncode(claims.dump());
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    size_t sig_len = 0;
    EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key);
    EVP_DigestSign(ctx, nullptr, &sig_len, reinterpret_cast<const unsigned char*>(input.data()),
                   input.size());
    std::string sig(sig_len, '\0');
    EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &sig_len,
                   reinterpret_cast<const unsigned char*>(input.data()), input.size());
    EVP_MD_CTX_free(ctx);
    sig.resize(sig_len);
    if (ec) {  // DER -> r||s
      const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
      ECDSA_SIG* s = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
      std::string raw(64, '\0');
      BN_bn2binpad(ECDSA_SIG_get0_r(s), reinterpret_cast<unsigned char*>(raw.data()), 32);
      BN_bn2binpad(ECDSA_SIG_get0_s(s), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
      ECDSA_SIG_free(s);
      sig = raw;
    }
    return input + "." + auth::Base64UrlEncode(sig);
  }
  bool ec;
  EVP_PKEY* key;
};

Json Claims(const std::string& nonce, int64_t exp_offset = 300) {
  int64_t now = absl::ToUnixSeconds(absl::Now());
  return {{"iss", "http://127.0.0.1:9/idp"},
          {"aud", "mailgrid-client"},
          {"sub", "idp-user-1"},
          {"email", "ann@example.com"},
          {"email_verified", true},
          {"nonce", nonce},
          {"iat", now},
          {"exp", now + exp_offset}};
}

TEST(VerifyIdToken, ChecksSignatureIssuerAudienceExpiryNonce) {
  TestKey rsa(false), ec(true), other(false);
  Json set = {{"keys", Json::array({rsa.Jwk("r1"), ec.Jwk("e1")})}};
  auto jwks = Jwks::Parse(set.dump());
  ASSERT_TRUE(jwks.ok()) << jwks.status();
  IdTokenCheck check{"http://127.0.0.1:9/idp", "mailgrid-client", "n0nce"};
  EXPECT_TRUE(VerifyIdToken(rsa.Sign(Claims("n0nce"), "r1"), *jwks, check).ok());
  EXPECT_TRUE(VerifyIdToken(ec.Sign(Claims("n0nce"), "e1"), *jwks, check).ok());
  EXPECT_FALSE(VerifyIdToken(other.Sign(Claims("n0nce"), "r1"), *jwks, check).ok());  // other key
  EXPECT_FALSE(
      VerifyIdToken(rsa.Sign(Claims("n0nce", -3600), "r1"), *jwks, check).ok());    // expired
  EXPECT_FALSE(VerifyIdToken(rsa.Sign(Claims("other"), "r1"), *jwks, check).ok());  // nonce
  Json aud = Claims("n0nce");
  aud["aud"] = "someone-else";
  EXPECT_FALSE(VerifyIdToken(rsa.Sign(aud, "r1"), *jwks, check).ok());
  aud["aud"] = Json::array({"mailgrid-client", "someone-else"});
  EXPECT_FALSE(VerifyIdToken(rsa.Sign(aud, "r1"), *jwks, check).ok());  // no azp
  aud["azp"] = "mailgrid-client";
  EXPECT_TRUE(VerifyIdToken(rsa.Sign(aud, "r1"), *jwks, check).ok());
  Json iss = Claims("n0nce");
  iss["iss"] = "https://evil.example";
  EXPECT_FALSE(VerifyIdToken(rsa.Sign(iss, "r1"), *jwks, check).ok());
  // alg=none and HS256 are refused outright.
  std::string none = auth::Base64UrlEncode(R"({"alg":"none"})") + "." +
                     auth::Base64UrlEncode(Claims("n0nce").dump()) + ".";
  EXPECT_FALSE(VerifyIdToken(none, *jwks, check).ok());
  EXPECT_FALSE(VerifyIdToken("garbage", *jwks, check).ok());
  EXPECT_FALSE(Jwks::Parse("{}").ok());
  EXPECT_FALSE(Jwks::Parse("not json").ok());
}

TEST(AcceptableIssuer, HttpsOrLoopback) {
  EXPECT_TRUE(AcceptableIssuer("https://login.example.com"));
  EXPECT_TRUE(AcceptableIssuer("http://127.0.0.1:8080/realms/x"));
  EXPECT_TRUE(AcceptableIssuer("http://localhost"));
  EXPECT_FALSE(AcceptableIssuer("http://login.example.com"));
  EXPECT_FALSE(AcceptableIssuer("http://127.0.0.1.evil.com"));
  EXPECT_FALSE(AcceptableIssuer("ftp://x"));
}

TEST(CoreSso, IdTokenSignsTheUserIn) {
  MG_ASSERT_OK_AND_ASSIGN(auto redis_server, redis::testing::RedisServer::Start());
  redis::Client redis(redis_server->ClientOptions());
  auto dir =
      std::filesystem::temp_directory_path() / ("identity_oidc_test_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  MG_ASSERT_OK_AND_ASSIGN(auto local, store::LocalStore::Open(dir.string()));
  IdentityStore store(local.get());
  testing::FakeDirectory directory;
  directory.Add("t1", "u-ann", "ann@example.com");
  directory.Add("t1", "u-admin", "admin@example.com", {common::v1::ROLE_TENANT_ADMIN})
      .add_plan_features(tenant::v1::PLAN_FEATURE_SSO);
  PasswordHasher hasher(HashParams{1, 8 * 1024}, 2);
  MG_ASSERT_OK_AND_ASSIGN(auto signer, auth::TokenSigner::Generate("k"));
  auth::TokenVerifier verifier("mailgrid");
  MG_ASSERT_OK(verifier.AddPublicPem("k", *signer->PublicPem()));
  SessionManager sessions(&redis, signer.get(), SessionOptions{});
  Throttler throttle(&redis, ThrottleOptions{});
  Core core(&store, &directory, &hasher, &sessions, &throttle, &redis, CommonPasswords::Builtin(),
            &verifier, CoreOptions{});
  Caller admin;
  admin.kind = Caller::Kind::kUser;
  admin.claims.subject = "u-admin";
  admin.claims.tenant_id = "t1";
  admin.claims.roles = {"user", "tenant_admin"};
  admin.claims.scope = "full";

  TestKey rsa(false), other(false);
  v1::SetOidcConfigRequest set;
  set.mutable_config()->set_issuer("http://127.0.0.1:9/idp");
  set.mutable_config()->set_client_id("mailgrid-client");
  set.mutable_config()->set_client_secret("s3cret");
  set.mutable_config()->set_authorization_endpoint("http://127.0.0.1:9/idp/auth");
  set.mutable_config()->set_redirect_uri("https://mail.example.com/sso");
  set.mutable_config()->set_jwks_json(Json({{"keys", Json::array({rsa.Jwk("r1")})}}).dump());
  auto stored = core.SetOidcConfig(admin, set);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_TRUE(stored->client_secret().empty());
  EXPECT_TRUE(stored->has_client_secret());

  auto begin = [&] {
    v1::BeginSsoLoginRequest b;
    b.set_address("ann@example.com");
    auto r = core.BeginSsoLogin(Caller(), b);
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_NE(r->authorize_url().find("nonce=" + r->nonce()), std::string::npos);
    return *r;
  };
  auto complete = [&](const std::string& state, const std::string& token) {
    v1::CompleteSsoLoginRequest c;
    c.set_state(state);
    c.set_id_token(token);
    return core.CompleteSsoLogin(Caller(), c);
  };
  auto b1 = begin();
  auto ok = complete(b1.state(), rsa.Sign(Claims(b1.nonce()), "r1"));
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_TRUE(ok->has_session());
  EXPECT_EQ(ok->session().user_id(), "u-ann");
  EXPECT_EQ(verifier.Verify(ok->session().access_token())->auth_methods,
            std::vector<std::string>{"sso"});
  // The state is single use.
  EXPECT_EQ(complete(b1.state(), rsa.Sign(Claims(b1.nonce()), "r1")).status().code(),
            absl::StatusCode::kNotFound);

  auto b2 = begin();
  Json wrong_aud = Claims(b2.nonce());
  wrong_aud["aud"] = "another-client";
  EXPECT_EQ(complete(b2.state(), rsa.Sign(wrong_aud, "r1")).status().code(),
            absl::StatusCode::kUnauthenticated);
  auto b3 = begin();
  EXPECT_EQ(complete(b3.state(), rsa.Sign(Claims(b3.nonce(), -600), "r1")).status().code(),
            absl::StatusCode::kUnauthenticated);
  auto b4 = begin();
  EXPECT_EQ(complete(b4.state(), other.Sign(Claims(b4.nonce()), "r1")).status().code(),
            absl::StatusCode::kUnauthenticated);
  auto b5 = begin();
  Json stranger = Claims(b5.nonce());
  stranger["email"] = "nobody@example.com";
  EXPECT_EQ(complete(b5.state(), rsa.Sign(stranger, "r1")).status().code(),
            absl::StatusCode::kUnauthenticated);

  // By "@domain" alone (a login page that asks only for the company's
  // domain), or an address tenantd does not know: the tenant owning the
  // VERIFIED domain, so known and unknown addresses of it answer alike.
  directory.AddDomain("example.com", "t1");
  auto begin_as = [&](const std::string& who) {
    v1::BeginSsoLoginRequest b;
    b.set_address(who);
    return core.BeginSsoLogin(Caller(), b);
  };
  auto by_domain = begin_as("@Example.COM");
  ASSERT_TRUE(by_domain.ok()) << by_domain.status();
  EXPECT_EQ(by_domain->authorize_url().find("login_hint"), std::string::npos);
  EXPECT_EQ(by_domain->authorize_url().rfind("http://127.0.0.1:9/idp/auth?", 0), 0u);
  auto signed_in = complete(by_domain->state(), rsa.Sign(Claims(by_domain->nonce()), "r1"));
  ASSERT_TRUE(signed_in.ok()) << signed_in.status();
  EXPECT_EQ(signed_in->session().user_id(), "u-ann");
  auto unknown = begin_as("nobody@example.com");
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_NE(unknown->authorize_url().find("login_hint=nobody%40example.com"), std::string::npos);
  // The provider vouching for someone who is not a user still fails.
  Json nobody = Claims(unknown->nonce());
  nobody["email"] = "nobody@example.com";
  EXPECT_EQ(complete(unknown->state(), rsa.Sign(nobody, "r1")).status().code(),
            absl::StatusCode::kUnauthenticated);
  for (const char* none : {"@other.org", "ann@other.org", "@", "no-at-sign"})
    EXPECT_EQ(begin_as(none).status().code(), absl::StatusCode::kNotFound) << none;

  // Mandatory SSO refuses passwords (after they check out).
  set.mutable_config()->set_mandatory(true);
  ASSERT_TRUE(core.SetOidcConfig(admin, set).ok());
  Caller service;
  service.kind = Caller::Kind::kService;
  v1::SetInitialPasswordRequest init;
  auto* e = init.add_entries();
  e->set_tenant_id("t1");
  e->set_user_id("u-ann");
  e->set_password("violet-kettle-orbit-42");
  ASSERT_TRUE(core.SetInitialPassword(service, init).ok());
  v1::LoginRequest login;
  login.set_address("ann@example.com");
  login.set_password("violet-kettle-orbit-42");
  auto refused = core.Login(Caller(), login);
  EXPECT_EQ(ErrorDetailOf(refused.status())->reason(), "SSO_REQUIRED");
  login.set_password("wrong-password-123");
  EXPECT_EQ(core.Login(Caller(), login).status().code(), absl::StatusCode::kUnauthenticated);
  local.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace mailgrid::identity
