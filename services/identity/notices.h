// Mail identityd sends to people: the password-reset token to a user's
// recovery address, and the security notices ("your factor changed") that
// tell a user a password, second factor, app password or recovery setting
// of theirs changed. They go through relayd (RelayService.SubmitMessage, a
// service-internal call with identityd's service token), which DKIM-signs
// them and delivers them locally or queues them for the recipient's MX.
//
// Sending is asynchronous (one worker thread, a bounded queue): no RPC ever
// waits for tenantd or relayd because of a notice (RequestPasswordReset
// must answer in the same time whether the address exists or not). The
// worker looks the user up in the directory at send time, retries while
// tenantd or relayd is unreachable (with backoff, a bounded number of
// times) and reuses each message's idempotency key on a retry, so relayd
// delivers it once. What is finally not sent is logged and counted
// (mailgrid_identity_notices_total{kind,result}); the queue is in memory,
// so notices still queued when identityd dies are lost (README).
#pragma once

#include <deque>
#include <memory>
#include <optional>
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
#include "mailgrid/common/v1/common.pb.h"
#include "mailgrid/relay/v1/relay.pb.h"
#include "mailgrid/tenant/v1/directory.pb.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"
#include "services/identity/directory.h"

namespace mailgrid::identity {

// Every change to how a user signs in or recovers the account.
enum class SecurityEvent {
  kPasswordChanged,          // self-service, with the current password
  kRequiredPasswordChanged,  // required at sign-in after an admin reset or expiry
  kPasswordReset,            // "forgot password": reset token or security answers
  kAdminPasswordReset,
  kTotpEnabled,
  kTotpDisabled,
  kRecoveryCodesRegenerated,
  kAppPasswordCreated,
  kAppPasswordRevoked,
  kSecurityQuestionsSet,
  kRecoveryEmailChanged,  // tenantd's UpdateUser owns the field (README "Known gaps")
};

// "password_changed", ...: the metric's kind label and part of the key.
std::string_view SecurityEventName(SecurityEvent event);

struct SecurityNotice {
  SecurityEvent event = SecurityEvent::kPasswordChanged;
  std::string tenant_id, user_id;
  absl::Time at;
  // Where the change came from: ip, user agent, description (as recorded
  // in the auth event; identityd's own peer when the client gave none).
  common::v1::ClientInfo client;
  bool by_admin = false;  // an administrator did it, not the user
  // Shown as is: the app password's name. Never a secret.
  std::string detail;
  // kRecoveryEmailChanged: the address that no longer receives resets.
  std::string old_recovery_email;
  // Unique per event: the base of the idempotency keys of its messages.
  std::string id;
};

// Who is told: the user's primary address always (hosted, delivered
// locally); the recovery address as well when the change can lock the
// owner out of the mailbox or changes how the account is recovered (every
// password change and reset, TOTP removed, security questions set,
// recovery email changed — then also the old recovery address). Empty,
// duplicate and header-unsafe addresses are left out.
std::vector<std::string> SecurityNoticeRecipients(const tenant::v1::User& user,
                                                  const SecurityNotice& notice);

// The RFC 5322 notice to `to` (pure; unit-tested): what changed, when
// (UTC), from which client/IP, by whom, and what to do if it was not them.
std::string SecurityNoticeMessage(const tenant::v1::User& user, const SecurityNotice& notice,
                                  const std::string& to);

class Notices {
 public:
  virtual ~Notices() = default;
  // Queues `token` for user.recovery_email (which must be non-empty and
  // header-safe, else FAILED_PRECONDITION); RESOURCE_EXHAUSTED when the
  // queue is full.
  virtual absl::Status SendPasswordReset(const tenant::v1::User& user, const std::string& token,
                                         absl::Duration valid_for) = 0;
  // Queues the notice of `notice.event` for user `notice.user_id`
  // (recipients as SecurityNoticeRecipients); RESOURCE_EXHAUSTED when the
  // queue is full, UNAVAILABLE when nothing can be sent.
  virtual absl::Status SendSecurityNotice(SecurityNotice notice) = 0;
};

// The RFC 5322 reset notice (pure; unit-tested). From: no-reply at the
// user's own domain so relayd signs it with the tenant's DKIM key.
std::string ResetNoticeMessage(const tenant::v1::User& user, const std::string& token,
                               absl::Duration valid_for, absl::Time now);

struct RelayNoticesOptions {
  // Attempts per message while relayd (or, for security notices, tenantd)
  // is unreachable; the wait doubles from `first_retry` between them
  // (defaults: 6 attempts over about a minute).
  int max_attempts = 6;
  absl::Duration first_retry = absl::Seconds(2);
  // Where mailgrid_identity_notices_total goes; null: not counted.
  prometheus::Registry* registry = nullptr;
};

// relayd over gRPC, trying each address in turn while unreachable.
class RelayNotices final : public Notices {
 public:
  // `tokens` may be null (no signing key): sends then fail UNAVAILABLE.
  // `directory` (may be null: security notices then fail UNAVAILABLE)
  // names a security notice's user and recipients when it is sent.
  static absl::StatusOr<std::unique_ptr<RelayNotices>> Create(std::vector<std::string> addresses,
                                                              auth::ServiceTokenSource* tokens,
                                                              const rpc::ClientOptions& tls,
                                                              Directory* directory = nullptr,
                                                              RelayNoticesOptions options = {});
  ~RelayNotices() override;  // tries what is queued once more, within a deadline each

  absl::Status SendPasswordReset(const tenant::v1::User& user, const std::string& token,
                                 absl::Duration valid_for) override;
  absl::Status SendSecurityNotice(SecurityNotice notice) override;

 private:
  // One queued notice: a security notice whose user is not looked up yet,
  // then (or from the start, for a reset) the messages still to submit.
  struct Job {
    std::string kind;  // the metric's label
    std::optional<SecurityNotice> unresolved;
    std::vector<relay::v1::SubmitMessageRequest> messages;
    int attempts = 0;
    absl::Time not_before = absl::InfinitePast();
  };

  RelayNotices() = default;
  absl::Status Enqueue(Job job);
  void Work();
  // Takes the next due job, waiting for one (`stopping` tells whether this
  // is the last attempt at shutdown); nullopt once stopping and empty.
  std::optional<Job> NextDue(bool* stopping);
  // One attempt; returns the job if something is left to retry.
  std::optional<Job> Attempt(Job job, bool last_chance);
  absl::Status Resolve(Job& job);
  absl::Status Submit(const relay::v1::SubmitMessageRequest& request);
  void Count(const std::string& kind, const char* result);

  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  auth::ServiceTokenSource* tokens_ = nullptr;
  Directory* directory_ = nullptr;
  RelayNoticesOptions options_;
  prometheus::Family<prometheus::Counter>* counters_ = nullptr;
  absl::Mutex mu_;
  absl::CondVar wake_;  // a job queued, or stopping
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

}  // namespace mailgrid::identity
