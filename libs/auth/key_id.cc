#include "libs/auth/key_id.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <map>
#include <memory>
#include <utility>

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

absl::StatusOr<TokenKeySpec> ParseTokenKeySpec(std::string_view entry) {
  TokenKeySpec spec;
  std::string_view path = entry;
  for (auto [prefix, use] : {std::pair<std::string_view, KeyUse>{"user:", KeyUse::kUserOnly},
                             std::pair<std::string_view, KeyUse>{"service:", KeyUse::kServiceOnly}}) {
    if (entry.substr(0, prefix.size()) == prefix) {
      path = entry.substr(prefix.size());
      spec.use = use;
    }
  }
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--token-public-key \"", absl::string_view(entry.data(), entry.size()),
        "\": expected PATH, user:PATH or service:PATH"));
  }
  spec.path = std::string(path);
  return spec;
}

absl::StatusOr<std::unique_ptr<TokenVerifier>> VerifierFromPemFiles(
    const std::string& issuer, const std::vector<std::string>& paths) {
  if (paths.empty()) return std::unique_ptr<TokenVerifier>();
  auto verifier = std::make_unique<TokenVerifier>(issuer);
  std::map<std::string, KeyUse> seen;  // kid -> use
  for (const std::string& entry : paths) {
    ASSIGN_OR_RETURN(TokenKeySpec spec, ParseTokenKeySpec(entry));
    ASSIGN_OR_RETURN(std::string pem, file::ReadAll(spec.path));
    auto kid = KeyIdOfPublicPem(pem);
    if (!kid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token-public-key ", spec.path, ": ", kid.status().message()));
    }
    auto [it, inserted] = seen.emplace(*kid, spec.use);
    if (!inserted && it->second != spec.use) {
      return absl::InvalidArgumentError(absl::StrCat("--token-public-key ", spec.path,
                                                     ": the same key is listed as ",
                                                     std::string(KeyUseName(it->second)), " and as ",
                                                     std::string(KeyUseName(spec.use))));
    }
    RETURN_IF_ERROR(verifier->AddPublicPem(*kid, pem, spec.use));
    log::Info("token key loaded",
              {{"file", spec.path}, {"kid", *kid}, {"signs", std::string(KeyUseName(spec.use))}});
  }
  return verifier;
}

}  // namespace mailgrid::auth
