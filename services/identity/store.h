// identityd's durable records on the replicated store (store::Store: the
// embedded replica's group in production, LocalStore in unit tests).
//
// Key layout (libs/kv/keys.h tuples; tenant prefix first, so a tenant's
// credentials, policy, SSO settings and auth events are one key range):
//   T(tid) "cred"   uid                 -> storage.Credential
//   T(tid) "policy"                     -> v1.PasswordPolicy
//   T(tid) "oidc"                       -> v1.OidcConfig (with the secret)
//   T(tid) "event"  -micros  event_id   -> v1.AuthEvent (newest first)
//   G("identity_user") uid              -> storage.UserIndex (uid -> tid,
//                                          for calls that name a user only)
// Every read-modify-write is a VERSION_EQUALS conditional write, retried
// on conflict (Mutate).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/store/store.h"
#include "mailgrid/identity/v1/auth.pb.h"
#include "mailgrid/identity/v1/credential.pb.h"
#include "mailgrid/identity/v1/sso.pb.h"
#include "services/identity/identity_storage.pb.h"

namespace mailgrid::identity {

class IdentityStore {
 public:
  explicit IdentityStore(store::Store* store) : store_(store) {}

  // NOT_FOUND when the user has no credentials. `observed` (optional) gets
  // the replica state the linearizable read saw (GetResponse.applied_index),
  // for a following read that must be at least as fresh (GetPolicy).
  absl::StatusOr<storage::Credential> GetCredential(const std::string& tenant_id,
                                                    const std::string& user_id,
                                                    uint64_t* observed = nullptr);
  // The tenant of a user that has credentials; NOT_FOUND otherwise.
  absl::StatusOr<std::string> TenantOfUser(const std::string& user_id);

  // Reads the record (empty with `exists` false when absent), lets `change`
  // edit it, and writes it back if the version did not move meanwhile
  // (retrying). `change` may return an error to abort without writing.
  absl::Status Mutate(
      const std::string& tenant_id, const std::string& user_id,
      const std::function<absl::Status(storage::Credential& cred, bool exists)>& change);
  absl::Status DeleteCredential(const std::string& tenant_id, const std::string& user_id);

  // The tenant's policy (defaults when none is stored) and its version.
  // With `at_least` (an `observed` of an earlier linearizable read of the
  // same sign-in) it first reads STALE and keeps the answer if that
  // replica has applied at least `at_least`: the answer then includes every
  // write acknowledged before the earlier read began (what a sign-in needs:
  // a policy change made before it applies to it), without a second
  // ReadIndex round over the replicas. Otherwise it reads LINEARIZABLE.
  absl::StatusOr<std::pair<v1::PasswordPolicy, uint64_t>> GetPolicy(const std::string& tenant_id,
                                                                    uint64_t at_least = 0);
  // ABORTED when expected_version (non-zero) does not match.
  absl::StatusOr<v1::PasswordPolicy> PutPolicy(v1::PasswordPolicy policy, int64_t expected_version);

  absl::StatusOr<std::optional<v1::OidcConfig>> GetOidc(const std::string& tenant_id);
  absl::Status PutOidc(const v1::OidcConfig& config);
  absl::StatusOr<bool> DeleteOidc(const std::string& tenant_id);

  absl::Status AppendEvent(const v1::AuthEvent& event);
  struct EventPage {
    std::vector<v1::AuthEvent> events;
    std::string next_page_token;
  };
  // Newest first; `keep` filters (the page may hold fewer than page_size).
  absl::StatusOr<EventPage> ListEvents(const std::string& tenant_id, int page_size,
                                       const std::string& page_token,
                                       const std::function<bool(const v1::AuthEvent&)>& keep);

 private:
  // LINEARIZABLE, or as described at GetPolicy when at_least > 0.
  absl::StatusOr<std::optional<std::pair<std::string, uint64_t>>> GetRaw(
      const std::string& key, uint64_t at_least = 0, uint64_t* observed = nullptr);
  absl::StatusOr<bool> WriteIfVersion(const std::string& key, uint64_t version,
                                      std::vector<std::pair<std::string, std::string>> puts,
                                      std::vector<std::string> deletes = {});

  store::Store* store_;
};

}  // namespace mailgrid::identity
