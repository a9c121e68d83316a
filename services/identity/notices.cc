#include "services/identity/notices.h"

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/rpc/client.h"
#include "libs/rpc/status.h"
#include "mailgrid/relay/v1/relay.grpc.pb.h"
#include "prometheus/counter.h"
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

// Reset requests are rate-limited per address upstream and factor changes
// need a signed-in user or an admin; this bounds memory if relayd is down
// for long.
constexpr size_t kMaxQueued = 1000;

bool Ascii(std::string_view s) {
  for (char ch : s)
    if (static_cast<unsigned char>(ch) >= 0x80) return false;
  return true;
}

// A whole notice: the header every notice shares, then `body` (CRLF lines).
// From: `from_name` <no-reply@ the user's domain> so relayd signs it with
// the tenant's DKIM key; `id_prefix` starts the Message-ID's local part.
std::string NoticeMail(const std::string& from_name, const std::string& user_address,
                       const std::string& to, const std::string& subject, absl::Time date,
                       const std::string& id_prefix, const std::string& body) {
  const std::string domain = DomainOf(user_address);
  std::string m;
  absl::StrAppend(&m, "From: ", from_name, " <no-reply@", domain, ">\r\n");
  absl::StrAppend(&m, "To: <", to, ">\r\n");
  absl::StrAppend(&m, "Subject: ", subject, "\r\n");
  absl::StrAppend(
      &m, "Date: ", absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", date, absl::UTCTimeZone()),
      "\r\n");
  absl::StrAppend(&m, "Message-ID: <", id_prefix, ".", RandomToken(12), "@", domain, ">\r\n");
  // RFC 3834: an automatic message; no auto-replies to it.
  absl::StrAppend(&m, "Auto-Submitted: auto-generated\r\n");
  absl::StrAppend(&m, "MIME-Version: 1.0\r\n");
  absl::StrAppend(&m, "Content-Type: text/plain; charset=utf-8\r\n");
  // A user agent or app password name may be UTF-8 (outbound announces
  // BODY=8BITMIME where the peer offers it).
  absl::StrAppend(&m, "Content-Transfer-Encoding: ", Ascii(body) ? "7bit" : "8bit", "\r\n\r\n");
  absl::StrAppend(&m, body);
  return m;
}

// Text a client or a user chose (user agent, app password name), shown in
// a notice: control characters become spaces (no line of its own, no bare
// LF for relayd to refuse), at most 120 bytes, cut on a UTF-8 boundary.
std::string Shown(std::string_view text) {
  std::string out;
  for (char ch : text) {
    unsigned char c = static_cast<unsigned char>(ch);
    out.push_back(c < 0x20 || c == 0x7f ? ' ' : ch);
  }
  if (out.size() > 120) {
    size_t cut = 120;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out = absl::StrCat(out.substr(0, cut), "...");
  }
  return out;
}

// Kinds whose notice also goes to the recovery address: the change can lock
// the owner out of the mailbox (where the first copy lands) or changes how
// the account is recovered.
bool TellsRecoveryAddress(SecurityEvent e) {
  switch (e) {
    case SecurityEvent::kPasswordChanged:
    case SecurityEvent::kRequiredPasswordChanged:
    case SecurityEvent::kPasswordReset:
    case SecurityEvent::kAdminPasswordReset:
    case SecurityEvent::kTotpDisabled:
    case SecurityEvent::kSecurityQuestionsSet:
    case SecurityEvent::kRecoveryEmailChanged:
      return true;
    default:
      return false;
  }
}

// What a notice says: its subject, the sentence saying what changed and
// the advice if it was not the user.
struct Wording {
  std::string subject, what, advice;
};

constexpr char kTakeOver[] =
    "Someone else may have your password. Reset it now (\"forgot password\"),\r\n"
    "check your app passwords and recovery settings, and tell your mail\r\n"
    "administrator.";
constexpr char kTakenOver[] =
    "Your account may have been taken over. Ask your mail administrator at\r\n"
    "once to reset your password and sign out every session.";

