// Access tokens: compact JWS (RFC 7515/7519) signed with Ed25519 ("EdDSA",
// RFC 8037), minted by identityd and verified locally by every service from
// the published public keys. Services decide access from these claims, never
// from a field the caller filled in (design.md, Trust).
//
// Why JWT and not a custom format: mail clients hand the same token to
// XOAUTH2/OAUTHBEARER, and operators can inspect it with standard tools.
// Why Ed25519: small keys, fast verification, no parameter choices to get
// wrong; OpenSSL 3 provides it. Verification results are cached by token
// bytes so a service checking the same token per call pays once.
// The claims are documented as common.v1.AccessTokenClaims.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace mailgrid::auth {

// Roles, as carried in the "roles" claim.
inline constexpr char kRoleUser[] = "user";
inline constexpr char kRoleTenantAdmin[] = "tenant_admin";
inline constexpr char kRoleAuditor[] = "auditor";
inline constexpr char kRolePlatformOperator[] = "platform_operator";
inline constexpr char kRolePlatformReviewer[] = "platform_reviewer";
inline constexpr char kRoleService[] = "service";  // another mailgrid service

struct Claims {
  std::string issuer;     // iss
  std::string subject;    // sub: user id, or service name for service tokens
  std::string tenant_id;  // tid: empty for platform staff and services
  std::string address;    // email address of the user, if any
  std::vector<std::string> roles;
  std::string token_id;   // jti
  std::string session_id; // sid: lets identityd revoke a session's tokens
  // mbx: mailbox ids the principal may open (own mailbox + seated shared ones).
  std::vector<std::string> mailbox_ids;
  std::string scope;      // scp: "full", "mail", "totp_enrolment" (common.proto TokenScope)
  std::vector<std::string> auth_methods;  // amr: "pwd", "otp", "sso", "qr", "app"
  std::string service;    // svc: the calling service, for service tokens
  absl::Time issued_at;   // iat
  absl::Time expires_at;  // exp

  bool HasRole(std::string_view role) const;
};

class TokenSigner {
 public:
  // Generates a fresh Ed25519 key.
  static absl::StatusOr<std::unique_ptr<TokenSigner>> Generate(std::string key_id);
  // Loads a PKCS#8 PEM private key (as `openssl genpkey -algorithm ed25519` writes).
  static absl::StatusOr<std::unique_ptr<TokenSigner>> FromPrivatePem(std::string key_id, std::string_view pem);
  ~TokenSigner();

  absl::StatusOr<std::string> Sign(const Claims& claims) const;
  const std::string& key_id() const { return key_id_; }
  // SubjectPublicKeyInfo PEM, for verifiers.
  absl::StatusOr<std::string> PublicPem() const;
  absl::StatusOr<std::string> PrivatePem() const;

 private:
  TokenSigner() = default;
  std::string key_id_;
  struct Key;
  std::unique_ptr<Key> key_;
};

// What a verification key may sign. A cluster with one shared key (the
// local launcher, a chart without secrets.serviceTokenKey) uses kAny for
// it: the behaviour before key roles existed. With a separate service key
// pair, the service key is kServiceOnly, so a daemon holding it (relayd,
// accessd, tenantd) can mint service tokens but no user or operator token;
// kUserOnly additionally stops the user key from signing service tokens
// (only once identityd signs its own service tokens with the service key).
enum class KeyUse {
  kAny,
  kUserOnly,     // tokens without the "service" role
  kServiceOnly,  // exactly roles ["service"], a svc name, no tenant or mailboxes
};

std::string_view KeyUseName(KeyUse use);

class TokenVerifier {
 public:
  explicit TokenVerifier(std::string expected_issuer, size_t cache_entries = 100000);
  ~TokenVerifier();

  absl::Status AddPublicPem(std::string key_id, std::string_view pem, KeyUse use = KeyUse::kAny);

  // UNAUTHENTICATED for anything wrong (malformed, unknown key, bad
  // signature, wrong issuer, expired or not yet valid beyond `leeway`), with
  // a message for logs; callers answer clients without detail. A token its
  // key may not sign (KeyUse) is UNAUTHENTICATED too.
  absl::StatusOr<Claims> Verify(std::string_view token, absl::Time now = absl::Now()) const;

  absl::Duration leeway = absl::Seconds(30);

 private:
  struct Keys;
  std::string issuer_;
  std::unique_ptr<Keys> keys_;
  size_t cache_entries_;
  mutable absl::Mutex cache_mu_;
  mutable std::map<std::string, Claims> cache_ ABSL_GUARDED_BY(cache_mu_);
};

// Parses claims without checking the signature (for tools and tests only).
absl::StatusOr<Claims> DecodeUnverified(std::string_view token);

}  // namespace mailgrid::auth
