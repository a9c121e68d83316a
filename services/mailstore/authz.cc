#include "services/mailstore/authz.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "libs/base/status.h"
#include "services/mailstore/errors.h"

namespace mailgrid::mailstore {
namespace {
// Daemons that may act for mailboxes (mailbox.proto: service-internal).
bool KnownService(const std::string& name) {
  return name == "relayd" || name == "accessd" || name == "tenantd" || name == "mailctl" ||
         name == "mailstored";
}
}  // namespace

absl::StatusOr<Principal> Authorizer::Authenticate(const grpc::ServerContextBase& ctx) const {
  if (verifier_ == nullptr) return Unauthenticated();
  auto it = ctx.client_metadata().find("authorization");
  if (it == ctx.client_metadata().end()) return Unauthenticated();
  std::string_view header(it->second.data(), it->second.size());
  if (!header.starts_with("Bearer ") && !header.starts_with("bearer ")) return Unauthenticated();
  auto claims = verifier_->Verify(header.substr(7));
  if (!claims.ok()) return Unauthenticated();
  if (claims->scope == "totp_enrolment") return PermissionDenied("token only allows TOTP enrolment");
  Principal p;
  p.subject = claims->subject;
  p.tenant_id = claims->tenant_id;
  p.service = claims->HasRole(auth::kRoleService) && KnownService(claims->service);
  p.service_name = claims->service;
  p.tenant_admin = claims->HasRole(auth::kRoleTenantAdmin);
  p.auditor = claims->HasRole(auth::kRoleAuditor);
  p.mailboxes = claims->mailbox_ids;
  return p;
}

absl::Status Authorizer::CheckService(const Principal& p) const {
  if (p.service) return absl::OkStatus();
  return PermissionDenied("service-internal call");
}

absl::Status Authorizer::CheckMailbox(const Principal& p, const std::string& mailbox_id,
                                      Access access) const {
  if (p.service) return absl::OkStatus();
  if (access == Access::kServiceOnly) return PermissionDenied("service-internal call");
  // Existence and tenant first, then the claim; every refusal is the same NOT_FOUND.
  auto tenant = store_->TenantOf(mailbox_id);
  if (!tenant.ok()) {
    if (tenant.status().code() == absl::StatusCode::kNotFound) return NotFound("mailbox", mailbox_id);
    return tenant.status();
  }
  if (p.tenant_id.empty() || *tenant != p.tenant_id) return NotFound("mailbox", mailbox_id);
  if (std::find(p.mailboxes.begin(), p.mailboxes.end(), mailbox_id) != p.mailboxes.end())
    return absl::OkStatus();
  if (access == Access::kUserOrAdmin && p.tenant_admin) return absl::OkStatus();
  return NotFound("mailbox", mailbox_id);
}

absl::Status Authorizer::CheckTenant(const Principal& p, const std::string& tenant_id,
                                     bool admin_only) const {
  if (p.service) return absl::OkStatus();
  if (p.tenant_id.empty() || p.tenant_id != tenant_id) return NotFound("tenant", tenant_id);
  if (p.tenant_admin || (!admin_only && p.auditor)) return absl::OkStatus();
  return PermissionDenied("tenant admin only");
}

}  // namespace mailgrid::mailstore
