// Mail identityd sends to people: the password-reset token to a user's
// recovery address. It goes through relayd (RelayService.SubmitMessage, a
// service-internal call with identityd's service token), which DKIM-signs
// it and delivers it locally or queues it for the recovery address's MX.
//
// Sending is asynchronous (one worker thread, a bounded queue): the caller
// (RequestPasswordReset) must answer in the same time whether the address
// exists or not, so it never waits for relayd. A failed send is logged and
// the user simply asks again; nothing reaches the caller.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "libs/auth/service_token.h"
#include "libs/rpc/client.h"
#include "mailgrid/relay/v1/relay.pb.h"
#include "mailgrid/tenant/v1/directory.pb.h"

namespace mailgrid::identity {

class Notices {
 public:
  virtual ~Notices() = default;
  // Queues `token` for user.recovery_email (which must be non-empty and
  // header-safe, else FAILED_PRECONDITION); RESOURCE_EXHAUSTED when the
  // queue is full.
  virtual absl::Status SendPasswordReset(const tenant::v1::User& user, const std::string& token,
                                         absl::Duration valid_for) = 0;
};

// The RFC 5322 reset notice (pure; unit-tested). From: no-reply at the
// user's own domain so relayd signs it with the tenant's DKIM key.
std::string ResetNoticeMessage(const tenant::v1::User& user, const std::string& token,
                               absl::Duration valid_for, absl::Time now);

// relayd over gRPC, trying each address in turn while unreachable.
class RelayNotices final : public Notices {
 public:
  // `tokens` may be null (no signing key): sends then fail UNAVAILABLE.
  static absl::StatusOr<std::unique_ptr<RelayNotices>> Create(std::vector<std::string> addresses,
                                                              auth::ServiceTokenSource* tokens,
                                                              const rpc::ClientOptions& tls);
  ~RelayNotices() override;  // sends what is queued, within a deadline each

  absl::Status SendPasswordReset(const tenant::v1::User& user, const std::string& token,
                                 absl::Duration valid_for) override;

 private:
  RelayNotices() = default;
  void Work();
  absl::Status Submit(const relay::v1::SubmitMessageRequest& request);

  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  auth::ServiceTokenSource* tokens_ = nullptr;
  absl::Mutex mu_;
  std::deque<relay::v1::SubmitMessageRequest> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

}  // namespace mailgrid::identity
