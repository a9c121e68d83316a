// A Backend for relayd's unit tests (outbound_test, relay_service_test):
// the directory hosts one domain, hosted.test, where bob@ and notices@
// exist (mailbox "mbx-<address>" of tenant t1) and every other address is
// NOT_FOUND; every other domain answers DOMAIN_NOT_HOSTED (a remote
// recipient). Deliveries are recorded and answered DELIVERED; the audit
// policy and the admin audit log are in memory.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "libs/rpc/errors.h"
#include "services/relay/backend.h"
#include "services/relay/null_backend.h"

namespace mailgrid::relay::testing {

class FakeBackend : public Backend {
 public:
  absl::StatusOr<tenant::v1::ResolveResponse> Resolve(
      const tenant::v1::ResolveRequest& req) override {
    const std::string& addr = req.address();
    if (!absl::EndsWith(addr, "@hosted.test")) {
      common::v1::RpcStatus d;
      common::v1::ErrorDetail e;
      e.set_reason("DOMAIN_NOT_HOSTED");
      d.add_details()->PackFrom(e);
      return rpc::WithDetails(absl::NotFoundError("domain not hosted"), d);
    }
    if (addr != "bob@hosted.test" && addr != "notices@hosted.test")
      return rpc::NotFound("address", addr);
    tenant::v1::ResolveResponse r;
    r.set_tenant_id("t1");
    auto* rc = r.add_recipients();
    rc->set_mailbox_id("mbx-" + addr);
    rc->set_address(addr);
    return r;
  }
  absl::StatusOr<bool> CanSendAs(const std::string&, const std::string&) override { return true; }
  absl::StatusOr<identity::v1::CheckSaslResponse> CheckSasl(
      const identity::v1::CheckSaslRequest&) override {
    return absl::UnauthenticatedError("no");
  }
  absl::StatusOr<mailstore::v1::DeliverBatchResponse> Deliver(
      uint32_t shard, const mailstore::v1::DeliverBatchRequest& req) override {
    {
      absl::MutexLock l(&mu);
      delivered.push_back(req);
    }
    return NullBackend("hosted.test").Deliver(shard, req);  // every recipient DELIVERED
  }
  absl::Status CountSubmission(const std::string&, const std::string&) override {
    return absl::OkStatus();
  }
  absl::StatusOr<tenant::v1::AuditPolicy> GetAuditPolicy(const std::string&) override {
    absl::MutexLock l(&mu);
    return audit_policy;
  }
  absl::Status AppendAdminAuditLog(const tenant::v1::AdminAuditEntry& e) override {
    absl::MutexLock l(&mu);
    audit_actions.push_back(e.action());
    return absl::OkStatus();
  }
  size_t Delivered() {
    absl::MutexLock l(&mu);
    return delivered.size();
  }

  absl::Mutex mu;
  std::vector<mailstore::v1::DeliverBatchRequest> delivered;  // under mu
  tenant::v1::AuditPolicy audit_policy;                       // under mu
  std::vector<std::string> audit_actions;                     // under mu
};

}  // namespace mailgrid::relay::testing
