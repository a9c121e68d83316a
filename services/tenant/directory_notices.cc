// DirectoryService: work at peers that follows a directory change and must
// never fail it — the welcome notice (relayd SubmitMessage), a changed
// quota (mailstored SetQuota), the sessions of a disabled or deleted user
// (identityd LogoutEverywhere), the notice of a changed recovery address
// (identityd NotifyRecoveryEmailChanged).
//
// Each is tried right after the change commits; whatever did not go
// through leaves a key G("peerwork")/<kind>/<tenant>/<user> (the welcome's
// key is written in the same write that creates the user, so a crash
// between the two cannot lose it) and BackgroundRound retries every 30 s.
// A retry re-reads the user and does what the user's state calls for NOW
// (a re-enabled user's sessions are left alone; a deleted user gets no
// welcome), so retries are harmless; each call is idempotent at its peer
// (the welcome carries idempotency_key "welcome-<user id>").
//
// The recovery-address notice is per change, not per user state: its key
// (written in the change's own batch, like the welcome's) ends in an event
// id and holds the whole request, because the OLD address it must name is
// gone from the user record; two quick changes are two notices. identityd
// queues an event id once (its README), so a retry after a lost answer
// mails nothing twice.
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/kv/keys.h"
#include "services/tenant/directory_service.h"

namespace mailgrid::tenant {

namespace {

constexpr char kWelcome[] = "welcome";
constexpr char kQuota[] = "quota";
constexpr char kSessions[] = "sessions";
constexpr char kRecovery[] = "recovery";

bool Ascii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80 || c < 0x20) return false;
  return true;
}

// RFC 2047 encoded-word for a header phrase that is not plain ASCII.
std::string Phrase(const std::string& text) {
  if (Ascii(text) && text.find_first_of("\"\\()<>@,;:[]") == std::string::npos) return text;
  return absl::StrCat("=?UTF-8?B?", absl::Base64Escape(text), "?=");
}

// Base64 in lines of 76 (RFC 2045).
std::string Base64Lines(const std::string& data) {
  std::string b64 = absl::Base64Escape(data), out;
  for (size_t i = 0; i < b64.size(); i += 76) absl::StrAppend(&out, b64.substr(i, 76), "\r\n");
  return out;
}

std::string DomainOf(const std::string& address) {
  size_t at = address.rfind('@');
  return at == std::string::npos ? "" : address.substr(at + 1);
}

}  // namespace

std::string BuildWelcomeMessage(const v1::User& u, const std::string& login_host, absl::Time now) {
  const std::string domain = DomainOf(u.address());
  const std::string host = login_host.empty() ? absl::StrCat("mail.", domain) : login_host;
  const bool zh = absl::StartsWithIgnoreCase(u.locale(), "zh");
  std::string subject, body;
  if (zh) {
    subject = "欢迎使用您的企业邮箱";
    body =
        absl::StrCat(u.display_name(), "，您好：\n\n", "您的邮箱已开通。\n\n",
                     "  登录地址（用户名）： ", u.address(), "\n", "  收信服务器（IMAP）： ", host,
                     "，端口 993（SSL/TLS）或 143（STARTTLS）\n", "  收信服务器（POP3）： ", host,
                     "，端口 995（SSL/TLS）或 110（STARTTLS）\n", "  发信服务器（SMTP）： ", host,
                     "，端口 465（SSL/TLS）或 587（STARTTLS），需要身份验证\n\n",
                     "初始密码由管理员单独告知您；首次登录时必须修改密码。\n",
                     "本邮件不包含任何密码。如有疑问，请联系贵公司的邮箱管理员。\n");
  } else {
    subject = "Welcome to your mailbox";
    body = absl::StrCat(
        "Hello ", u.display_name(), ",\n\n", "your mailbox is ready.\n\n",
        "  Sign-in name:          ", u.address(), "\n", "  Incoming mail (IMAP):  ", host,
        ", port 993 (SSL/TLS) or 143 (STARTTLS)\n", "  Incoming mail (POP3):  ", host,
        ", port 995 (SSL/TLS) or 110 (STARTTLS)\n", "  Outgoing mail (SMTP):  ", host,
        ", port 465 (SSL/TLS) or 587 (STARTTLS), with authentication\n\n",
        "Your administrator gives you your initial password separately; you must\n",
        "change it the first time you sign in. This message contains no password.\n",
        "Questions? Ask your company's mail administrator.\n");
  }
  std::string crlf_body;
  for (char c : body) {
    if (c == '\n') crlf_body += '\r';
    crlf_body += c;
  }
  const std::string from_name = zh ? "邮箱管理员" : "Mail administrator";
  return absl::StrCat(
      "From: ", Phrase(from_name), " <postmaster@", domain, ">\r\n",
      "To: ", Phrase(u.display_name()), " <", u.address(), ">\r\n", "Subject: ", Phrase(subject),
      "\r\n", "Date: ", absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", now, absl::UTCTimeZone()),
      "\r\n", "Message-ID: <welcome-", u.user_id(), "@", domain, ">\r\n",
      "Auto-Submitted: auto-generated\r\n", "MIME-Version: 1.0\r\n",
      "Content-Type: text/plain; charset=utf-8\r\n", "Content-Transfer-Encoding: base64\r\n",
      "\r\n", Base64Lines(crlf_body));
}

