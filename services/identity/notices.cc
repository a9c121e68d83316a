#include "services/identity/notices.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/rpc/client.h"
#include "libs/rpc/status.h"
#include "mailgrid/relay/v1/relay.grpc.pb.h"
#include "services/identity/first_reachable.h"
#include "services/identity/sessions.h"

namespace mailgrid::identity {
namespace {

std::string DomainOf(const std::string& address) {
  auto at = address.rfind('@');
  return at == std::string::npos ? std::string() : address.substr(at + 1);
}

// Addresses come from the directory, which validated them; refusing CR/LF
// here still keeps a bad record from injecting header fields.
bool HeaderSafe(const std::string& s) { return s.find_first_of("\r\n") == std::string::npos; }

// Reset requests are rate-limited per address upstream; this bounds memory
// if relayd is down for long.
constexpr size_t kMaxQueued = 1000;

}  // namespace

std::string ResetNoticeMessage(const tenant::v1::User& user, const std::string& token,
                               absl::Duration valid_for, absl::Time now) {
  const std::string domain = DomainOf(user.address());
  const int minutes = static_cast<int>(absl::ToInt64Minutes(valid_for));
  std::string m;
  absl::StrAppend(&m, "From: Password reset <no-reply@", domain, ">\r\n");
  absl::StrAppend(&m, "To: <", user.recovery_email(), ">\r\n");
  absl::StrAppend(&m, "Subject: Password reset for ", user.address(), "\r\n");
  absl::StrAppend(&m, "Date: ", absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", now, absl::UTCTimeZone()),
                  "\r\n");
  absl::StrAppend(&m, "Message-ID: <reset.", RandomToken(12), "@", domain, ">\r\n");
  // RFC 3834: an automatic message; no auto-replies to it.
  absl::StrAppend(&m, "Auto-Submitted: auto-generated\r\n");
  absl::StrAppend(&m, "MIME-Version: 1.0\r\n");
  absl::StrAppend(&m, "Content-Type: text/plain; charset=utf-8\r\n");
  absl::StrAppend(&m, "Content-Transfer-Encoding: 7bit\r\n\r\n");
  absl::StrAppend(&m, "Someone asked to reset the password of ", user.address(), ".\r\n\r\n");
  absl::StrAppend(&m, "Reset token: ", token, "\r\n\r\n");
  absl::StrAppend(&m, "It works once, for ", minutes, " minutes:\r\n");
  absl::StrAppend(&m, "  mailctl auth reset-password complete ", user.address(),
                  " --reset-token TOKEN --new-password NEW\r\n\r\n");
  absl::StrAppend(&m, "If it was not you, ignore this message; your password is unchanged.\r\n");
  return m;
}

absl::StatusOr<std::unique_ptr<RelayNotices>> RelayNotices::Create(
    std::vector<std::string> addresses, auth::ServiceTokenSource* tokens,
    const rpc::ClientOptions& tls) {
  auto n = std::unique_ptr<RelayNotices>(new RelayNotices());
  n->tokens_ = tokens;
  n->worker_ = std::thread([p = n.get()] { p->Work(); });
  for (const std::string& address : addresses) {
    rpc::ClientOptions o = tls;
    o.target = address;
    o.services = {"mailgrid.relay.v1.RelayService"};
    ASSIGN_OR_RETURN(auto channel, rpc::MakeChannel(o));
    n->channels_.push_back(std::move(channel));
  }
  return n;
}

absl::Status RelayNotices::SendPasswordReset(const tenant::v1::User& user,
                                             const std::string& token, absl::Duration valid_for) {
  if (user.recovery_email().empty() || !HeaderSafe(user.recovery_email()) ||
      !HeaderSafe(user.address()))
    return absl::FailedPreconditionError("the user has no usable recovery email");
  if (channels_.empty()) return absl::UnavailableError("relayd is not configured (--relayd)");
  if (tokens_ == nullptr) return absl::UnavailableError("no --token-signing-key: cannot call relayd");
  relay::v1::SubmitMessageRequest req;
  req.set_envelope_from("");  // the null sender: a notice is never bounced back
  req.add_recipients(user.recovery_email());
  req.set_message(ResetNoticeMessage(user, token, valid_for, absl::Now()));
  req.set_tenant_id(user.tenant_id());
  req.set_kind(relay::v1::SUBMISSION_KIND_PASSWORD_RESET);
  // A retry of this very notice (same token) is not sent twice.
  req.set_idempotency_key(absl::StrCat("reset:", absl::BytesToHexString(Sha256(token)).substr(0, 32)));
  absl::MutexLock lock(&mu_);
  if (queue_.size() >= kMaxQueued) return absl::ResourceExhaustedError("notice queue full");
  queue_.push_back(std::move(req));
  return absl::OkStatus();
}

RelayNotices::~RelayNotices() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (worker_.joinable()) worker_.join();
}

void RelayNotices::Work() {
  for (;;) {
    relay::v1::SubmitMessageRequest req;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](RelayNotices* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(n->mu_) {
            return n->stopping_ || !n->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stopping, and nothing left to send
      req = std::move(queue_.front());
      queue_.pop_front();
    }
    if (absl::Status s = Submit(req); !s.ok())
      log::Warn("notice not sent", {{"kind", relay::v1::SubmissionKind_Name(req.kind())},
                                    {"tenant_id", req.tenant_id()},
                                    {"error", s.ToString()}});
  }
}

absl::Status RelayNotices::Submit(const relay::v1::SubmitMessageRequest& req) {
  ASSIGN_OR_RETURN(std::string header, tokens_->AuthorizationHeader());
  relay::v1::SubmitMessageResponse resp;
  return CallFirstReachable(
      channels_, header, absl::Seconds(15), "relayd",
      [&](const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext* ctx) {
        return relay::v1::RelayService::NewStub(channel)->SubmitMessage(ctx, req, &resp);
      });
}

}  // namespace mailgrid::identity
