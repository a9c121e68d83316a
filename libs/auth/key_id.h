// The key id convention for Ed25519 token keys when no key registry exists
// yet (identityd will publish keys with their ids through GetPublicKeys):
// the id is derived from the public key itself, "ed25519-" + the first 16
// hex digits of SHA-256 of its SubjectPublicKeyInfo DER. So a verifier
// given only PEM files and a signer given only the private key agree on
// the JWS "kid" with no further configuration. Shared by every verifier,
// the service-token source and `mailctl token mint`.
#pragma once

#include <memory>
#include <string>
#include <vector>
#include <string_view>

#include "absl/status/statusor.h"
#include "libs/auth/token.h"

namespace mailgrid::auth {

absl::StatusOr<std::string> KeyIdOfPublicPem(std::string_view pem);
absl::StatusOr<std::string> KeyIdOfPrivatePem(std::string_view pem);

// A verifier for `issuer` holding the Ed25519 public keys in these PEM
// files (--token-public-key), each under its derived key id; nullptr when
// `paths` is empty (the caller decides what an unconfigured verifier means).
absl::StatusOr<std::unique_ptr<TokenVerifier>> VerifierFromPemFiles(
    const std::string& issuer, const std::vector<std::string>& paths);

// The issuer every service expects by default and tokens are minted with.
inline constexpr char kDefaultTokenIssuer[] = "mailgrid";

}  // namespace mailgrid::auth
