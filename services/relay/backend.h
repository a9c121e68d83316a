// What relayd asks other services, as one blocking interface (called on the
// worker pool, never on the SMTP loop). grpc_backend.cc talks to the real
// tenantd / identityd / mailstored / Redis; tests use a fake.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/rpc/errors.h"
#include "services/relay/delivery_retry_settings.h"
#include "mailgrid/identity/v1/auth.pb.h"
#include "mailgrid/mailstore/v1/mailbox.pb.h"
#include "mailgrid/tenant/v1/directory.pb.h"
#include "mailgrid/tenant/v1/domain.pb.h"
#include "mailgrid/tenant/v1/policy.pb.h"

namespace mailgrid::relay {

class Backend {
 public:
  virtual ~Backend() = default;
  // DirectoryService.Resolve. Errors carry tenantd's ErrorDetail reason
  // (rpc::ReasonOf): DOMAIN_NOT_HOSTED, ADDRESS_NOT_FOUND, ...
  virtual absl::StatusOr<tenant::v1::ResolveResponse> Resolve(
      const tenant::v1::ResolveRequest& request) = 0;
  // DirectoryService.ResolveMany: one result per request, in order; each
  // result's status is that address's Resolve error (code, message and
  // details). An error of the whole call (an older tenantd answers
  // UNIMPLEMENTED) leaves the caller to ask Resolve one by one. The default
  // (test fakes, NullBackend) is that: Resolve per request.
  virtual absl::StatusOr<tenant::v1::ResolveManyResponse> ResolveMany(
      const tenant::v1::ResolveManyRequest& request) {
    tenant::v1::ResolveManyResponse out;
    for (const tenant::v1::ResolveRequest& r : request.requests()) {
      absl::StatusOr<tenant::v1::ResolveResponse> one = Resolve(r);
      tenant::v1::ResolveResult* res = out.add_results();
      if (one.ok()) {
        *res->mutable_response() = *std::move(one);
        continue;
      }
      if (std::optional<common::v1::RpcStatus> d = rpc::DetailsOf(one.status()))
        *res->mutable_status() = *d;
      res->mutable_status()->set_code(static_cast<int>(one.status().code()));
      res->mutable_status()->set_message(std::string(one.status().message()));
    }
    return out;
  }
  // DirectoryService.CanSendAs.
  virtual absl::StatusOr<bool> CanSendAs(const std::string& user_id,
                                         const std::string& address) = 0;
  // AuthService.CheckSasl.
  virtual absl::StatusOr<identity::v1::CheckSaslResponse> CheckSasl(
      const identity::v1::CheckSaslRequest& request) = 0;
  // MailboxService.DeliverBatch on `shard` (every target is on it),
  // following leader redirects; idempotent by delivery_id.
  virtual absl::StatusOr<mailstore::v1::DeliverBatchResponse> Deliver(
      uint32_t shard, const mailstore::v1::DeliverBatchRequest& request) = 0;
  // How long and how often DeliverWithRetry sends a batch's TEMPORARY_FAILURE
  // recipients again (relayd's --delivery-retry-* flags; the defaults for
  // test fakes and the benchmark backend).
  virtual DeliveryRetry delivery_retry() const { return DeliveryRetry{}; }
  // Counts one submitted message; RESOURCE_EXHAUSTED when the user's or the
  // tenant's hourly limit is exceeded. OK when no limiter is configured.
  virtual absl::Status CountSubmission(const std::string& tenant_id,
                                       const std::string& user_id) = 0;
  // False when CountSubmission never refuses (no limiter, or limits off):
  // a session may then skip it (and its hand-off to a worker).
  virtual bool CountsSubmissions() const { return true; }
  // CountSubmission that also says how many more messages the user and the
  // tenant may submit this hour after this one (the smaller remainder;
  // INT64_MAX with no limit). A session far from its limits counts its next
  // messages at DATA instead of MAIL (smtp_session.cc). The default (test
  // fakes): CountSubmission with no room known (0), i.e. every MAIL counts.
  virtual absl::StatusOr<int64_t> CountSubmissionRoom(const std::string& tenant_id,
                                                      const std::string& user_id) {
    absl::Status s = CountSubmission(tenant_id, user_id);
    if (!s.ok()) return s;
    return 0;
  }
  // DomainService.GetDkimSigningKey (issue 9: signing outgoing mail).
  // NOT_FOUND: unknown or unverified domain (send unsigned). The default
  // (test fakes) has no keys.
  virtual absl::StatusOr<tenant::v1::GetDkimSigningKeyResponse> GetDkimSigningKey(
      const std::string& domain) {
    return absl::NotFoundError("no DKIM keys: " + domain);
  }
  // DirectoryService.GetSieveScript (inbox rules, inbox_rules.h). The
  // default (test fakes, the benchmark backend): UNIMPLEMENTED, no rules.
  virtual absl::StatusOr<tenant::v1::SieveScript> GetSieveScript(const std::string& user_id) {
    return absl::UnimplementedError("no inbox rules: " + user_id);
  }
  // Redis SET key NX with a TTL: true when set now, false when it was
  // there (vacation once per sender per N days, a redirect once per
  // delivery). The default: UNAVAILABLE (no memory: no vacation replies).
  virtual absl::StatusOr<bool> SetOnce(const std::string& key, absl::Duration ttl) {
    (void)ttl;
    return absl::UnavailableError("no memory for " + key);
  }
  virtual void Forget(const std::string& key) { (void)key; }

  // ---- Tenant mail policies (audit holds, monitoring copies: mail_policy.h).
  // The defaults (test fakes, the benchmark backend): UNIMPLEMENTED, read
  // as "no policy".
  virtual absl::StatusOr<tenant::v1::AuditPolicy> GetAuditPolicy(const std::string& tenant_id) {
    return absl::UnimplementedError("no audit policy: " + tenant_id);
  }
  virtual absl::StatusOr<tenant::v1::MonitoringPolicy> GetMonitoringPolicy(
      const std::string& tenant_id) {
    return absl::UnimplementedError("no monitoring policy: " + tenant_id);
  }
  // DirectoryService.GetUser / GetDepartment (a sender's departments and
  // their ancestors, for department conditions).
  virtual absl::StatusOr<tenant::v1::User> GetUser(const std::string& user_id) {
    return absl::UnimplementedError("no directory: " + user_id);
  }
  virtual absl::StatusOr<tenant::v1::Department> GetDepartment(const std::string& department_id) {
    return absl::UnimplementedError("no directory: " + department_id);
  }
  // DirectoryService.AppendAdminAuditLog (audit decisions, monitoring
  // copies, downloads of held mail). The default records nothing.
  virtual absl::Status AppendAdminAuditLog(const tenant::v1::AdminAuditEntry& entry) {
    (void)entry;
    return absl::OkStatus();
  }
};

}  // namespace mailgrid::relay
