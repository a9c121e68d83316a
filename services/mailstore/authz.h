// Who may do what (mailbox.proto ACCESS). The caller's identity comes only
// from the token; a mailbox the caller may not open answers NOT_FOUND, the
// same words as a missing one, so another tenant's mailbox ids cannot be
// probed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"
#include "libs/auth/token.h"
#include "services/mailstore/mail_store.h"

namespace mailgrid::mailstore {

struct Principal {
  std::string subject;
  std::string tenant_id;
  bool service = false;  // a trusted mailgrid daemon (relayd, accessd, tenantd, mailctl)
  std::string service_name;
  bool tenant_admin = false;
  bool auditor = false;
  std::vector<std::string> mailboxes;  // the "mbx" claim
};

enum class Access {
  kUser,          // a principal whose token opens the mailbox, or a service
  kUserOrAdmin,   // ... or a tenant admin of the mailbox's tenant
  kServiceOnly,   // service-internal
};

class Authorizer {
 public:
  Authorizer(std::unique_ptr<auth::TokenVerifier> verifier, MailStore* store)
      : verifier_(std::move(verifier)), store_(store) {}

  absl::StatusOr<Principal> Authenticate(const grpc::ServerContextBase& ctx) const;
  // NOT_FOUND for a mailbox the principal may not reach (or that does not exist).
  absl::Status CheckMailbox(const Principal& p, const std::string& mailbox_id, Access access) const;
  // Tenant-scoped calls (quota of a tenant, retention rules).
  absl::Status CheckTenant(const Principal& p, const std::string& tenant_id, bool admin_only) const;
  absl::Status CheckService(const Principal& p) const;

 private:
  std::unique_ptr<auth::TokenVerifier> verifier_;
  MailStore* store_;
};

}  // namespace mailgrid::mailstore
