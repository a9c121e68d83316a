// Who a user is, asked of tenantd (DirectoryService.GetPrincipal, a
// service-internal call made with identityd's service token), and which
// tenant owns a domain (DomainService.GetDomain, for an SSO login by
// "@domain"). Behind an interface so the credential logic is unit-tested
// with a fake directory.
//
// Failure: NOT_FOUND for an unknown address, deleted user or a domain that
// is not VERIFIED (the caller turns that into the uniform "invalid
// credentials" or "no SSO"); UNAVAILABLE when tenantd is not configured or
// unreachable.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "libs/auth/service_token.h"
#include "libs/rpc/client.h"
#include "mailgrid/tenant/v1/directory.pb.h"

namespace mailgrid::identity {

class Directory {
 public:
  virtual ~Directory() = default;
  // By primary address or alias.
  virtual absl::StatusOr<tenant::v1::Principal> ByAddress(const std::string& address) = 0;
  virtual absl::StatusOr<tenant::v1::Principal> ByUserId(const std::string& user_id) = 0;
  // The tenant whose VERIFIED domain `domain` (lower-case A-label) is.
  virtual absl::StatusOr<std::string> TenantOfDomain(const std::string& domain) = 0;
};

// tenantd over gRPC, trying each address in turn while unreachable.
class GrpcDirectory final : public Directory {
 public:
  // `tokens` may be null (no signing key): calls then fail UNAVAILABLE.
  // `tls`: the TLS fields of rpc::ClientOptions (CA, client certificate)
  // every channel uses; empty CA: plain text.
  static absl::StatusOr<std::unique_ptr<GrpcDirectory>> Create(std::vector<std::string> addresses,
                                                               auth::ServiceTokenSource* tokens,
                                                               const rpc::ClientOptions& tls);

  absl::StatusOr<tenant::v1::Principal> ByAddress(const std::string& address) override;
  absl::StatusOr<tenant::v1::Principal> ByUserId(const std::string& user_id) override;
  absl::StatusOr<std::string> TenantOfDomain(const std::string& domain) override;

 private:
  absl::StatusOr<tenant::v1::Principal> Get(const tenant::v1::GetPrincipalRequest& request);

  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  auth::ServiceTokenSource* tokens_ = nullptr;
};

// Lower-case role names as tokens carry them ("user", "tenant_admin").
std::vector<std::string> RoleNames(const google::protobuf::RepeatedField<int>& roles);
// The reverse, for replies.
common::v1::Role RoleFromName(const std::string& name);

}  // namespace mailgrid::identity
