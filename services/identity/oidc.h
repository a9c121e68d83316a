// The OIDC relying-party pieces (RFC 7515/7517/7518, OpenID Connect Core
// §3.1.3.7): a JWK set of RSA and P-256 keys, ID-token verification
// (RS256 / ES256 signature, iss, aud/azp, exp/nbf with leeway, nonce), and
// a small HTTP/1.0 GET for discovery documents and JWKS.
//
// SECURITY: the token's "alg" must be RS256 or ES256 and match the key's
// type ("none" and HMAC algorithms are refused, so a public key can never
// be used as an HMAC secret). Every failure is one status for the caller;
// the message is for logs.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace mailgrid::identity {

class Jwks {
 public:
  static absl::StatusOr<Jwks> Parse(std::string_view json);
  size_t size() const { return keys_.size(); }

  struct Key {
    std::string kid;
    std::string kty;             // "RSA" or "EC"
    std::shared_ptr<void> pkey;  // EVP_PKEY
  };
  // By kid; with no kid, the only key of that type.
  const Key* Find(const std::string& kid, const std::string& kty) const;

 private:
  std::vector<Key> keys_;
};

struct IdTokenCheck {
  std::string issuer;
  std::string audience;  // our client_id
  std::string nonce;
  absl::Time now = absl::Now();
  absl::Duration leeway = absl::Seconds(60);
};

// The verified claims, or UNAUTHENTICATED with the reason.
absl::StatusOr<nlohmann::json> VerifyIdToken(std::string_view token, const Jwks& jwks,
                                             const IdTokenCheck& check);

// HTTP/1.0 GET, or POST of a form (`form` non-empty), over plain http or
// https (OpenSSL, peer certificate and host name verified against the
// system CA store). Only a 200 answer is a success; bodies above 1 MiB are
// refused. For discovery documents, JWKS and the token endpoint.
absl::StatusOr<std::string> HttpGet(const std::string& url, absl::Duration timeout);
absl::StatusOr<std::string> HttpPostForm(const std::string& url, const std::string& form,
                                         const std::string& basic_auth, absl::Duration timeout);

// Whether an issuer URL is acceptable: https, or http on a loopback host.
bool AcceptableIssuer(const std::string& url);

}  // namespace mailgrid::identity
