#include "services/tenant/dkim.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/base/strings.h"

namespace mailgrid::tenant {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CtxFree {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

absl::StatusOr<std::string> PrivatePem(EVP_PKEY* key) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return absl::InternalError("cannot encode a DKIM private key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

absl::StatusOr<DkimKeyPair> GenerateDkimKey(v1::DkimAlgorithm algorithm) {
  bool ed = algorithm == v1::DKIM_ALGORITHM_ED25519;
  if (!ed && algorithm != v1::DKIM_ALGORITHM_RSA_2048)
    return absl::InvalidArgumentError("unknown DKIM algorithm");
  std::unique_ptr<EVP_PKEY_CTX, CtxFree> ctx(
      EVP_PKEY_CTX_new_id(ed ? EVP_PKEY_ED25519 : EVP_PKEY_RSA, nullptr));
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1)
    return absl::InternalError("DKIM key generation unavailable");
  if (!ed && EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), 2048) != 1)
    return absl::InternalError("RSA key size");
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_keygen(ctx.get(), &raw) != 1)
    return absl::InternalError("DKIM key generation failed");
  std::unique_ptr<EVP_PKEY, PkeyFree> key(raw);
  DkimKeyPair out;
  out.algorithm = algorithm;
  auto pem = PrivatePem(key.get());
  if (!pem.ok()) return pem.status();
  out.private_pem = *pem;
  std::string pub;
  if (ed) {
    // RFC 8463: p= is the raw 32-byte public key, base64.
    size_t len = 32;
    pub.resize(len);
    if (EVP_PKEY_get_raw_public_key(key.get(), reinterpret_cast<unsigned char*>(pub.data()),
                                    &len) != 1) {
      return absl::InternalError("cannot read the Ed25519 public key");
    }
    pub.resize(len);
  } else {
    // RSA: the SubjectPublicKeyInfo DER, as every DKIM tool publishes it.
    unsigned char* der = nullptr;
    int len = i2d_PUBKEY(key.get(), &der);
    if (len <= 0) return absl::InternalError("cannot encode the RSA public key");
    pub.assign(reinterpret_cast<char*>(der), static_cast<size_t>(len));
    OPENSSL_free(der);
  }
  out.public_b64 = absl::Base64Escape(pub);
  return out;
}

std::string DkimTxtValue(v1::DkimAlgorithm algorithm, std::string_view public_b64) {
  return absl::StrCat("v=DKIM1; k=", algorithm == v1::DKIM_ALGORITHM_ED25519 ? "ed25519" : "rsa",
                      "; p=", ToAbsl(public_b64));
}

std::string DkimPublicKeyTag(std::string_view txt) {
  for (absl::string_view tag : absl::StrSplit(ToAbsl(txt), ';')) {
    tag = absl::StripAsciiWhitespace(tag);
    if (tag.size() >= 2 && (tag[0] == 'p' || tag[0] == 'P')) {
      absl::string_view rest = absl::StripLeadingAsciiWhitespace(tag.substr(1));
      if (rest.empty() || rest[0] != '=') continue;
      std::string value;
      for (char c : rest.substr(1)) {
        if (!absl::ascii_isspace(static_cast<unsigned char>(c))) value.push_back(c);
      }
      return value;
    }
  }
  return "";
}

absl::StatusOr<KeySealer> KeySealer::Create(std::string master_key) {
  if (sodium_init() < 0) return absl::InternalError("libsodium failed to initialise");
  if (master_key.size() != crypto_aead_xchacha20poly1305_ietf_KEYBYTES) {
    return absl::InvalidArgumentError("the DKIM master key must be 32 bytes");
  }
  KeySealer s;
  s.key_ = std::move(master_key);
  unsigned char id[8];
  crypto_generichash(id, sizeof(id), reinterpret_cast<const unsigned char*>(s.key_.data()),
                     s.key_.size(), nullptr, 0);
  s.key_id_.assign(reinterpret_cast<char*>(id), sizeof(id));
  return s;
}

KeySealer::Sealed KeySealer::Seal(std::string_view plaintext, std::string_view ad) const {
  Sealed out;
  out.nonce.resize(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  randombytes_buf(out.nonce.data(), out.nonce.size());
  out.ciphertext.resize(plaintext.size() + crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned long long len = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      reinterpret_cast<unsigned char*>(out.ciphertext.data()), &len,
      reinterpret_cast<const unsigned char*>(plaintext.data()), plaintext.size(),
      reinterpret_cast<const unsigned char*>(ad.data()), ad.size(), nullptr,
      reinterpret_cast<const unsigned char*>(out.nonce.data()),
      reinterpret_cast<const unsigned char*>(key_.data()));
  out.ciphertext.resize(len);
  return out;
}

absl::StatusOr<std::string> KeySealer::Open(const Sealed& sealed, std::string_view ad) const {
  if (sealed.nonce.size() != crypto_aead_xchacha20poly1305_ietf_NPUBBYTES ||
      sealed.ciphertext.size() < crypto_aead_xchacha20poly1305_ietf_ABYTES) {
    return absl::DataLossError("sealed DKIM key is malformed");
  }
  std::string plain(sealed.ciphertext.size() - crypto_aead_xchacha20poly1305_ietf_ABYTES, '\0');
  unsigned long long len = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(plain.data()), &len, nullptr,
          reinterpret_cast<const unsigned char*>(sealed.ciphertext.data()),
          sealed.ciphertext.size(), reinterpret_cast<const unsigned char*>(ad.data()), ad.size(),
          reinterpret_cast<const unsigned char*>(sealed.nonce.data()),
          reinterpret_cast<const unsigned char*>(key_.data())) != 0) {
    return absl::DataLossError(
        "sealed DKIM key does not open with this master key (wrong key, or tampered)");
  }
  plain.resize(len);
  return plain;
}

std::string SealContext(std::string_view domain, std::string_view selector) {
  return absl::StrCat(ToAbsl(domain), "|", ToAbsl(selector));
}

}  // namespace mailgrid::tenant
