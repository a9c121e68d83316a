// A Backend that accepts every recipient of one domain and throws messages
// away: for measuring the SMTP edge alone (bench/relay), never for mail.
// Only built with MAILGRID_TEST_HOOKS (flag --bench-null-backend=DOMAIN).
#pragma once

#include <atomic>
#include <string>

#include "services/relay/backend.h"

namespace mailgrid::relay {

class NullBackend final : public Backend {
 public:
  explicit NullBackend(std::string domain) : domain_(std::move(domain)) {}
  absl::StatusOr<tenant::v1::ResolveResponse> Resolve(
      const tenant::v1::ResolveRequest& req) override;
  absl::StatusOr<bool> CanSendAs(const std::string&, const std::string&) override { return true; }
  absl::StatusOr<identity::v1::CheckSaslResponse> CheckSasl(
      const identity::v1::CheckSaslRequest&) override {
    return absl::UnauthenticatedError("null backend");
  }
  absl::StatusOr<mailstore::v1::DeliverBatchResponse> Deliver(
      uint32_t shard, const mailstore::v1::DeliverBatchRequest& req) override;
  absl::Status CountSubmission(const std::string&, const std::string&) override {
    return absl::OkStatus();
  }

 private:
  std::string domain_;
};

}  // namespace mailgrid::relay