Wording WordingOf(const SecurityNotice& n) {
  const std::string name = absl::StrCat("\"", Shown(n.detail), "\"");
  switch (n.event) {
    case SecurityEvent::kPasswordChanged:
      return {"Your password was changed", "Your password was changed.", kTakeOver};
    case SecurityEvent::kRequiredPasswordChanged:
      return {"Your password was changed",
              "Your password was changed at sign-in, a change your organisation\r\nrequired.",
              kTakeOver};
    case SecurityEvent::kPasswordReset:
      return {"Your password was reset",
              absl::StrCat("Your password was reset with \"forgot password\"",
                           n.detail.empty() ? "" : absl::StrCat(" (", Shown(n.detail), ")"),
                           ".\r\nEvery session was signed out."),
              kTakenOver};
    case SecurityEvent::kAdminPasswordReset:
      return {"Your password was reset by an administrator",
              "An administrator of your organisation reset your password. Every\r\n"
              "session was signed out; you choose a new password at your next sign-in.",
              "Ask your mail administrator why, through a channel other than email."};
    case SecurityEvent::kTotpEnabled:
      return {"Two-factor sign-in was turned on",
              "Two-factor sign-in (authenticator app codes) was turned on, with new\r\n"
              "recovery codes.",
              "Someone else can sign in as you. Ask your mail administrator to turn\r\n"
              "two-factor sign-in off and to reset your password."};
    case SecurityEvent::kTotpDisabled:
      return {"Two-factor sign-in was turned off",
              "Two-factor sign-in was turned off; its recovery codes no longer work.",
              "Change your password, turn two-factor sign-in on again, and tell your\r\n"
              "mail administrator."};
    case SecurityEvent::kRecoveryCodesRegenerated:
      return {"New recovery codes were issued",
              "New two-factor recovery codes were issued; the old ones no longer work.", kTakeOver};
    case SecurityEvent::kAppPasswordCreated:
      return {
          "An app password was created",
          absl::StrCat("An app password was created: ", name,
                       "\r\nIt signs a mail program in over IMAP, POP3 or SMTP."),
          absl::StrCat("Revoke it (mailctl auth app-password list, then revoke).\r\n", kTakeOver)};
    case SecurityEvent::kAppPasswordRevoked:
      return {"An app password was revoked",
              absl::StrCat("An app password was revoked: ", name,
                           "\r\nMail programs using it can no longer sign in."),
              kTakeOver};
    case SecurityEvent::kSecurityQuestionsSet:
      return {"Your security questions were changed",
              "Your security questions were set; they help to reset a forgotten\r\npassword.",
              kTakeOver};
    case SecurityEvent::kRecoveryEmailChanged:
      return {"Your recovery email address was changed",
              "Your recovery email address was changed; password-reset mail now goes\r\n"
              "to the new one.",
              "Your account may have been taken over. Ask your mail administrator at\r\n"
              "once to restore your recovery address and reset your password."};
  }
  return {"Security notice", "A sign-in setting of your account was changed.", kTakeOver};
}

// "By:" line of the body. Without an admin, whoever signed in as the user
// or got through the reset: what the notice is there to question.
const char* ActorOf(const SecurityNotice& n) {
  if (n.by_admin) return "an administrator of your organisation";
  if (n.event == SecurityEvent::kPasswordReset) return "you, or someone who got through the reset";
  return "you, or someone signed in as you";
}

// "From:" line of the body: the client's IP and how it described itself.
std::string ClientLine(const common::v1::ClientInfo& c) {
  std::string out = c.ip().empty() ? "unknown address" : absl::StrCat("IP ", Shown(c.ip()));
  if (!c.user_agent().empty()) absl::StrAppend(&out, ", ", Shown(c.user_agent()));
  if (!c.description().empty()) absl::StrAppend(&out, " (", Shown(c.description()), ")");
  return out;
}

}  // namespace

std::string_view SecurityEventName(SecurityEvent event) {
  switch (event) {
    case SecurityEvent::kPasswordChanged:
      return "password_changed";
    case SecurityEvent::kRequiredPasswordChanged:
      return "required_password_changed";
    case SecurityEvent::kPasswordReset:
      return "password_reset";
    case SecurityEvent::kAdminPasswordReset:
      return "admin_password_reset";
    case SecurityEvent::kTotpEnabled:
      return "totp_enabled";
    case SecurityEvent::kTotpDisabled:
      return "totp_disabled";
    case SecurityEvent::kRecoveryCodesRegenerated:
      return "recovery_codes_regenerated";
    case SecurityEvent::kAppPasswordCreated:
      return "app_password_created";
    case SecurityEvent::kAppPasswordRevoked:
      return "app_password_revoked";
    case SecurityEvent::kSecurityQuestionsSet:
      return "security_questions_set";
    case SecurityEvent::kRecoveryEmailChanged:
      return "recovery_email_changed";
  }
  return "unknown";
}

std::vector<std::string> SecurityNoticeRecipients(const tenant::v1::User& user,
                                                  const SecurityNotice& notice) {
  std::vector<std::string> out;
  auto add = [&](const std::string& address) {
    if (address.empty() || !HeaderSafe(address)) return;
    for (const std::string& seen : out)
      if (absl::EqualsIgnoreCase(seen, address)) return;
    out.push_back(address);
  };
  add(user.address());
  if (TellsRecoveryAddress(notice.event)) add(user.recovery_email());
  if (notice.event == SecurityEvent::kRecoveryEmailChanged) add(notice.old_recovery_email);
  return out;
}

