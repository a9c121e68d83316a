// Who is calling, and may they? Every tenantd RPC starts here.
//
// SECURITY: the caller's identity comes only from `authorization: Bearer`
// metadata, never from a request field (common.proto, WHO IS CALLING):
//   * a JWS access token (libs/auth), verified with the public keys given
//     to tenantd (--token-public-key); platform staff hold platform roles
//     with an empty tenant or the reserved tenant "platform";
//   * an onboarding token ("mgot_..."), which tenantd alone accepts: tenant
//     admin of exactly one tenant, while it is active (tenant.proto);
//   * nothing: anonymous, allowed only where an RPC says "no token".
// A bad token is UNAUTHENTICATED with one uniform message. A tenant-scoped
// caller naming another tenant's object gets the same NOT_FOUND as for an
// absent object; a caller who may see the object but lacks the role gets
// PERMISSION_DENIED.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"
#include "libs/auth/token.h"
#include "mailgrid/common/v1/common.pb.h"
#include "services/tenant/tenant_store.h"

namespace mailgrid::tenant {

inline constexpr char kPlatformTenant[] = "platform";
inline constexpr char kOnboardingPrefix[] = "mgot_";

struct Principal {
  enum class Kind { kAnonymous, kAccessToken, kOnboarding };
  Kind kind = Kind::kAnonymous;
  std::string tenant_id;  // empty for platform staff and services
  std::string subject;
  std::string address;
  std::vector<std::string> roles;
  std::string ip;
  // The last moment Authenticate still accepts this credential: a token's
  // exp plus the verifier's leeway, an onboarding token's expiry. A
  // long-lived stream re-checks it with ValidAt (ResolveStream), so a
  // stream and a unary call agree on the same token.
  absl::Time valid_until = absl::InfiniteFuture();

  // tenantd acting on its own (background rounds: purges, domain checks),
  // for the audit log and calls to its peers.
  static Principal Tenantd();

  bool anonymous() const { return kind == Kind::kAnonymous; }
  bool ValidAt(absl::Time now) const { return now <= valid_until; }
  bool HasRole(std::string_view role) const;
  // Platform staff: a platform role and no tenant (or the platform tenant).
  bool platform() const;
  // Who did it, for events and the audit log.
  common::v1::Actor ToActor() const;
};

// Who may call an RPC (the "Who:" line of its proto comment).
struct Who {
  bool anonymous = false;          // no token needed
  bool any_authenticated = false;  // any valid token
  bool platform_operator = false;
  bool platform_reviewer = false;
  bool tenant_admin = false;  // own tenant only; the onboarding token counts
  bool auditor = false;       // own tenant only
  bool service = false;       // service-internal
};

class Authenticator {
 public:
  // `verifier` may be null: then only onboarding tokens and anonymous calls
  // are accepted (tenantd started without --token-public-key).
  Authenticator(std::unique_ptr<auth::TokenVerifier> verifier, TenantStore* store);

  // Anonymous when there is no authorization metadata; UNAUTHENTICATED when
  // there is one that does not check out.
  absl::StatusOr<Principal> Authenticate(const grpc::ServerContextBase& ctx) const;
  absl::StatusOr<Principal> AuthenticateBearer(std::string_view bearer) const;

 private:
  absl::StatusOr<Principal> Onboarding(std::string_view token) const;

  std::unique_ptr<auth::TokenVerifier> verifier_;
  TenantStore* store_;
};

// May `p` act on objects of `owner_tenant` as `who` allows? `not_found` is
// returned when a tenant-scoped caller asks about another tenant.
absl::Status CheckAccess(const Principal& p, std::string_view owner_tenant, const Who& who,
                         const absl::Status& not_found);

// The tenant a tenant-scoped request is about: the request's tenant_id, or
// the caller's own tenant when it left it empty; then CheckAccess.
absl::StatusOr<std::string> AuthorizeTenant(const Principal& p, std::string_view requested,
                                            const Who& who);

// Authenticates, runs `body`, converts its status (errors.h) and logs
// failures. Every unary handler is one call to this.
grpc::Status Serve(const Authenticator& auth, grpc::ServerContextBase* ctx, std::string_view rpc,
                   const std::function<absl::Status(const Principal&)>& body);

}  // namespace mailgrid::tenant
