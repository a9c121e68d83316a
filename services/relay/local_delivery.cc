#include "services/relay/local_delivery.h"

#include "absl/strings/str_cat.h"
#include "libs/base/status.h"
#include "libs/rpc/errors.h"
#include "services/relay/delivery_retry.h"
#include "services/relay/headers.h"

namespace mailgrid::relay {

absl::StatusOr<ResolvedRecipient> ResolveRecipient(Backend& backend, const std::string& address,
                                                   const tenant::v1::SenderContext& sender) {
  tenant::v1::ResolveRequest req;
  req.set_address(address);
  *req.mutable_sender() = sender;
  ResolvedRecipient out;
  out.address = address;
  absl::StatusOr<tenant::v1::ResolveResponse> r = backend.Resolve(req);
  if (!r.ok()) {
    if (r.status().code() == absl::StatusCode::kNotFound &&
        rpc::ReasonOf(r.status()) == "DOMAIN_NOT_HOSTED") {
      out.remote = true;
      return out;
    }
    return r.status();
  }
  out.response = *std::move(r);
  return out;
}

absl::StatusOr<std::map<std::string, mailstore::v1::DeliveryStatus>> DeliverToMailboxes(
    Backend& backend, const std::string& delivery_id, const std::string& message, absl::Time at,
    const std::vector<MailboxTarget>& targets) {
  std::map<uint32_t, mailstore::v1::DeliverBatchRequest> reqs;
  for (const MailboxTarget& t : targets) {
    auto [it, fresh] = reqs.try_emplace(t.shard);
    if (fresh) {
      it->second.set_delivery_id(delivery_id);
      it->second.set_message(message);
      it->second.mutable_internal_date()->set_seconds(absl::ToUnixSeconds(at));
    }
    it->second.add_recipients()->set_mailbox_id(t.mailbox_id);
  }
  std::map<std::string, mailstore::v1::DeliveryStatus> out;
  for (const auto& [shard, req] : reqs) {
    ASSIGN_OR_RETURN(mailstore::v1::DeliverBatchResponse resp,
                     DeliverWithRetry(backend, shard, req));
    for (int i = 0; i < req.recipients_size(); ++i) {
      const std::string& id = req.recipients(i).mailbox_id();
      out[id] = i < resp.results_size() ? resp.results(i).status()
                                        : mailstore::v1::DELIVERY_STATUS_TEMPORARY_FAILURE;
    }
  }
  return out;
}

std::string LocalTraceFields(const std::string& hostname, const std::string& envelope_from,
                             const std::string& queue_id, absl::Time at) {
  return absl::StrCat("Return-Path: <", envelope_from, ">\r\n", "Received: by ", Sanitize(hostname),
                      " (mailgrid relayd) with LOCAL id ", Sanitize(queue_id), "; ",
                      Rfc5322Date(at), "\r\n");
}

}  // namespace mailgrid::relay
