// ImapSession: the command loop, dispatch, naming, and the commands of the
// not-authenticated state (auth, capability, logout, ID, ENABLE).
#include "services/access/imap_session.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/imap/base64.h"
#include "services/access/imap_session_internal.h"

namespace mailgrid::access {

using imap::Condition;

ErrorReply MapError(const absl::Status& st) {
  switch (st.code()) {
    case absl::StatusCode::kNotFound:
      return {Condition::kNo, "NONEXISTENT", "No such mailbox"};
    case absl::StatusCode::kAlreadyExists:
      return {Condition::kNo, "ALREADYEXISTS", "Mailbox already exists"};
    case absl::StatusCode::kResourceExhausted:
      return {Condition::kNo, "OVERQUOTA", "Quota or limit exceeded"};
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
      return {Condition::kNo, "CANNOT", "Operation not permitted"};
    case absl::StatusCode::kUnimplemented:
      return {Condition::kNo, "CANNOT", "Not supported"};
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
      return {Condition::kNo, "NOPERM", "Permission denied"};
    default:
      return {Condition::kNo, "UNAVAILABLE", "Mail store temporarily unavailable"};
  }
}

ImapSession::ImapSession(ImapConfig config, Authenticator* auth, MailBackend* backend)
    : config_(std::move(config)), auth_(auth), backend_(backend), reader_(config_.limits) {}

ImapSession::~ImapSession() {
  if (idle_ && idle_->watch) idle_->watch->Cancel();
}

std::string ImapSession::Capabilities() const {
  std::string caps = "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT";
  if (state_ == imap::SessionState::kNotAuthenticated) {
    bool tls = config_.tls_active;
    if (!tls && config_.starttls_offered) caps += " STARTTLS";
    if (tls || config_.plaintext_auth) {
      caps += " AUTH=PLAIN AUTH=XOAUTH2 AUTH=OAUTHBEARER";
    } else {
      caps += " LOGINDISABLED";
    }
  } else {
    caps +=
        " UIDPLUS MOVE SPECIAL-USE CHILDREN QUOTA CONDSTORE QRESYNC ESEARCH LIST-EXTENDED"
        " LIST-STATUS STATUS=SIZE BINARY SEARCHRES WITHIN SORT ESORT THREAD=ORDEREDSUBJECT"
        " THREAD=REFERENCES";
    if (!compressing_) caps += " COMPRESS=DEFLATE";
  }
  return caps;
}

imap::CommandContext ImapSession::Context() const {
  imap::CommandContext c;
  c.state = state_;
  c.qresync_enabled = qresync_;
  return c;
}

void ImapSession::Start() {
  Write(imap::StatusLine("*", Condition::kOk, "CAPABILITY " + Capabilities(),
                         config_.hostname + " IMAP4rev1 ready"));
}

void ImapSession::Feed(std::string_view bytes) {
  // Bytes between STARTTLS's OK and the handshake are plaintext the client
  // should not have sent: never act on them.
  if (closed_ || awaiting_tls_) return;
  reader_.Feed(bytes);
  Pump();
}

std::string ImapSession::TakeOutput() { return std::exchange(out_, {}); }

void ImapSession::Shutdown() {
  if (closed_) return;
  Write(imap::StatusLine("*", Condition::kBye, "", "Server shutting down"));
  closed_ = true;
  if (idle_ && idle_->watch) idle_->watch->Cancel();
}

void ImapSession::Timeout() {
  if (closed_) return;
  Write(imap::StatusLine("*", Condition::kBye, "", "Autologout; idle for too long"));
  closed_ = true;
  if (idle_ && idle_->watch) idle_->watch->Cancel();
}

void ImapSession::Abort(std::string_view why) {
  if (closed_) return;
  Write(imap::StatusLine("*", Condition::kBye, "", why));
  closed_ = true;
  if (idle_ && idle_->watch) idle_->watch->Cancel();
}

void ImapSession::TlsEstablished() {
  config_.tls_active = true;
  awaiting_tls_ = false;
  Pump();
}

void ImapSession::Done() {
  busy_ = false;
  Pump();
}

void ImapSession::Pump() {
  if (pumping_) return;
  pumping_ = true;
  while (!busy_ && !closed_ && !awaiting_tls_) {
    imap::ReadResult r = reader_.Next(Context());
    if (std::holds_alternative<imap::NeedMoreData>(r)) break;
    if (std::holds_alternative<imap::NeedContinuation>(r)) {
      Write("+ Ready for literal data\r\n");
    } else if (auto* cmd = std::get_if<imap::Command>(&r)) {
      ++stats_.commands;
      current_command_ = std::string(cmd->name);
      if (on_command_start_) on_command_start_();
      Execute(std::move(*cmd));
    } else if (auto* s = std::get_if<imap::SaslResponse>(&r)) {
      OnSaslResponse(*s);
    } else if (std::holds_alternative<imap::IdleDone>(r)) {
      refreshed_modseq_ = 0;
      EndIdle();
    } else if (auto* e = std::get_if<imap::ProtocolError>(&r)) {
      refreshed_modseq_ = 0;  // a command boundary all the same
      ++stats_.bad;
      sasl_mech_.reset();
      Write(imap::FormatError(*e));
      if (on_command_) on_command_("?", "BAD");
      if (e->close_connection) closed_ = true;
    }
  }
  pumping_ = false;
}

void ImapSession::Finish(const std::string& tag, Condition c, std::string_view code,
                         std::string_view text) {
  Write(imap::StatusLine(tag, c, code, text));
  if (c == Condition::kOk) ++stats_.ok;
  if (c == Condition::kNo) ++stats_.no;
  if (c == Condition::kBad) ++stats_.bad;
  if (on_command_) on_command_(current_command_, imap::ConditionName(c));
}

void ImapSession::FinishError(const std::string& tag, const absl::Status& st) {
  ErrorReply e = MapError(st);
  Finish(tag, e.condition, e.code, e.text);
}

void ImapSession::Untagged(absl::StatusOr<std::string> line) {
  if (line.ok()) Write(*line);
}

CallTarget ImapSession::TargetOf(size_t mailbox) const {
  return CallTarget{principal_->mailboxes[mailbox].shard(), principal_->authorization};
}

// "INBOX" (any case) and its children name the personal INBOX; the shared
// namespace is "Shared/<address>/<folder>".
std::optional<ImapSession::Target> ImapSession::Resolve(std::string_view name) const {
  if (!principal_ || principal_->mailboxes.empty() || name.empty()) return std::nullopt;
  constexpr std::string_view kShared = "Shared/";
  if (name.substr(0, kShared.size()) == kShared) {
    std::string_view rest = name.substr(kShared.size());
    for (size_t i = 1; i < principal_->mailboxes.size(); ++i) {
      const std::string& addr = principal_->mailboxes[i].address();
      if (rest.size() > addr.size() + 1 && rest.substr(0, addr.size()) == addr &&
          rest[addr.size()] == '/') {
        return Target{i, std::string(rest.substr(addr.size() + 1))};
      }
    }
    return std::nullopt;
  }
  std::string folder(name);
  if (absl::AsciiStrToUpper(folder.substr(0, 5)) == "INBOX" &&
      (folder.size() == 5 || folder[5] == '/')) {
    folder.replace(0, 5, "INBOX");
  }
  return Target{0, folder};
}

std::string ImapSession::ExternalName(size_t mailbox, std::string_view folder) const {
  if (mailbox == 0) return std::string(folder);
  return absl::StrCat("Shared/", principal_->mailboxes[mailbox].address(), "/",
                      std::string(folder));
}

void ImapSession::Execute(imap::Command cmd) {
  using imap::CommandId;
  const imap::Command& c = cmd;
  fresh_modseq_ = std::exchange(refreshed_modseq_, 0);
  switch (c.id) {
    case CommandId::kCapability:
      return CmdCapability(c);
    case CommandId::kNoop:
    case CommandId::kCheck:
      return CmdNoop(c);
    case CommandId::kLogout:
      return CmdLogout(c);
    case CommandId::kStartTls:
      return CmdStartTls(c);
    case CommandId::kLogin:
      return CmdLogin(c);
    case CommandId::kAuthenticate:
      return CmdAuthenticate(c);
    case CommandId::kId:
      return CmdId(c);
    case CommandId::kEnable:
      return CmdEnable(c);
    case CommandId::kNamespace:
      return CmdNamespace(c);
    case CommandId::kList:
    case CommandId::kLsub:
      return CmdList(c);
    case CommandId::kSelect:
    case CommandId::kExamine:
      return CmdSelect(c);
    case CommandId::kStatus:
      return CmdStatus(c);
    case CommandId::kCreate:
      return CmdCreate(c);
    case CommandId::kDelete:
      return CmdDelete(c);
    case CommandId::kRename:
      return CmdRename(c);
    case CommandId::kSubscribe:
      return CmdSubscribe(c, true);
    case CommandId::kUnsubscribe:
      return CmdSubscribe(c, false);
    case CommandId::kAppend:
      return CmdAppend(c);
    case CommandId::kGetQuota:
      return CmdGetQuota(c, false);
    case CommandId::kGetQuotaRoot:
      return CmdGetQuota(c, true);
    case CommandId::kClose:
      return CmdClose(c, true);
    case CommandId::kUnselect:
      return CmdClose(c, false);
    case CommandId::kExpunge:
      return CmdExpunge(c);
    case CommandId::kSearch:
      return CmdSearch(c);
    case CommandId::kThread:
      return CmdThread(c);
    case CommandId::kSort:
      return CmdSort(c);
    case CommandId::kFetch:
      return CmdFetch(c);
    case CommandId::kStore:
      return CmdStore(c);
    case CommandId::kCopy:
      return CmdCopy(c, false);
    case CommandId::kMove:
      return CmdCopy(c, true);
    case CommandId::kIdle:
      return CmdIdle(c);
    case CommandId::kSetQuota:
      return Finish(c.tag, Condition::kNo, "NOPERM", "Quotas are set by the administrator");
    case CommandId::kCompress:
      return CmdCompress(c);
  }
  Finish(c.tag, Condition::kBad, "", "Command not supported");
}

// ---- Not authenticated ------------------------------------------------------

void ImapSession::CmdCapability(const imap::Command& c) {
  Write("* CAPABILITY " + Capabilities() + "\r\n");
  Finish(c.tag, Condition::kOk, "", "CAPABILITY completed");
}

void ImapSession::CmdStartTls(const imap::Command& c) {
  if (config_.tls_active || !config_.starttls_offered) {
    return Finish(c.tag, Condition::kBad, "", "TLS is already active or not available");
  }
  // Anything the client pipelined after STARTTLS was sent in clear text:
  // never act on it (the STARTTLS command injection bug).
  reader_.receiver().DiscardPendingInput();
  Finish(c.tag, Condition::kOk, "", "Begin TLS negotiation now");
  start_tls_ = true;
  awaiting_tls_ = true;
}

void ImapSession::CmdLogin(const imap::Command& c) {
  if (!config_.tls_active && !config_.plaintext_auth) {
    return Finish(c.tag, Condition::kNo, "PRIVACYREQUIRED", "LOGIN is disabled before STARTTLS");
  }
  const auto& a = c.get<imap::LoginArgs>();
  imap::SaslCredentials creds;
  creds.mechanism = imap::SaslMechanism::kPlain;
  creds.authcid = a.user;
  creds.password = a.password;
  CheckCredentials(c.tag, std::move(creds));
}

void ImapSession::CmdAuthenticate(const imap::Command& c) {
  if (!config_.tls_active && !config_.plaintext_auth) {
    return Finish(c.tag, Condition::kNo, "PRIVACYREQUIRED",
                  "Authentication is disabled before STARTTLS");
  }
  const auto& a = c.get<imap::AuthenticateArgs>();
  std::optional<imap::SaslMechanism> m = imap::ParseSaslMechanism(a.mechanism);
  if (!m || *m == imap::SaslMechanism::kLogin) {
    return Finish(c.tag, Condition::kNo, "CANNOT", "Unsupported authentication mechanism");
  }
  if (a.initial_response) {
    absl::StatusOr<imap::SaslCredentials> creds = imap::DecodeSasl(*m, *a.initial_response);
    if (!creds.ok()) {
      return Finish(c.tag, Condition::kNo, "AUTHENTICATIONFAILED", "Authentication failed");
    }
    return CheckCredentials(c.tag, *std::move(creds));
  }
  sasl_tag_ = c.tag;
  sasl_mech_ = m;
  Write(imap::ContinuationLine(""));
  reader_.receiver().ExpectSaslResponse(c.tag);
}

void ImapSession::OnSaslResponse(const imap::SaslResponse& r) {
  std::string tag = std::exchange(sasl_tag_, {});
  std::optional<imap::SaslMechanism> m = std::exchange(sasl_mech_, std::nullopt);
  if (!m) return;
  if (r.cancelled) return Finish(tag, Condition::kBad, "", "Authentication cancelled");
  absl::StatusOr<imap::SaslCredentials> creds = imap::DecodeSasl(*m, r.data);
  if (!creds.ok()) {
    return Finish(tag, Condition::kNo, "AUTHENTICATIONFAILED", "Authentication failed");
  }
  CheckCredentials(tag, *std::move(creds));
}

void ImapSession::CheckCredentials(const std::string& tag, imap::SaslCredentials creds) {
  if (auth_ == nullptr) {
    return Finish(tag, Condition::kNo, "UNAVAILABLE", "Authentication service unavailable");
  }
  Begin();
  auth_->CheckSasl(creds, common::v1::PROTOCOL_IMAP, config_.client_ip,
                   Guard<Principal>(alive_, [this, tag](absl::StatusOr<Principal> p) {
                     if (p.ok() && !p->mailboxes.empty()) {
                       principal_ = *std::move(p);
                       state_ = imap::SessionState::kAuthenticated;
                       Finish(tag, Condition::kOk, "CAPABILITY " + Capabilities(), "Logged in");
                     } else if (p.ok() || p.status().code() == absl::StatusCode::kUnauthenticated ||
                                p.status().code() == absl::StatusCode::kInvalidArgument) {
                       Finish(tag, Condition::kNo, "AUTHENTICATIONFAILED", "Authentication failed");
                     } else {
                       Finish(tag, Condition::kNo, "UNAVAILABLE",
                              p.status().code() == absl::StatusCode::kResourceExhausted
                                  ? "Too many attempts, try again later"
                                  : "Authentication service unavailable");
                     }
                     Done();
                   }));
}

void ImapSession::CmdLogout(const imap::Command& c) {
  Write(imap::StatusLine("*", Condition::kBye, "", "Logging out"));
  Finish(c.tag, Condition::kOk, "", "LOGOUT completed");
  closed_ = true;
  if (idle_ && idle_->watch) idle_->watch->Cancel();
}

void ImapSession::CmdId(const imap::Command& c) {
  Write("* ID (\"name\" \"mailgrid\" \"vendor\" \"mailgrid\")\r\n");
  Finish(c.tag, Condition::kOk, "", "ID completed");
}

void ImapSession::CmdEnable(const imap::Command& c) {
  std::string enabled;
  for (const std::string& cap : c.get<imap::EnableArgs>().capabilities) {
    if (cap == "CONDSTORE" && !condstore_) {
      condstore_ = true;
      enabled += " CONDSTORE";
    } else if (cap == "QRESYNC" && !qresync_) {
      // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
      qresync_ = true;
      condstore_ = true;
      enabled += " QRESYNC";
    }
  }
  Write("* ENABLED" + enabled + "\r\n");
  Finish(c.tag, Condition::kOk, "", "ENABLE completed");
}

// RFC 4978. The parser accepts only DEFLATE. The client may send nothing
// more before the OK (§3), so anything pipelined is dropped: it would have
// been compressed by a conforming client anyway.
void ImapSession::CmdCompress(const imap::Command& c) {
  if (compressing_) {
    return Finish(c.tag, Condition::kNo, "COMPRESSIONACTIVE", "DEFLATE is already active");
  }
  reader_.receiver().DiscardPendingInput();
  Finish(c.tag, Condition::kOk, "", "DEFLATE active");
  compressing_ = true;
  start_compress_ = true;
}

void ImapSession::CmdNamespace(const imap::Command& c) {
  std::string shared = principal_->mailboxes.size() > 1 ? "((\"Shared/\" \"/\"))" : "NIL";
  Write("* NAMESPACE ((\"\" \"/\")) NIL " + shared + "\r\n");
  Finish(c.tag, Condition::kOk, "", "NAMESPACE completed");
}

}  // namespace mailgrid::access
