// Backend over the real peers: tenantd (DirectoryService), identityd
// (AuthService), mailstored (MailboxService) by gRPC with relayd's service
// token, and Redis for submission rate limits.
//
// Failure behaviour: an unconfigured peer fails its calls with UNAVAILABLE
// (the SMTP side answers 4xx); Redis down means no rate limiting (logged),
// never refused mail: Redis holds only what may be lost.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "libs/auth/service_token.h"
#include "libs/mailstore_client/mailstore_client.h"
#include "libs/redis/client.h"
#include "mailgrid/identity/v1/auth.grpc.pb.h"
#include "mailgrid/mailstore/v1/mailbox.grpc.pb.h"
#include "mailgrid/tenant/v1/directory.grpc.pb.h"
#include "mailgrid/tenant/v1/domain.grpc.pb.h"
#include "services/relay/backend.h"
#include "services/relay/config.h"

namespace mailgrid::relay {

class GrpcBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<GrpcBackend>> Create(const Options& options,
                                                             const std::string& tls_cert,
                                                             const std::string& tls_key);

  absl::StatusOr<tenant::v1::ResolveResponse> Resolve(
      const tenant::v1::ResolveRequest& request) override;
  absl::StatusOr<tenant::v1::ResolveManyResponse> ResolveMany(
      const tenant::v1::ResolveManyRequest& request) override;
  absl::StatusOr<bool> CanSendAs(const std::string& user_id, const std::string& address) override;
  absl::StatusOr<identity::v1::CheckSaslResponse> CheckSasl(
      const identity::v1::CheckSaslRequest& request) override;
  absl::StatusOr<mailstore::v1::DeliverBatchResponse> Deliver(
      uint32_t shard, const mailstore::v1::DeliverBatchRequest& request) override;
  absl::Status CountSubmission(const std::string& tenant_id, const std::string& user_id) override;
  absl::StatusOr<int64_t> CountSubmissionRoom(const std::string& tenant_id,
                                              const std::string& user_id) override;
  bool CountsSubmissions() const override {
    return redis_ != nullptr &&
           (options_.rate_user_per_hour > 0 || options_.rate_tenant_per_hour > 0);
  }
  absl::StatusOr<tenant::v1::GetDkimSigningKeyResponse> GetDkimSigningKey(
      const std::string& domain) override;
  absl::StatusOr<tenant::v1::SieveScript> GetSieveScript(const std::string& user_id) override;
  absl::StatusOr<bool> SetOnce(const std::string& key, absl::Duration ttl) override;
  void Forget(const std::string& key) override;
  absl::StatusOr<tenant::v1::AuditPolicy> GetAuditPolicy(const std::string& tenant_id) override;
  absl::StatusOr<tenant::v1::MonitoringPolicy> GetMonitoringPolicy(
      const std::string& tenant_id) override;
  absl::StatusOr<tenant::v1::User> GetUser(const std::string& user_id) override;
  absl::StatusOr<tenant::v1::Department> GetDepartment(const std::string& department_id) override;
  absl::Status AppendAdminAuditLog(const tenant::v1::AdminAuditEntry& entry) override;

 private:
  // One peer group: a channel per replica address (created on first use)
  // and the index of the replica that last answered (the leader, usually).
  struct Group {
    std::string service;  // "mailgrid.tenant.v1.DirectoryService"
    std::vector<std::string> addresses;
    std::vector<std::shared_ptr<grpc::Channel>> channels;
    size_t preferred = 0;
  };
  GrpcBackend() = default;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> ChannelFor(Group& g, size_t i);
  // Runs `call` against the group's replicas: the preferred one first, then
  // a `mailgrid-leader` redirect or the next replica on UNAVAILABLE.
  template <typename Fn>
  absl::Status CallGroup(Group& g, Fn call);
  absl::Status Authorize(grpc::ClientContext* ctx);

  Options options_;
  std::string tls_cert_, tls_key_;
  std::shared_ptr<auth::ServiceTokenSource> tokens_;
  std::unique_ptr<mailstore_client::MailstoreClient> mailstore_;
  std::unique_ptr<redis::Client> redis_;
  absl::Mutex mu_;  // guards the groups' channels and preferred index
  Group tenantd_ ABSL_GUARDED_BY(mu_), identityd_ ABSL_GUARDED_BY(mu_);
  Group domains_ ABSL_GUARDED_BY(mu_);  // tenantd's DomainService (DKIM keys)
};

}  // namespace mailgrid::relay
