#include "libs/auth/key_id.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "libs/base/file.h"
#include "libs/base/log.h"
#include "libs/base/status.h"

namespace mailgrid::auth {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

absl::StatusOr<std::string> IdOf(EVP_PKEY* key) {
  if (EVP_PKEY_id(key) != EVP_PKEY_ED25519)
    return absl::InvalidArgumentError("token key is not an Ed25519 key");
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key, &der);
  if (len <= 0) return absl::InternalError("cannot encode the public key");
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(der, static_cast<size_t>(len), digest);
  OPENSSL_free(der);
  std::string hex =
      absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), 8));
  return "ed25519-" + hex;
}

}  // namespace

absl::StatusOr<std::string> KeyIdOfPublicPem(std::string_view pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::unique_ptr<EVP_PKEY, PkeyFree> key(
      PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return absl::InvalidArgumentError("not a PEM public key");
  return IdOf(key.get());
}

absl::StatusOr<std::string> KeyIdOfPrivatePem(std::string_view pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::unique_ptr<EVP_PKEY, PkeyFree> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return absl::InvalidArgumentError("not a PEM private key");
  return IdOf(key.get());
}

absl::StatusOr<std::unique_ptr<TokenVerifier>> VerifierFromPemFiles(
    const std::string& issuer, const std::vector<std::string>& paths) {
  if (paths.empty()) return std::unique_ptr<TokenVerifier>();
  auto verifier = std::make_unique<TokenVerifier>(issuer);
  for (const std::string& path : paths) {
    ASSIGN_OR_RETURN(std::string pem, file::ReadAll(path));
    auto kid = KeyIdOfPublicPem(pem);
    if (!kid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token-public-key ", path, ": ", kid.status().message()));
    }
    RETURN_IF_ERROR(verifier->AddPublicPem(*kid, pem));
    log::Info("token key loaded", {{"file", path}, {"kid", *kid}});
  }
  return verifier;
}

}  // namespace mailgrid::auth
