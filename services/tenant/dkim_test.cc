#include "services/tenant/dkim.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace mailgrid::tenant {
namespace {

// Signs `data` with the PEM private key and verifies with the published
// p= value: the TXT record really belongs to the private key.
bool SignVerifyRoundTrip(const DkimKeyPair& pair) {
  BIO* bio = BIO_new_mem_buf(pair.private_pem.data(), static_cast<int>(pair.private_pem.size()));
  EVP_PKEY* priv = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (priv == nullptr) return false;
  std::string pub;
  absl::Base64Unescape(pair.public_b64, &pub);
  EVP_PKEY* verify_key = nullptr;
  if (pair.algorithm == v1::DKIM_ALGORITHM_ED25519) {
    verify_key = EVP_PKEY_new_raw_public_key(
        EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(pub.data()), pub.size());
  } else {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(pub.data());
    verify_key = d2i_PUBKEY(nullptr, &p, static_cast<long>(pub.size()));
  }
  const std::string data = "From: a@example.com\r\n";
  const EVP_MD* md = pair.algorithm == v1::DKIM_ALGORITHM_ED25519 ? nullptr : EVP_sha256();
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned char sig[512];
  size_t siglen = sizeof(sig);
  bool ok = EVP_DigestSignInit(ctx, nullptr, md, nullptr, priv) == 1 &&
            EVP_DigestSign(ctx, sig, &siglen, reinterpret_cast<const unsigned char*>(data.data()),
                           data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  ctx = EVP_MD_CTX_new();
  ok = ok && verify_key != nullptr &&
       EVP_DigestVerifyInit(ctx, nullptr, md, nullptr, verify_key) == 1 &&
       EVP_DigestVerify(ctx, sig, siglen, reinterpret_cast<const unsigned char*>(data.data()),
                        data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(priv);
  EVP_PKEY_free(verify_key);
  return ok;
}

TEST(DkimTest, Ed25519KeyAndTxt) {
  auto pair = GenerateDkimKey(v1::DKIM_ALGORITHM_ED25519);
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_TRUE(absl::StartsWith(pair->private_pem, "-----BEGIN PRIVATE KEY-----"));
  std::string raw;
  ASSERT_TRUE(absl::Base64Unescape(pair->public_b64, &raw));
  EXPECT_EQ(raw.size(), 32u);  // RFC 8463: the bare key
  EXPECT_EQ(DkimTxtValue(pair->algorithm, pair->public_b64),
            "v=DKIM1; k=ed25519; p=" + pair->public_b64);
  EXPECT_TRUE(SignVerifyRoundTrip(*pair));
}

TEST(DkimTest, Rsa2048KeyAndTxt) {
  auto pair = GenerateDkimKey(v1::DKIM_ALGORITHM_RSA_2048);
  ASSERT_TRUE(pair.ok()) << pair.status();
  std::string der;
  ASSERT_TRUE(absl::Base64Unescape(pair->public_b64, &der));
  EXPECT_GT(der.size(), 256u);
  EXPECT_TRUE(absl::StartsWith(DkimTxtValue(pair->algorithm, pair->public_b64),
                               "v=DKIM1; k=rsa; p=MIIBIjAN"));
  EXPECT_TRUE(SignVerifyRoundTrip(*pair));
}

TEST(DkimTest, PublicKeyTag) {
  EXPECT_EQ(DkimPublicKeyTag("v=DKIM1; k=rsa; p=AB CD\t=="), "ABCD==");
  EXPECT_EQ(DkimPublicKeyTag("v=DKIM1; k=rsa"), "");
}

TEST(KeySealerTest, SealsAndOpensBoundToContext) {
  auto sealer = KeySealer::Create(std::string(32, '\x42'));
  ASSERT_TRUE(sealer.ok());
  auto sealed = sealer->Seal("secret pem", SealContext("a.example", "s1"));
  EXPECT_EQ(sealed.ciphertext.find("secret"), std::string::npos);
  auto opened = sealer->Open(sealed, SealContext("a.example", "s1"));
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(*opened, "secret pem");
  // Moved to another domain or selector, it does not open.
  EXPECT_EQ(sealer->Open(sealed, SealContext("b.example", "s1")).status().code(),
            absl::StatusCode::kDataLoss);
  // Another master key does not open it either.
  auto other = KeySealer::Create(std::string(32, '\x43'));
  EXPECT_FALSE(other->Open(sealed, SealContext("a.example", "s1")).ok());
  EXPECT_NE(other->key_id(), sealer->key_id());
  EXPECT_FALSE(KeySealer::Create("short").ok());
}

}  // namespace
}  // namespace mailgrid::tenant