absl::Status DirectoryServiceImpl::SendWelcome(const v1::User& u) {
  if (peers_ == nullptr || !peers_->relay_configured())
    return absl::UnavailableError("relayd is not configured");
  relay::v1::SubmitMessageRequest r;
  r.set_envelope_from("");  // a notice is never bounced back
  r.add_recipients(u.address());
  r.set_message(BuildWelcomeMessage(u, options_->login_host, absl::Now()));
  r.set_tenant_id(u.tenant_id());
  r.set_kind(relay::v1::SUBMISSION_KIND_WELCOME);
  r.set_idempotency_key(absl::StrCat("welcome-", u.user_id()));
  RETURN_IF_ERROR(peers_->SubmitMessage(r));
  auto done = store_->Commit(Batch().Delete(dkeys::PeerWork(kWelcome, u.tenant_id(), u.user_id())));
  if (!done.ok()) log::Warn("welcome sent; its pending key stays", {{"status", done.status()}});
  log::Info("welcome notice sent", {{"user", u.user_id()}, {"address", u.address()}});
  return absl::OkStatus();
}

void DirectoryServiceImpl::QueueWelcome(Batch& batch, const v1::User& u) {
  batch.PutRaw(dkeys::PeerWork(kWelcome, u.tenant_id(), u.user_id()), "");
}

void DirectoryServiceImpl::WelcomeNow(const v1::User& u) {
  absl::Status s = SendWelcome(u);
  if (!s.ok())
    log::Warn("welcome pending (retried by the background loop)",
              {{"user", u.user_id()}, {"address", u.address()}, {"status", s}});
}

void DirectoryServiceImpl::PushQuota(const storage::UserRecord& rec) {
  const v1::User& u = rec.user();
  if (rec.mailbox_pending()) return;  // CreateMailbox will carry the quota
  absl::Status s = absl::UnavailableError("mailstored is not configured");
  if (peers_ != nullptr && peers_->mailstore_configured()) {
    mailstore::v1::SetQuotaRequest r;
    r.set_mailbox_id(u.mailbox_id());
    *r.mutable_limit() = u.quota();
    s = peers_->SetQuota(u.shard(), r);
  }
  if (s.ok()) return;
  log::Warn("quota not pushed to mailstored yet (retried by the background loop)",
            {{"user", u.user_id()}, {"status", s}});
  (void)store_->Commit(Batch().PutRaw(dkeys::PeerWork(kQuota, u.tenant_id(), u.user_id()), ""));
}

void DirectoryServiceImpl::EndSessions(const v1::User& u, const std::string& reason) {
  absl::StatusOr<int64_t> ended = absl::UnavailableError("identityd is not configured");
  if (peers_ != nullptr && peers_->identity_configured())
    ended = peers_->EndSessions(u.user_id(), reason);
  if (ended.ok()) {
    log::Info("sessions ended", {{"user", u.user_id()}, {"sessions", *ended}});
    return;
  }
  log::Warn("sessions not ended yet (retried by the background loop)",
            {{"user", u.user_id()}, {"status", ended.status()}});
  (void)store_->Commit(Batch().PutRaw(dkeys::PeerWork(kSessions, u.tenant_id(), u.user_id()), ""));
}

std::optional<identity::v1::NotifyRecoveryEmailChangedRequest>
DirectoryServiceImpl::QueueRecoveryNotice(Batch& batch, const Principal& p,
                                          const std::string& old_recovery, const v1::User& u) {
  if (u.recovery_email() == old_recovery) return std::nullopt;
  identity::v1::NotifyRecoveryEmailChangedRequest r;
  r.set_tenant_id(u.tenant_id());
  r.set_user_id(u.user_id());
  r.set_old_recovery_email(old_recovery);
  r.set_new_recovery_email(u.recovery_email());
  r.set_by_admin(p.subject != u.user_id());
  r.set_event_id(NewId("rn"));
  *r.mutable_changed_at() = ToProto(absl::Now());
  r.mutable_client()->set_ip(p.ip);
  batch.PutRaw(dkeys::PeerWorkEvent(kRecovery, r.tenant_id(), r.user_id(), r.event_id()),
               r.SerializeAsString());
  return r;
}

