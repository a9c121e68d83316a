// Internal to libs/mailauth: the OpenSSL 3 EVP calls DKIM needs.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "libs/mailauth/dkim.h"

namespace mailgrid::mailauth::internal {

std::string Sha256(std::string_view data);
std::string Sha1(std::string_view data);

// A signing context set up once per key. EVP_DigestSignInit fetches the
// digest, signature and key management from the provider on every call
// (~4-6 µs of CPU, two per submitted message); copying a context set up
// once skips that. Null when the key cannot be set up (SignData then sets
// up a context per call, as before).
std::shared_ptr<void> NewSignTemplate(void* pkey, DkimAlgorithm algorithm);

// Signs `data` (the canonicalized header hash input): RSA PKCS#1 v1.5 over
// SHA-256, or Ed25519 over SHA-256(data) as RFC 8463 §3 says. `sign_template`
// is NewSignTemplate's for this key, or null.
absl::StatusOr<std::string> SignData(void* pkey, DkimAlgorithm algorithm, std::string_view data,
                                     void* sign_template = nullptr);

// Verifies `signature` over `data` with the key record's p= (RSA
// SubjectPublicKeyInfo or PKCS#1 RSAPublicKey DER; Ed25519 raw 32 bytes).
// INVALID_ARGUMENT for a key that does not parse or is too small (a
// permerror); OK(false) for a signature that does not verify.
absl::StatusOr<bool> VerifyData(std::string_view key_type, std::string_view public_key,
                                DkimAlgorithm algorithm, std::string_view data,
                                std::string_view signature, size_t min_rsa_bits);

}  // namespace mailgrid::mailauth::internal
