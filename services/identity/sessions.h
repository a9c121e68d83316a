// Sessions and tokens. A session lives in Redis (it may be lost: losing
// Redis signs people out, nothing more); its access tokens are short-lived
// Ed25519 JWS (libs/auth) that every service verifies locally; its refresh
// token is opaque, "mgrt_<session_id>.<secret>", stored as a SHA-256 hash and
// rotated on every use. Presenting an already-rotated refresh token is
// taken as theft (RFC 6819 §5.2.2.3, OAuth 2.0 Security BCP §4.14) and ends
// the whole session.
//
// Redis keys:
//   mg:id:s:<sid>   SessionRecord (TTL: refresh lifetime)
//   mg:id:r:<sid>   current refresh hash;  mg:id:ro:<sid>  earlier hashes (set)
//   mg:id:u:<uid>   set of the user's session ids
//   mg:id:x:<sid>   ended marker (TTL: access-token lifetime), so identityd
//                   refuses the session's access tokens until they expire
//   mg:id:nb:<uid>  not-before (unix s): tokens issued earlier are refused
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/auth/token.h"
#include "libs/redis/client.h"
#include "mailgrid/identity/v1/auth.pb.h"
#include "services/identity/identity_storage.pb.h"

namespace mailgrid::identity {

inline constexpr char kScopeFull[] = "full";
inline constexpr char kScopeMail[] = "mail";
inline constexpr char kScopeEnrolment[] = "totp_enrolment";

struct SessionSpec {
  std::string tenant_id, user_id, address;
  std::vector<std::string> roles;
  std::vector<common::v1::MailboxAccess> mailboxes;
  std::string scope = kScopeFull;
  std::vector<std::string> amr;
  common::v1::ClientInfo client;
};

struct SessionOptions {
  std::string issuer = "mailgrid";
  absl::Duration access_ttl = absl::Minutes(15);
  absl::Duration refresh_ttl = absl::Hours(24 * 30);
};

class SessionManager {
 public:
  SessionManager(redis::Client* redis, const auth::TokenSigner* signer, SessionOptions options)
      : redis_(redis), signer_(signer), options_(std::move(options)) {}

  // A new session. Scoped enrolment sessions get no refresh token.
  absl::StatusOr<v1::Session> Create(const SessionSpec& spec);
  // Rotation: the old refresh token stops working. UNAUTHENTICATED for an
  // unknown/expired/reused token (reuse ends the session).
  absl::StatusOr<v1::Session> Refresh(const std::string& refresh_token,
                                      const common::v1::ClientInfo& client);
  // The session a refresh token belongs to (for Logout); NOT_FOUND.
  absl::StatusOr<std::string> SessionOfRefreshToken(const std::string& refresh_token);
  absl::StatusOr<storage::SessionRecord> Get(const std::string& session_id);
  // Ends one session (false: there was none).
  absl::StatusOr<bool> End(const std::string& session_id);
  // Ends every session of the user and refuses older access tokens.
  absl::StatusOr<int64_t> EndAll(const std::string& user_id);
  // Ends every session of the user except `keep`.
  absl::StatusOr<int64_t> EndOthers(const std::string& user_id, const std::string& keep);
  absl::StatusOr<std::vector<storage::SessionRecord>> List(const std::string& user_id);
  // Whether identityd must refuse this access token (its session ended, or
  // the user signed out everywhere after it was issued).
  absl::StatusOr<bool> Revoked(const auth::Claims& claims);

  const SessionOptions& options() const { return options_; }

 private:
  absl::StatusOr<v1::Session> Issue(storage::SessionRecord& record, bool with_refresh,
                                    const std::string& refresh_secret);

  redis::Client* redis_;
  const auth::TokenSigner* signer_;
  SessionOptions options_;
};

// Fresh random bytes as base64url (ids, secrets, tickets).
std::string RandomToken(size_t bytes);
std::string Sha256(std::string_view data);

}  // namespace mailgrid::identity
