// Test helper: fresh DKIM key pairs made with OpenSSL, as tenantd makes them.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <string>

#include "absl/strings/escaping.h"

namespace mailgrid::mailauth::testing {

struct TestKey {
  std::string private_pem;
  std::string txt;  // the DNS record
};

inline TestKey MakeKey(bool ed25519, int rsa_bits = 2048) {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(ed25519 ? EVP_PKEY_ED25519 : EVP_PKEY_RSA, nullptr);
  EVP_PKEY_keygen_init(ctx);
  if (!ed25519) EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, rsa_bits);
  EVP_PKEY* key = nullptr;
  EVP_PKEY_keygen(ctx, &key);
  EVP_PKEY_CTX_free(ctx);
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  TestKey out;
  out.private_pem.assign(data, static_cast<size_t>(len));
  BIO_free(bio);
  std::string pub;
  if (ed25519) {
    size_t n = 32;
    pub.resize(n);
    EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(pub.data()), &n);
  } else {
    unsigned char* der = nullptr;
    int n = i2d_PUBKEY(key, &der);
    pub.assign(reinterpret_cast<char*>(der), static_cast<size_t>(n));
    OPENSSL_free(der);
  }
  EVP_PKEY_free(key);
  out.txt =
      std::string("v=DKIM1; k=") + (ed25519 ? "ed25519" : "rsa") + "; p=" + absl::Base64Escape(pub);
  return out;
}

}  // namespace mailgrid::mailauth::testing
