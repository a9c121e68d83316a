#include "services/tenant/authz.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/base/strings.h"
#include "services/tenant/errors.h"
#include "services/tenant/tenant_storage.pb.h"

namespace mailgrid::tenant {
namespace {

common::v1::Role RoleEnum(std::string_view r) {
  if (r == auth::kRoleUser) return common::v1::ROLE_USER;
  if (r == auth::kRoleTenantAdmin) return common::v1::ROLE_TENANT_ADMIN;
  if (r == auth::kRoleAuditor) return common::v1::ROLE_AUDITOR;
  if (r == auth::kRolePlatformOperator) return common::v1::ROLE_PLATFORM_OPERATOR;
  if (r == auth::kRolePlatformReviewer) return common::v1::ROLE_PLATFORM_REVIEWER;
  if (r == auth::kRoleService) return common::v1::ROLE_SERVICE;
  return common::v1::ROLE_UNSPECIFIED;
}

// The client address gRPC saw ("ipv4:127.0.0.1:5000" -> "127.0.0.1").
std::string PeerIp(const grpc::ServerContextBase& ctx) {
  std::string peer = ctx.peer();
  for (std::string_view scheme : {"ipv4:", "ipv6:"}) {
    if (absl::StartsWith(peer, ToAbsl(scheme))) {
      peer.erase(0, scheme.size());
      size_t colon = peer.rfind(':');
      if (colon != std::string::npos) peer.erase(colon);
      if (!peer.empty() && peer.front() == '[') peer = peer.substr(1, peer.size() - 2);
      return peer;
    }
  }
  return "";
}

}  // namespace

bool Principal::HasRole(std::string_view role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

bool Principal::platform() const {
  return (tenant_id.empty() || tenant_id == kPlatformTenant) &&
         (HasRole(auth::kRolePlatformOperator) || HasRole(auth::kRolePlatformReviewer));
}

Principal Principal::Tenantd() {
  Principal p;
  p.kind = Kind::kAccessToken;
  p.subject = "tenantd";
  p.roles = {auth::kRoleService};
  return p;
}

common::v1::Actor Principal::ToActor() const {
  common::v1::Actor a;
  a.set_tenant_id(tenant_id);
  if (kind == Kind::kOnboarding) {
    a.set_user_id("onboarding-token");
  } else if (!HasRole(auth::kRoleService)) {
    a.set_user_id(subject);
  } else {
    a.set_service(subject);
  }
  a.set_address(address);
  for (const auto& r : roles) a.add_roles(RoleEnum(r));
  a.set_ip(ip);
  return a;
}

Authenticator::Authenticator(std::unique_ptr<auth::TokenVerifier> verifier, TenantStore* store)
    : verifier_(std::move(verifier)), store_(store) {}

absl::StatusOr<Principal> Authenticator::Authenticate(const grpc::ServerContextBase& ctx) const {
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  Principal p;
  if (it != md.end()) {
    std::string value(it->second.data(), it->second.size());
    if (!absl::StartsWithIgnoreCase(value, "Bearer ")) return Unauthenticated();
    ASSIGN_OR_RETURN(p, AuthenticateBearer(std::string_view(value).substr(7)));
  }
  p.ip = PeerIp(ctx);
  return p;
}

absl::StatusOr<Principal> Authenticator::AuthenticateBearer(std::string_view bearer) const {
  if (absl::StartsWith(ToAbsl(bearer), kOnboardingPrefix)) return Onboarding(bearer);
  if (verifier_ == nullptr) return Unauthenticated();
  auto claims = verifier_->Verify(bearer);
  if (!claims.ok()) {
    log::Debug("token refused", {{"why", claims.status()}});
    return Unauthenticated();
  }
  Principal p;
  p.kind = Principal::Kind::kAccessToken;
  p.tenant_id = claims->tenant_id;
  p.subject = claims->subject;
  p.address = claims->address;
  p.roles = claims->roles;
  // Verify refuses a token once now > exp + leeway: the same moment.
  p.valid_until = claims->expires_at + verifier_->leeway;
  return p;
}

absl::StatusOr<Principal> Authenticator::Onboarding(std::string_view token) const {
  std::string hash = Sha256(token);
  ASSIGN_OR_RETURN(std::optional<std::string> tenant_id,
                   store_->GetRaw(keys::Onboarding(Hex(hash))));
  if (!tenant_id.has_value()) return Unauthenticated();
  storage::TenantRecord record;
  ASSIGN_OR_RETURN(uint64_t version, store_->Get(keys::Tenant(*tenant_id), &record));
  // The index may outlive a replaced token for a moment; the record decides.
  if (version == 0 || record.onboarding_token_sha256() != hash ||
      FromProto(record.onboarding_expires_at()) < absl::Now() ||
      record.tenant().state() == tenant::v1::TENANT_STATE_DELETED) {
    return Unauthenticated();
  }
  Principal p;
  p.kind = Principal::Kind::kOnboarding;
  p.tenant_id = *tenant_id;
  p.subject = "onboarding";
  p.address = record.tenant().contact().email();
  p.roles = {auth::kRoleTenantAdmin};
  p.valid_until = FromProto(record.onboarding_expires_at());  // as checked above
  return p;
}

absl::Status CheckAccess(const Principal& p, std::string_view owner_tenant, const Who& who,
                         const absl::Status& not_found) {
  if (p.anonymous()) return who.anonymous ? absl::OkStatus() : Unauthenticated();
  if (who.any_authenticated) return absl::OkStatus();
  if (p.HasRole(auth::kRoleService) && p.tenant_id.empty()) {
    return who.service ? absl::OkStatus()
                       : PermissionDenied("service callers may not call this RPC");
  }
  if (p.platform()) {
    if ((who.platform_operator && p.HasRole(auth::kRolePlatformOperator)) ||
        (who.platform_reviewer && p.HasRole(auth::kRolePlatformReviewer))) {
      return absl::OkStatus();
    }
    return PermissionDenied(
        absl::StrCat("the caller's platform role does not allow this (needs ",
                     who.platform_operator ? "platform_operator" : "",
                     who.platform_operator && who.platform_reviewer ? " or " : "",
                     who.platform_reviewer ? "platform_reviewer" : "",
                     !who.platform_operator && !who.platform_reviewer ? "a tenant role" : "", ")"));
  }
  // A tenant's principal: another tenant's objects do not exist for it.
  if (p.tenant_id.empty() || p.tenant_id != owner_tenant) return not_found;
  if ((who.tenant_admin && p.HasRole(auth::kRoleTenantAdmin)) ||
      (who.auditor && p.HasRole(auth::kRoleAuditor))) {
    return absl::OkStatus();
  }
  return PermissionDenied("the caller's role in this tenant does not allow this");
}

absl::StatusOr<std::string> AuthorizeTenant(const Principal& p, std::string_view requested,
                                            const Who& who) {
  std::string tenant(requested);
  if (tenant.empty()) {
    if (p.anonymous()) return Unauthenticated();
    if (p.tenant_id.empty() || p.tenant_id == kPlatformTenant) {
      return InvalidField("tenant_id", "EMPTY", "must not be empty for platform callers");
    }
    tenant = p.tenant_id;
  }
  RETURN_IF_ERROR(CheckAccess(p, tenant, who, NotFound("tenant", tenant)));
  return tenant;
}

grpc::Status Serve(const Authenticator& auth, grpc::ServerContextBase* ctx, std::string_view rpc,
                   const std::function<absl::Status(const Principal&)>& body) {
  absl::Status status;
  auto principal = auth.Authenticate(*ctx);
  if (!principal.ok()) {
    status = principal.status();
  } else {
    status = body(*principal);
  }
  if (!status.ok()) {
    auto code = status.code();
    bool server_side = code == absl::StatusCode::kInternal || code == absl::StatusCode::kDataLoss ||
                       code == absl::StatusCode::kUnknown;
    log::Write(server_side ? log::Level::kError : log::Level::kDebug, "rpc failed",
               {{"rpc", rpc}, {"status", status}});
  }
  return ToGrpcStatus(status);
}

}  // namespace mailgrid::tenant
