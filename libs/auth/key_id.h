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

// One entry of --token-public-key: "PATH", "user:PATH" or "service:PATH".
// A plain PATH is KeyUse::kAny, unless another entry of the same list is a
// "service:" key: then it is the user-token key and stays kAny only so that
// identityd's service tokens (signed with the user key today) still verify;
// write "user:PATH" to refuse those too. See README.md, "Token keys".
struct TokenKeySpec {
  std::string path;
  KeyUse use = KeyUse::kAny;
};
absl::StatusOr<TokenKeySpec> ParseTokenKeySpec(std::string_view entry);

// A verifier for `issuer` holding the Ed25519 public keys in these PEM
// files (--token-public-key entries, ParseTokenKeySpec), each under its
// derived key id and with its KeyUse; nullptr when `paths` is empty (the
// caller decides what an unconfigured verifier means). Two entries with the
// same key but different uses are an error (which would win is unclear).
absl::StatusOr<std::unique_ptr<TokenVerifier>> VerifierFromPemFiles(
    const std::string& issuer, const std::vector<std::string>& paths);

// The issuer every service expects by default and tokens are minted with.
inline constexpr char kDefaultTokenIssuer[] = "mailgrid";

}  // namespace mailgrid::auth
