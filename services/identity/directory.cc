#include "services/identity/directory.h"

#include "libs/auth/token.h"
#include "libs/base/status.h"
#include "libs/rpc/client.h"
#include "libs/rpc/status.h"
#include "libs/base/log.h"
#include "mailgrid/tenant/v1/directory.grpc.pb.h"
#include "mailgrid/tenant/v1/domain.grpc.pb.h"
#include "services/identity/first_reachable.h"

namespace mailgrid::identity {

absl::StatusOr<std::unique_ptr<GrpcDirectory>> GrpcDirectory::Create(
    std::vector<std::string> addresses, auth::ServiceTokenSource* tokens,
    const rpc::ClientOptions& tls) {
  auto dir = std::unique_ptr<GrpcDirectory>(new GrpcDirectory());
  dir->tokens_ = tokens;
  for (const std::string& address : addresses) {
    rpc::ClientOptions o = tls;
    o.target = address;
    o.services = {"mailgrid.tenant.v1.DirectoryService", "mailgrid.tenant.v1.DomainService"};
    ASSIGN_OR_RETURN(auto channel, rpc::MakeChannel(o));
    dir->channels_.push_back(std::move(channel));
  }
  return dir;
}

absl::StatusOr<tenant::v1::Principal> GrpcDirectory::Get(
    const tenant::v1::GetPrincipalRequest& request) {
  if (channels_.empty()) return absl::UnavailableError("tenantd is not configured (--tenantd)");
  if (tokens_ == nullptr)
    return absl::UnavailableError("no --token-signing-key: cannot call tenantd");
  ASSIGN_OR_RETURN(std::string header, tokens_->AuthorizationHeader());
  tenant::v1::Principal out;
  RETURN_IF_ERROR(CallFirstReachable(
      channels_, header, absl::Seconds(5), "tenantd",
      [&](const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext* ctx) {
        return tenant::v1::DirectoryService::NewStub(channel)->GetPrincipal(ctx, request, &out);
      }));
  return out;
}

absl::StatusOr<tenant::v1::Principal> GrpcDirectory::ByAddress(const std::string& address) {
  tenant::v1::GetPrincipalRequest req;
  req.set_address(address);
  return Get(req);
}

absl::StatusOr<tenant::v1::Principal> GrpcDirectory::ByUserId(const std::string& user_id) {
  tenant::v1::GetPrincipalRequest req;
  req.set_user_id(user_id);
  return Get(req);
}

absl::StatusOr<std::string> GrpcDirectory::TenantOfDomain(const std::string& domain) {
  if (channels_.empty()) return absl::UnavailableError("tenantd is not configured (--tenantd)");
  if (tokens_ == nullptr)
    return absl::UnavailableError("no --token-signing-key: cannot call tenantd");
  ASSIGN_OR_RETURN(std::string header, tokens_->AuthorizationHeader());
  tenant::v1::GetDomainRequest req;
  req.set_name(domain);
  tenant::v1::Domain out;
  absl::Status s = CallFirstReachable(
      channels_, header, absl::Seconds(5), "tenantd",
      [&](const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext* ctx) {
        return tenant::v1::DomainService::NewStub(channel)->GetDomain(ctx, req, &out);
      });
  if (absl::IsPermissionDenied(s)) {
    // A tenantd that does not let services read domains yet: no SSO by
    // domain, as if none were configured (the full address still works).
    log::Warn("tenantd refuses GetDomain to identityd: SSO by \"@domain\" is off",
              {{"error", s.ToString()}});
    return absl::NotFoundError("domain");
  }
  RETURN_IF_ERROR(s);
  if (out.state() != tenant::v1::DOMAIN_STATE_VERIFIED || out.tenant_id().empty())
    return absl::NotFoundError("domain");
  return out.tenant_id();
}

std::vector<std::string> RoleNames(const google::protobuf::RepeatedField<int>& roles) {
  std::vector<std::string> out;
  for (int r : roles) {
    switch (static_cast<common::v1::Role>(r)) {
      case common::v1::ROLE_USER:
        out.push_back(auth::kRoleUser);
        break;
      case common::v1::ROLE_TENANT_ADMIN:
        out.push_back(auth::kRoleTenantAdmin);
        break;
      case common::v1::ROLE_AUDITOR:
        out.push_back(auth::kRoleAuditor);
        break;
      case common::v1::ROLE_PLATFORM_OPERATOR:
        out.push_back(auth::kRolePlatformOperator);
        break;
      case common::v1::ROLE_PLATFORM_REVIEWER:
        out.push_back(auth::kRolePlatformReviewer);
        break;
      default:
        break;  // ROLE_SERVICE is never a user's
    }
  }
  if (out.empty()) out.push_back(auth::kRoleUser);
  return out;
}

common::v1::Role RoleFromName(const std::string& name) {
  if (name == auth::kRoleUser) return common::v1::ROLE_USER;
  if (name == auth::kRoleTenantAdmin) return common::v1::ROLE_TENANT_ADMIN;
  if (name == auth::kRoleAuditor) return common::v1::ROLE_AUDITOR;
  if (name == auth::kRolePlatformOperator) return common::v1::ROLE_PLATFORM_OPERATOR;
  if (name == auth::kRolePlatformReviewer) return common::v1::ROLE_PLATFORM_REVIEWER;
  if (name == auth::kRoleService) return common::v1::ROLE_SERVICE;
  return common::v1::ROLE_UNSPECIFIED;
}

}  // namespace mailgrid::identity