std::string SecurityNoticeMessage(const tenant::v1::User& user, const SecurityNotice& n,
                                  const std::string& to) {
  const Wording w = WordingOf(n);
  std::string body;
  absl::StrAppend(&body, w.what, "\r\n\r\n");
  absl::StrAppend(&body, "  Account: ", user.address(), "\r\n");
  absl::StrAppend(&body, "  When:    ",
                  absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", n.at, absl::UTCTimeZone()), "\r\n");
  absl::StrAppend(&body, "  From:    ", ClientLine(n.client), "\r\n");
  absl::StrAppend(&body, "  By:      ", ActorOf(n), "\r\n\r\n");
  if (n.event == SecurityEvent::kRecoveryEmailChanged &&
      absl::EqualsIgnoreCase(to, n.old_recovery_email))
    absl::StrAppend(&body, "You receive this because this address was the recovery address of ",
                    user.address(), " until now.\r\n\r\n");
  absl::StrAppend(&body, "If this was you, there is nothing to do.\r\n");
  absl::StrAppend(&body, "If it was not you:\r\n", w.advice, "\r\n\r\n");
  absl::StrAppend(&body,
                  "This message is automatic. We never send a password or a code by mail.\r\n");

  return NoticeMail("Security notice", user.address(), to, w.subject, n.at, "notice", body);
}

std::string ResetNoticeMessage(const tenant::v1::User& user, const std::string& token,
                               absl::Duration valid_for, absl::Time now) {
  const int minutes = static_cast<int>(absl::ToInt64Minutes(valid_for));
  std::string body;
  absl::StrAppend(&body, "Someone asked to reset the password of ", user.address(), ".\r\n\r\n");
  absl::StrAppend(&body, "Reset token: ", token, "\r\n\r\n");
  absl::StrAppend(&body, "It works once, for ", minutes, " minutes:\r\n");
  absl::StrAppend(&body, "  mailctl auth reset-password complete ", user.address(),
                  " --reset-token TOKEN --new-password NEW\r\n\r\n");
  absl::StrAppend(&body, "If it was not you, ignore this message; your password is unchanged.\r\n");
  return NoticeMail("Password reset", user.address(), user.recovery_email(),
                    absl::StrCat("Password reset for ", user.address()), now, "reset", body);
}

absl::StatusOr<std::unique_ptr<RelayNotices>> RelayNotices::Create(
    std::vector<std::string> addresses, auth::ServiceTokenSource* tokens,
    const rpc::ClientOptions& tls, Directory* directory, RelayNoticesOptions options) {
  auto n = std::unique_ptr<RelayNotices>(new RelayNotices());
  n->tokens_ = tokens;
  n->directory_ = directory;
  n->options_ = options;
  if (options.registry != nullptr)
    n->counters_ = &prometheus::BuildCounter()
                        .Name("mailgrid_identity_notices_total")
                        .Help(
                            "Mail identityd sent through relayd (reset tokens, security notices), "
                            "by kind and result: sent, failed, no_user, queue_full")
                        .Register(*options.registry);
  for (const std::string& address : addresses) {
    rpc::ClientOptions o = tls;
    o.target = address;
    o.services = {"mailgrid.relay.v1.RelayService"};
    ASSIGN_OR_RETURN(auto channel, rpc::MakeChannel(o));
    n->channels_.push_back(std::move(channel));
  }
  n->worker_ = std::thread([p = n.get()] { p->Work(); });
  return n;
}

absl::Status RelayNotices::SendPasswordReset(const tenant::v1::User& user, const std::string& token,
                                             absl::Duration valid_for) {
  if (user.recovery_email().empty() || !HeaderSafe(user.recovery_email()) ||
      !HeaderSafe(user.address()))
    return absl::FailedPreconditionError("the user has no usable recovery email");
  if (channels_.empty()) return absl::UnavailableError("relayd is not configured (--relayd)");
  if (tokens_ == nullptr)
    return absl::UnavailableError("no --token-signing-key: cannot call relayd");
  relay::v1::SubmitMessageRequest req;
  req.set_envelope_from("");  // the null sender: a notice is never bounced back
  req.add_recipients(user.recovery_email());
  req.set_message(ResetNoticeMessage(user, token, valid_for, absl::Now()));
  req.set_tenant_id(user.tenant_id());
  req.set_kind(relay::v1::SUBMISSION_KIND_PASSWORD_RESET);
  // A retry of this very notice (same token) is not sent twice.
  req.set_idempotency_key(
      absl::StrCat("reset:", absl::BytesToHexString(Sha256(token)).substr(0, 32)));
  Job job;
  job.kind = "password_reset_token";
  job.messages.push_back(std::move(req));
  return Enqueue(std::move(job));
}

absl::Status RelayNotices::SendSecurityNotice(SecurityNotice notice) {
  if (channels_.empty()) return absl::UnavailableError("relayd is not configured (--relayd)");
  if (tokens_ == nullptr)
    return absl::UnavailableError("no --token-signing-key: cannot call relayd");
  if (directory_ == nullptr) return absl::UnavailableError("no directory to address the notice");
  Job job;
  job.kind = std::string(SecurityEventName(notice.event));
  if (notice.id.empty()) notice.id = RandomToken(12);
  job.unresolved = std::move(notice);
  return Enqueue(std::move(job));
}

absl::Status RelayNotices::Enqueue(Job job) {
  {
    absl::MutexLock lock(&mu_);
    if (queue_.size() < kMaxQueued) {
      queue_.push_back(std::move(job));
      wake_.Signal();
      return absl::OkStatus();
    }
  }
  Count(job.kind, "queue_full");
  return absl::ResourceExhaustedError("notice queue full");
}

RelayNotices::~RelayNotices() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    wake_.Signal();
  }
  if (worker_.joinable()) worker_.join();
}

