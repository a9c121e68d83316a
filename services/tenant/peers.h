// The services tenantd calls while building the directory: identityd
// (initial passwords, CredentialService.SetInitialPassword) and mailstored
// (CreateMailbox / DeleteMailbox on the mailbox's shard). Every call carries
// a service token (libs/auth/service_token.h, svc "tenantd").
//
// Either peer may be unconfigured (no --identityd / --mailstored): the
// directory then logs a warning, skips the call and marks the record
// pending (directory_users.cc); a configured peer that fails makes the
// directory call UNAVAILABLE with nothing written.
//
// Shard map (--mailstored / MAILGRID_MAILSTORED), the syntax of
// libs/mailstore_client: "h:p,h:p,h:p" is shard 0; "0=h:p,h:p;1=h:p,..."
// names shards. Calls go to the first replica, follow the `mailgrid-leader`
// hint of a follower, and try the next replica when one is unreachable.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "mailgrid/identity/v1/credential.pb.h"
#include "mailgrid/mailstore/v1/mailbox.pb.h"
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
};

// "h:p,h:p" or "0=h:p,h:p;1=h:p" -> shard -> replicas.
absl::StatusOr<std::map<uint32_t, std::vector<std::string>>> ParseShardMap(const std::string& text);

// The gRPC implementation over --identityd, --mailstored, --mailstore-shards
// and --token-signing-key.
absl::StatusOr<std::unique_ptr<DirectoryPeers>> MakeGrpcPeers(const Options& options);

}  // namespace mailgrid::tenant
