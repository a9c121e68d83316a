// Internal to libs/mailauth: the OpenSSL 3 EVP calls DKIM needs.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "libs/mailauth/dkim.h"

namespace mailgrid::mailauth::internal {

std::string Sha256(std::string_view data);
std::string Sha1(std::string_view data);

// Signs `data` (the canonicalized header hash input): RSA PKCS#1 v1.5 over
// SHA-256, or Ed25519 over SHA-256(data) as RFC 8463 §3 says.
absl::StatusOr<std::string> SignData(void* pkey, DkimAlgorithm algorithm, std::string_view data);

// Verifies `signature` over `data` with the key record's p= (RSA
// SubjectPublicKeyInfo or PKCS#1 RSAPublicKey DER; Ed25519 raw 32 bytes).
// INVALID_ARGUMENT for a key that does not parse or is too small (a
// permerror); OK(false) for a signature that does not verify.
absl::StatusOr<bool> VerifyData(std::string_view key_type, std::string_view public_key,
                                DkimAlgorithm algorithm, std::string_view data,
                                std::string_view signature, size_t min_rsa_bits);

}  // namespace mailgrid::mailauth::internal
