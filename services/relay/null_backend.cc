#include "services/relay/null_backend.h"

#include "absl/strings/match.h"

namespace mailgrid::relay {

absl::StatusOr<tenant::v1::ResolveResponse> NullBackend::Resolve(
    const tenant::v1::ResolveRequest& req) {
  if (!absl::EndsWithIgnoreCase(req.address(), "@" + domain_)) {
    return absl::NotFoundError("not the bench domain");
  }
  tenant::v1::ResolveResponse r;
  r.set_canonical_address(req.address());
  r.set_posting_decision(tenant::v1::POSTING_DECISION_ALLOWED);
  auto* rc = r.add_recipients();
  rc->set_mailbox_id("null:" + req.address());
  rc->set_address(req.address());
  return r;
}

absl::StatusOr<mailstore::v1::DeliverBatchResponse> NullBackend::Deliver(
    uint32_t, const mailstore::v1::DeliverBatchRequest& req) {
  mailstore::v1::DeliverBatchResponse r;
  for (const auto& t : req.recipients()) {
    auto* res = r.add_results();
    res->set_mailbox_id(t.mailbox_id());
    res->set_status(mailstore::v1::DELIVERY_STATUS_DELIVERED);
  }
  return r;
}

}  // namespace mailgrid::relay
