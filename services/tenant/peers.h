// The services tenantd calls while building the directory: identityd
// (initial passwords, CredentialService.SetInitialPassword; ending a
// disabled user's sessions, AuthService.LogoutEverywhere; a changed
// recovery address, CredentialService.NotifyRecoveryEmailChanged), mailstored
// (CreateMailbox / DeleteMailbox / SetQuota on the mailbox's shard, through
// libs/mailstore_client) and relayd (welcome notices,
// RelayService.SubmitMessage). Every call carries a service token
// (libs/auth/service_token.h, svc "tenantd").
//
// Any peer may be unconfigured (no --identityd / --mailstored / --relayd):
// the directory then logs a warning, skips the call and marks the record
// pending (directory_users.cc); a configured identityd or mailstored that
// fails makes a creation UNAVAILABLE with nothing written. Welcome notices,
// session ends and quota pushes never fail the directory call: they are
// retried by the background loop or reported (README).
//
// Shard map (--mailstored / MAILGRID_MAILSTORED), the syntax of
// libs/mailstore_client: "h:p,h:p,h:p" is shard 0; "0=h:p,h:p;1=h:p,..."
// names shards. identityd and relayd calls go to the first replica, follow
// the `mailgrid-leader` hint of a follower, and try the next replica when
// one is unreachable.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "mailgrid/identity/v1/credential.pb.h"
#include "mailgrid/mailstore/v1/mailbox.pb.h"
#include "mailgrid/relay/v1/relay.pb.h"
#include "libs/rpc/client.h"
#include "services/tenant/config.h"

namespace mailgrid::tenant {

class DirectoryPeers {
 public:
  virtual ~DirectoryPeers() = default;
  virtual bool identity_configured() const = 0;
  virtual bool mailstore_configured() const = 0;
  // Number of mailstored shards mailboxes are placed on (>= 1).
  virtual uint32_t shards() const = 0;
  virtual absl::Status SetInitialPasswords(const identity::v1::SetInitialPasswordRequest& r) = 0;
  // Idempotent at mailstored (same id, same owner).
  virtual absl::Status CreateMailbox(uint32_t shard,
                                     const mailstore::v1::CreateMailboxRequest& r) = 0;
  virtual absl::Status DeleteMailbox(uint32_t shard, const std::string& mailbox_id) = 0;
  // A purged user's credentials (NOT_FOUND counts as done).
  virtual absl::Status DeleteCredentials(const std::string& user_id) = 0;
  // The mailbox's quota at mailstored (idempotent).
  virtual absl::Status SetQuota(uint32_t shard, const mailstore::v1::SetQuotaRequest& r) {
    (void)shard, (void)r;
    return absl::UnavailableError("mailstored is not configured");
  }
  // Ends every session of a user at identityd (refresh tokens revoked);
  // returns how many ended. NOT_FOUND (no credentials) counts as 0.
  virtual absl::StatusOr<int64_t> EndSessions(const std::string& user_id,
                                              const std::string& reason) {
    (void)user_id, (void)reason;
    return absl::UnavailableError("identityd is not configured");
  }
  // Asks identityd to tell the user (and the old address) that their
  // recovery address changed (idempotent by r.event_id at identityd).
  virtual absl::Status NotifyRecoveryEmailChanged(
      const identity::v1::NotifyRecoveryEmailChangedRequest& r) {
    (void)r;
    return absl::UnavailableError("identityd is not configured");
  }
  virtual bool relay_configured() const { return false; }
  // A notice through relayd (idempotent by r.idempotency_key).
  virtual absl::Status SubmitMessage(const relay::v1::SubmitMessageRequest& r) {
    (void)r;
    return absl::UnavailableError("relayd is not configured");
  }
};

// The gRPC implementation over --identityd, --mailstored, --mailstore-shards
// and --token-signing-key.
// `tls`: TLS towards the peers (CA and client certificate; empty CA: plain).
absl::StatusOr<std::unique_ptr<DirectoryPeers>> MakeGrpcPeers(const Options& options,
                                                               const rpc::ClientOptions& tls = {});

}  // namespace mailgrid::tenant