void RelayNotices::Work() {
  for (;;) {
    bool stopping = false;
    std::optional<Job> job = NextDue(&stopping);
    if (!job) return;  // stopping, and nothing left to send
    const bool last_chance = stopping || ++job->attempts >= options_.max_attempts;
    std::optional<Job> left = Attempt(std::move(*job), last_chance);
    if (!left) continue;
    left->not_before = absl::Now() + options_.first_retry * (1 << (left->attempts - 1));
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(*left));
  }
}

std::optional<RelayNotices::Job> RelayNotices::NextDue(bool* stopping) {
  absl::MutexLock lock(&mu_);
  for (;;) {
    const absl::Time now = absl::Now();
    absl::Time earliest = absl::InfiniteFuture();
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      // Stopping: one last attempt for everything, due or not.
      if (stopping_ || it->not_before <= now) {
        Job job = std::move(*it);
        queue_.erase(it);
        *stopping = stopping_;
        return job;
      }
      earliest = std::min(earliest, it->not_before);
    }
    if (stopping_) return std::nullopt;
    wake_.WaitWithDeadline(&mu_, earliest);  // a new job, stopping, or the next retry
  }
}

std::optional<RelayNotices::Job> RelayNotices::Attempt(Job job, bool last_chance) {
  if (job.unresolved) {
    absl::Status s = Resolve(job);
    if (!s.ok()) {
      if (absl::IsUnavailable(s) && !last_chance) return job;  // tenantd unreachable: later
      log::Warn(
          "security notice not sent",
          {{"kind", job.kind}, {"user_id", job.unresolved->user_id}, {"error", s.ToString()}});
      Count(job.kind, absl::IsNotFound(s) ? "no_user" : "failed");
      return std::nullopt;
    }
  }
  while (!job.messages.empty()) {
    const relay::v1::SubmitMessageRequest& req = job.messages.front();
    absl::Status s = Submit(req);
    // relayd unreachable or its own peers down: the same idempotency key
    // later, so a message relayd did take is not delivered twice.
    if (absl::IsUnavailable(s) && !last_chance) return job;
    if (s.ok()) {
      Count(job.kind, "sent");
    } else {
      log::Warn("notice not sent", {{"kind", job.kind},
                                    {"tenant_id", req.tenant_id()},
                                    {"attempts", static_cast<int64_t>(job.attempts)},
                                    {"error", s.ToString()}});
      Count(job.kind, "failed");
    }
    job.messages.erase(job.messages.begin());
  }
  return std::nullopt;
}

absl::Status RelayNotices::Resolve(Job& job) {
  const SecurityNotice& n = *job.unresolved;
  ASSIGN_OR_RETURN(tenant::v1::Principal p, directory_->ByUserId(n.user_id));
  const tenant::v1::User& user = p.user();
  if (user.tenant_id() != n.tenant_id) return absl::NotFoundError("the user moved tenants");
  std::vector<std::string> to = SecurityNoticeRecipients(user, n);
  for (size_t i = 0; i < to.size(); ++i) {
    relay::v1::SubmitMessageRequest req;
    req.set_envelope_from("");  // the null sender: a notice is never bounced back
    req.add_recipients(to[i]);
    req.set_message(SecurityNoticeMessage(user, n, to[i]));
    req.set_tenant_id(user.tenant_id());
    req.set_kind(relay::v1::SUBMISSION_KIND_SECURITY_NOTICE);
    req.set_idempotency_key(absl::StrCat("notice:", n.id, ":", i));
    job.messages.push_back(std::move(req));
  }
  job.unresolved.reset();
  return absl::OkStatus();
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

void RelayNotices::Count(const std::string& kind, const char* result) {
  if (counters_ != nullptr) counters_->Add({{"kind", kind}, {"result", result}}).Increment();
}

}  // namespace mailgrid::identity
