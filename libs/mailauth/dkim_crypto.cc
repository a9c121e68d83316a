#include "libs/mailauth/dkim_crypto.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace mailgrid::mailauth::internal {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

const unsigned char* U(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

std::string Digest(const EVP_MD* md, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, md, nullptr);
  return std::string(reinterpret_cast<char*>(out), len);
}

Pkey PublicKey(std::string_view key_type, std::string_view der) {
  if (key_type == "ed25519") {
    if (der.size() != 32) return nullptr;
    return Pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, U(der), der.size()));
  }
  const unsigned char* p = U(der);
  Pkey key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (key && p == U(der) + der.size()) return key;
  // Some publish the bare PKCS#1 RSAPublicKey rather than SPKI.
  p = U(der);
  key.reset(d2i_PublicKey(EVP_PKEY_RSA, nullptr, &p, static_cast<long>(der.size())));
  if (key && p == U(der) + der.size()) return key;
  return nullptr;
}

bool InitSign(EVP_MD_CTX* ctx, EVP_PKEY* key, DkimAlgorithm algorithm) {
  bool ed = algorithm == DkimAlgorithm::kEd25519Sha256;
  return EVP_DigestSignInit(ctx, nullptr, ed ? nullptr : EVP_sha256(), nullptr, key) == 1;
}

// The context every signature with one key copies. Copying reads the
// template only; the lock keeps that true of OpenSSL's internals too (a copy
// takes well under a microsecond, so workers hardly ever wait on it).
struct SignTemplate {
  absl::Mutex mu;
  MdCtx ctx;
};

// A fresh context for one signature: a copy of the template, or set up.
MdCtx SignContext(EVP_PKEY* key, DkimAlgorithm algorithm, SignTemplate* t) {
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) return nullptr;
  if (t != nullptr) {
    absl::MutexLock lock(&t->mu);
    if (EVP_MD_CTX_copy_ex(ctx.get(), t->ctx.get()) == 1) return ctx;
    ERR_clear_error();
    EVP_MD_CTX_reset(ctx.get());
  }
  if (!InitSign(ctx.get(), key, algorithm)) return nullptr;
  return ctx;
}

}  // namespace

std::shared_ptr<void> NewSignTemplate(void* raw_key, DkimAlgorithm algorithm) {
  auto t = std::make_shared<SignTemplate>();
  t->ctx.reset(EVP_MD_CTX_new());
  if (!t->ctx || !InitSign(t->ctx.get(), static_cast<EVP_PKEY*>(raw_key), algorithm)) {
    ERR_clear_error();
    return nullptr;
  }
  return t;
}

std::string Sha256(std::string_view data) { return Digest(EVP_sha256(), data); }
std::string Sha1(std::string_view data) { return Digest(EVP_sha1(), data); }

absl::StatusOr<std::string> SignData(void* raw_key, DkimAlgorithm algorithm, std::string_view data,
                                     void* sign_template) {
  auto* key = static_cast<EVP_PKEY*>(raw_key);
  MdCtx ctx = SignContext(key, algorithm, static_cast<SignTemplate*>(sign_template));
  bool ed = algorithm == DkimAlgorithm::kEd25519Sha256;
  std::string hashed = ed ? Sha256(data) : std::string();
  std::string_view input = ed ? std::string_view(hashed) : data;
  if (!ctx) return absl::InternalError("DKIM signing: EVP_DigestSignInit failed");
  size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, U(input), input.size()) != 1)
    return absl::InternalError("DKIM signing: cannot size the signature");
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, U(input),
                     input.size()) != 1) {
    return absl::InternalError("DKIM signing failed");
  }
  sig.resize(len);
  return sig;
}

absl::StatusOr<bool> VerifyData(std::string_view key_type, std::string_view public_key,
                                DkimAlgorithm algorithm, std::string_view data,
                                std::string_view signature, size_t min_rsa_bits) {
  Pkey key = PublicKey(key_type, public_key);
  ERR_clear_error();
  if (!key)
    return absl::InvalidArgumentError(
        absl::StrCat("the ", std::string(key_type), " public key does not parse"));
  bool ed = algorithm == DkimAlgorithm::kEd25519Sha256;
  int id = EVP_PKEY_get_base_id(key.get());
  if (ed != (id == EVP_PKEY_ED25519) || (!ed && id != EVP_PKEY_RSA))
    return absl::InvalidArgumentError("the key type does not match a=");
  if (!ed && static_cast<size_t>(EVP_PKEY_get_bits(key.get())) < min_rsa_bits) {
    return absl::InvalidArgumentError(
        absl::StrCat("RSA key of ", EVP_PKEY_get_bits(key.get()), " bits is too small"));
  }
  MdCtx ctx(EVP_MD_CTX_new());
  std::string input = ed ? Sha256(data) : std::string(data);
  const EVP_MD* md =
      ed ? nullptr : (algorithm == DkimAlgorithm::kRsaSha1 ? EVP_sha1() : EVP_sha256());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key.get()) != 1)
    return absl::InternalError("EVP_DigestVerifyInit failed");
  int rc = EVP_DigestVerify(ctx.get(), U(signature), signature.size(), U(input), input.size());
  ERR_clear_error();  // a bad signature leaves errors queued on this thread
  return rc == 1;
}

}  // namespace mailgrid::mailauth::internal