absl::Status DirectoryServiceImpl::SendRecoveryNotice(
    const identity::v1::NotifyRecoveryEmailChangedRequest& r) {
  absl::Status s = peers_ == nullptr ? absl::UnavailableError("identityd is not configured")
                                     : peers_->NotifyRecoveryEmailChanged(r);
  // INVALID_ARGUMENT can never succeed: logged and dropped, not retried forever.
  if (!s.ok() && !absl::IsInvalidArgument(s)) return s;
  if (s.ok())
    log::Info("recovery-address notice handed to identityd",
              {{"user", r.user_id()}, {"event", r.event_id()}});
  else
    log::Error("recovery-address notice refused by identityd, dropped",
               {{"user", r.user_id()}, {"event", r.event_id()}, {"status", s}});
  auto done = store_->Commit(
      Batch().Delete(dkeys::PeerWorkEvent(kRecovery, r.tenant_id(), r.user_id(), r.event_id())));
  if (!done.ok())
    log::Warn("recovery-address notice done; its pending key stays", {{"status", done.status()}});
  return absl::OkStatus();
}

void DirectoryServiceImpl::RecoveryNoticeNow(
    const identity::v1::NotifyRecoveryEmailChangedRequest& r) {
  if (absl::Status s = SendRecoveryNotice(r); !s.ok())
    log::Warn("recovery-address notice pending (retried by the background loop)",
              {{"user", r.user_id()}, {"event", r.event_id()}, {"status", s}});
}

absl::Status DirectoryServiceImpl::RecoveryNoticeRound() {
  if (peers_ == nullptr || !peers_->identity_configured()) return absl::OkStatus();
  ASSIGN_OR_RETURN(auto pending, store_->ScanAll(dkeys::PeerWorkPrefix(kRecovery), false));
  for (const auto& e : pending) {
    identity::v1::NotifyRecoveryEmailChangedRequest r;
    bool drop = !r.ParseFromString(e.value());
    if (!drop) {
      ASSIGN_OR_RETURN(auto rec,
                       store_->Read<storage::UserRecord>(dkeys::User(r.tenant_id(), r.user_id())));
      drop = !rec.found();  // purged: nobody left to tell
    }
    if (drop) {
      (void)store_->Commit(Batch().Delete(e.key()));
      continue;
    }
    // SendRecoveryNotice deletes the key once identityd took the notice.
    if (absl::Status s = SendRecoveryNotice(r); !s.ok())
      log::Warn("recovery-address notice still pending", {{"user", r.user_id()}, {"status", s}});
  }
  return absl::OkStatus();
}

absl::Status DirectoryServiceImpl::PeerWorkRound() {
  if (absl::Status s = RecoveryNoticeRound(); !s.ok())
    log::Warn("recovery-address notice round failed", {{"status", s}});
  struct Kind {
    std::string_view name;
    bool ready;
  };
  const bool have = peers_ != nullptr;
  for (const Kind& k : {Kind{kWelcome, have && peers_->relay_configured()},
                        Kind{kQuota, have && peers_->mailstore_configured()},
                        Kind{kSessions, have && peers_->identity_configured()}}) {
    if (!k.ready) continue;
    const std::string prefix = dkeys::PeerWorkPrefix(k.name);
    ASSIGN_OR_RETURN(auto pending, store_->ScanAll(prefix, true));
    for (const auto& e : pending) {
      kv::KeyReader r(e.key());
      r.ConsumePrefix(prefix);
      auto tid = r.Str();
      auto uid = r.Str();
      if (!tid.ok() || !uid.ok()) continue;
      ASSIGN_OR_RETURN(auto rec, store_->Read<storage::UserRecord>(dkeys::User(*tid, *uid)));
      const v1::UserState state = rec.value.user().state();
      bool drop = !rec.found();
      if (k.name == kWelcome) {
        drop |= state != v1::USER_STATE_ACTIVE;
        if (!drop) {
          // SendWelcome deletes the key once relayd took the message.
          if (absl::Status s = SendWelcome(rec.value.user()); !s.ok())
            log::Warn("welcome still pending", {{"user", *uid}, {"status", s}});
          continue;
        }
      } else if (k.name == kQuota) {
        if (!drop) {
          mailstore::v1::SetQuotaRequest q;
          q.set_mailbox_id(rec.value.user().mailbox_id());
          *q.mutable_limit() = rec.value.user().quota();
          absl::Status s = rec.value.mailbox_pending()
                               ? absl::OkStatus()
                               : peers_->SetQuota(rec.value.user().shard(), q);
          if (!s.ok()) {
            log::Warn("quota still not pushed", {{"user", *uid}, {"status", s}});
            continue;
          }
        }
      } else {  // sessions: only while the user must stay signed out
        drop |= state == v1::USER_STATE_ACTIVE;
        if (!drop) {
          auto ended = peers_->EndSessions(*uid, "user disabled or deleted");
          if (!ended.ok()) {
            log::Warn("sessions still not ended", {{"user", *uid}, {"status", ended.status()}});
            continue;
          }
        }
      }
      (void)store_->Commit(Batch().Delete(e.key()));
    }
  }
  return absl::OkStatus();
}

}  // namespace mailgrid::tenant
