#include "libs/outbound/smtp_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <cstring>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "libs/base/net.h"
#include "libs/outbound/time_util.h"
#include "libs/smtp/reply.h"

namespace mailgrid::outbound {
namespace {

// A connected socket, plain or TLS, with per-call timeouts.
class Channel {
 public:
  ~Channel() {
    if (ssl_ != nullptr) {
      SSL_shutdown(ssl_);
      SSL_free(ssl_);
    }
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    if (fd_ >= 0) close(fd_);
  }

  std::string Connect(const std::string& ip, uint16_t port, absl::Duration timeout) {
    absl::StatusOr<net::SocketAddress> addr = net::ToSocketAddress(ip, port);
    if (!addr.ok()) return std::string(addr.status().message());
    fd_ = socket(addr->family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd_ < 0) return absl::StrCat("socket: ", strerror(errno));
    if (connect(fd_, addr->get(), addr->length) != 0 && errno != EINPROGRESS) {
      return absl::StrCat("connect: ", strerror(errno));
    }
    pollfd p{fd_, POLLOUT, 0};
    int n = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
    if (n == 0) return "connect: timeout";
    int err = 0;
    socklen_t errlen = sizeof(err);
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &errlen);
    if (n < 0 || err != 0) return absl::StrCat("connect: ", strerror(err != 0 ? err : errno));
    // Back to blocking; timeouts through SO_RCVTIMEO/SO_SNDTIMEO per phase.
    fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
    return "";
  }

  void SetTimeout(absl::Duration d) {
    timeval tv = absl::ToTimeval(d);
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }

  // "" on success, else the reason.
  // `check_only`: verify as with `verify` but never fail on it; the
  // verdict is left in verify_error() ("" = verified).
  std::string StartTls(const std::string& server_name, bool verify, const std::string& ca_file,
                       bool check_only = false) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (ctx_ == nullptr) return "TLS: no context";
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    const bool check = verify || check_only;
    verify_error_.clear();
    if (check) {
      if (ca_file.empty()) {
        SSL_CTX_set_default_verify_paths(ctx_);
      } else if (SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr) != 1) {
        if (verify) return "TLS: cannot load CA file";
        verify_error_ = "cannot load CA file";
      }
    }
    // With SSL_VERIFY_NONE OpenSSL still verifies the chain (and the name
    // set below) and keeps the verdict for SSL_get_verify_result.
    SSL_CTX_set_verify(ctx_, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    if (!server_name.empty()) {
      SSL_set_tlsext_host_name(ssl_, server_name.c_str());
      if (check) SSL_set1_host(ssl_, server_name.c_str());
    }
    if (SSL_connect(ssl_) != 1) {
      long result = SSL_get_verify_result(ssl_);
      std::string why = result != X509_V_OK ? X509_verify_cert_error_string(result)
                        : ERR_reason_error_string(ERR_get_error()) != nullptr
                            ? ERR_reason_error_string(ERR_peek_last_error())
                            : "handshake failed";
      return absl::StrCat("TLS handshake failed: ", why);
    }
    if (check_only && verify_error_.empty()) {
      long result = SSL_get_verify_result(ssl_);
      if (result != X509_V_OK) verify_error_ = X509_verify_cert_error_string(result);
    }
    return "";
  }
  const std::string& verify_error() const { return verify_error_; }

  bool WriteAll(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ssl_ != nullptr ? SSL_write(ssl_, data.data(), static_cast<int>(data.size()))
                                  : send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads one complete reply; error text in *error on failure.
  std::optional<smtp::Reply> ReadReply(std::string* error) {
    while (true) {
      auto next = parser_.Next();
      if (!next.ok()) {
        *error = absl::StrCat("malformed reply: ", next.status().message());
        return std::nullopt;
      }
      if (next->has_value()) return **next;
      char buf[4096];
      ssize_t n =
          ssl_ != nullptr ? SSL_read(ssl_, buf, sizeof(buf)) : recv(fd_, buf, sizeof(buf), 0);
      if (n == 0) {
        *error = "connection closed";
        return std::nullopt;
      }
      if (n < 0) {
        *error = (errno == EAGAIN || errno == EWOULDBLOCK) ? "timeout" : "read error";
        return std::nullopt;
      }
      parser_.Feed(std::string_view(buf, static_cast<size_t>(n)));
    }
  }

  // After STARTTLS, anything buffered before the handshake must be dropped
  // (RFC 3207 §4.2: STARTTLS command injection).
  void ResetParser() { parser_ = smtp::ReplyParser(); }
  bool Buffered() const { return parser_.buffered() > 0; }

 private:
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  std::string verify_error_;  // StartTls(check_only): "" = verified
  SSL* ssl_ = nullptr;
  smtp::ReplyParser parser_;
};

SmtpReply ToProtoReply(const smtp::Reply& r, const std::string& host) {
  SmtpReply out;
  out.set_code(static_cast<uint32_t>(r.code));
  out.set_enhanced_code(r.enhanced);
  out.set_text(absl::StrJoin(r.lines, " ").substr(0, 1000));
  out.set_remote_host(host);
  return out;
}

SmtpReply ErrorReply(const std::string& error, const std::string& host, std::string_view phase) {
  SmtpReply out;
  out.set_error(absl::StrCat(error, " (", ToAbslView(phase), ")"));
  out.set_remote_host(host);
  return out;
}

struct Ehlo {
  bool starttls = false, pipelining = false, eightbit = false, size = false;
  bool auth_plain = false, auth_login = false;
};

Ehlo ParseEhlo(const smtp::Reply& r) {
  Ehlo e;
  for (size_t i = 1; i < r.lines.size(); ++i) {
    std::string kw = absl::AsciiStrToUpper(r.lines[i]);
    if (kw == "STARTTLS") e.starttls = true;
    if (kw == "PIPELINING") e.pipelining = true;
    if (kw == "8BITMIME") e.eightbit = true;
    if (absl::StartsWith(kw, "SIZE")) e.size = true;
    // "AUTH PLAIN LOGIN" (RFC 4954) or the pre-standard "AUTH=PLAIN LOGIN".
    if (absl::StartsWith(kw, "AUTH ") || absl::StartsWith(kw, "AUTH=")) {
      for (absl::string_view m : absl::StrSplit(kw.substr(5), ' ', absl::SkipEmpty())) {
        if (m == "PLAIN") e.auth_plain = true;
        if (m == "LOGIN") e.auth_login = true;
      }
    }
  }
  return e;
}

bool Has8Bit(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  }
  return false;
}

std::string CacheKey(const std::string& ip, uint16_t port, const TransactionRequest& req) {
  // The password counts too (hashed, in memory only): a session logged in
  // with other credentials must not serve a route whose secret changed.
  std::string user = req.auth ? absl::StrCat(req.auth->username, "#",
                                             std::hash<std::string>()(req.auth->password))
                              : "";
  return absl::StrCat(ip, "|", port, "|", static_cast<int>(req.tls), "|", req.tls_server_name, "|",
                      req.helo_name, "|", user, "|", req.ca_file, "|",
                      req.report_tls_verification ? "report" : "");
}

}  // namespace

// An open session between transactions.
struct ConnectionCache::Session {
  std::unique_ptr<Channel> channel;
  Ehlo ehlo;
  bool tls_used = false;
  std::string tls_verify_error;
  bool authenticated = false;
  uint32_t uses = 0;
  absl::Time idle_since;
};

ConnectionCache::ConnectionCache() : ConnectionCache(Options()) {}
ConnectionCache::ConnectionCache(Options options) : options_(options) {}

ConnectionCache::~ConnectionCache() {
  absl::MutexLock lock(&mu_);
  for (auto& [key, sessions] : idle_) {
    for (auto& s : sessions) s->channel->WriteAll("QUIT\r\n");  // polite; no wait
  }
}

size_t ConnectionCache::idle() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [key, sessions] : idle_) n += sessions.size();
  return n;
}

void ConnectionCache::PruneLocked(absl::Time now) {
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto& v = it->second;
    v.erase(std::remove_if(v.begin(), v.end(),
                           [&](const std::unique_ptr<Session>& s) {
                             if (now - s->idle_since < options_.idle_time) return false;
                             s->channel->WriteAll("QUIT\r\n");
                             return true;
                           }),
            v.end());
    it = v.empty() ? idle_.erase(it) : std::next(it);
  }
}

std::unique_ptr<ConnectionCache::Session> ConnectionCache::Take(const std::string& key,
                                                                absl::Time now) {
  absl::MutexLock lock(&mu_);
  PruneLocked(now);
  auto it = idle_.find(key);
  if (it == idle_.end() || it->second.empty()) return nullptr;
  std::unique_ptr<Session> s = std::move(it->second.back());  // the most recent: least likely closed
  it->second.pop_back();
  return s;
}

void ConnectionCache::Put(const std::string& key, std::unique_ptr<Session> session,
                          absl::Time now) {
  session->idle_since = now;
  absl::MutexLock lock(&mu_);
  auto& v = idle_[key];
  if (v.size() >= options_.max_idle_per_destination) {
    session->channel->WriteAll("QUIT\r\n");
    return;
  }
  v.push_back(std::move(session));
}

namespace {

class Transaction {
 public:
  Transaction(const TransactionRequest& req, std::string host, ConnectionCache* cache)
      : req_(req), host_(std::move(host)), cache_(cache) {}

  TransactionResult Run(const std::string& ip, uint16_t port) {
    result_.remote_host = host_;
    std::string key;
    if (cache_ != nullptr) {
      key = CacheKey(ip, port, req_);
      if (std::unique_ptr<ConnectionCache::Session> s = cache_->Take(key, absl::Now())) {
        ch_ = std::move(s->channel);
        uses_ = s->uses;
        result_.tls_used = s->tls_used;
        result_.tls_verify_error = s->tls_verify_error;
        result_.authenticated = s->authenticated;
        result_.reused = true;
        ch_->SetTimeout(req_.timeouts.command);
        Mail(s->ehlo);
        // The server closed the idle session before our first command got
        // an answer: nothing was accepted, a new connection is safe.
        if (!stale_) return Finish(key, s->ehlo);
        result_ = TransactionResult();
        result_.remote_host = host_;
        stale_ = broken_ = needs_rset_ = false;
        reusable_ = true;
        uses_ = 0;
      }
    }
    ch_ = std::make_unique<Channel>();
    std::optional<Ehlo> ehlo = Open(ip, port);
    if (!ehlo) return result_;
    Mail(*ehlo);
    return Finish(key, *ehlo);
  }

 private:
  // Connect, greeting, EHLO, STARTTLS, AUTH: the session ready for MAIL.
  std::optional<Ehlo> Open(const std::string& ip, uint16_t port) {
    std::string err = ch_->Connect(ip, port, req_.timeouts.connect);
    if (!err.empty()) return Fail0(err, "connect");
    if (req_.tls == TlsPolicy::kImplicit) {
      ch_->SetTimeout(req_.timeouts.greeting);
      err = ch_->StartTls(req_.tls_server_name, true, req_.ca_file);
      if (!err.empty()) return Fail0(err, "TLS");
      result_.tls_used = true;
    }
    ch_->SetTimeout(req_.timeouts.greeting);
    auto greeting = Read("greeting");
    if (!greeting) return std::nullopt;
    if (greeting->code != 220) {
      SessionReply(*greeting);
      return std::nullopt;
    }
    ch_->SetTimeout(req_.timeouts.command);
    auto ehlo = Hello();
    if (!ehlo) return std::nullopt;
    if (req_.tls != TlsPolicy::kNone && req_.tls != TlsPolicy::kImplicit) {
      bool required = req_.tls == TlsPolicy::kRequire;
      if (ehlo->starttls) {
        if (!Send("STARTTLS\r\n")) return std::nullopt;
        auto r = Read("STARTTLS");
        if (!r) return std::nullopt;
        if (r->code == 220) {
          if (ch_->Buffered()) return Fail0("data after STARTTLS reply", "STARTTLS");
          ch_->ResetParser();
          err = ch_->StartTls(req_.tls_server_name, required, req_.ca_file,
                              !required && req_.report_tls_verification);
          // A failed handshake leaves the connection unusable: the caller
          // retries later (opportunistic TLS never falls back to plain text
          // on the same connection).
          if (!err.empty()) return Fail0(err, "TLS");
          result_.tls_used = true;
          result_.tls_verify_error = ch_->verify_error();
          ehlo = Hello();
          if (!ehlo) return std::nullopt;
        } else if (required) {
          SessionReply(*r);
          return std::nullopt;
        }
      } else if (required) {
        return Fail0("STARTTLS not offered", "EHLO");
      }
    }
    if (req_.auth && !Authenticate(*ehlo)) return std::nullopt;
    return ehlo;
  }

  // RFC 4954. A refused AUTH is temporary for the message (the credentials
  // or the smart host are wrong, not the mail: Postfix's soft bounce), so
  // the next smart host is tried and the entry is retried later.
  bool Authenticate(const Ehlo& ehlo) {
    const SmtpCredentials& c = *req_.auth;
    if (!result_.tls_used && !c.allow_plaintext) {
      Fail0("AUTH refused: the session is not encrypted and the route does not allow plain text",
            "AUTH");
      return false;
    }
    std::optional<smtp::Reply> r;
    if (ehlo.auth_plain) {
      std::string token;
      token.push_back('\0');
      token += c.username;
      token.push_back('\0');
      token += c.password;
      if (!Send(absl::StrCat("AUTH PLAIN ", absl::Base64Escape(token), "\r\n"))) return false;
      r = Read("AUTH");
      if (!r) return false;
    } else if (ehlo.auth_login) {
      if (!Send("AUTH LOGIN\r\n")) return false;
      r = Read("AUTH");
      if (!r) return false;
      for (const std::string* part : {&c.username, &c.password}) {
        if (r->code != 334) break;
        if (!Send(absl::StrCat(absl::Base64Escape(*part), "\r\n"))) return false;
        r = Read("AUTH");
        if (!r) return false;
      }
    } else {
      Fail0("AUTH required but the server offers neither PLAIN nor LOGIN", "EHLO");
      return false;
    }
    if (r->code != 235) {
      SessionReply(*r);
      result_.session_permanent = false;
      return false;
    }
    result_.authenticated = true;
    return true;
  }

  std::optional<Ehlo> Hello() {
    if (!Send(absl::StrCat("EHLO ", req_.helo_name, "\r\n"))) return std::nullopt;
    auto r = Read("EHLO");
    if (!r) return std::nullopt;
    if (r->code == 250) return ParseEhlo(*r);
    // RFC 5321 §3.2: fall back to HELO when EHLO is not recognised.
    if (!Send(absl::StrCat("HELO ", req_.helo_name, "\r\n"))) return std::nullopt;
    auto h = Read("HELO");
    if (!h) return std::nullopt;
    if (h->code != 250) {
      SessionReply(*h);
      return std::nullopt;
    }
    return Ehlo{};
  }

  void Mail(const Ehlo& ehlo) {
    std::string mail = absl::StrCat("MAIL FROM:<", req_.envelope_from, ">");
    if (ehlo.eightbit && Has8Bit(req_.message)) absl::StrAppend(&mail, " BODY=8BITMIME");
    if (ehlo.size) absl::StrAppend(&mail, " SIZE=", req_.message.size());
    absl::StrAppend(&mail, "\r\n");
    const bool pipeline = req_.pipelining && ehlo.pipelining;
    std::vector<std::string> rcpt_cmds;
    for (const auto& r : req_.recipients)
      rcpt_cmds.push_back(absl::StrCat("RCPT TO:<", r, ">\r\n"));
    first_command_ = true;
    if (pipeline) {
      // RFC 2920: MAIL, every RCPT and DATA (the last command of a group,
      // §3.1) in one write, replies read in order: one round trip before
      // the body instead of two (a server with no valid recipient refuses
      // the DATA, §3.1; one that says 354 anyway gets an empty "." below).
      std::string batch = mail;
      for (const auto& c : rcpt_cmds) batch += c;
      batch += "DATA\r\n";
      if (!Send(batch)) return;
    } else if (!Send(mail)) {
      return;
    }
    auto mail_reply = Read("MAIL");
    first_command_ = false;
    if (!mail_reply) return;
    if (mail_reply->code == 421 && result_.reused) {  // the server timed the idle session out
      stale_ = broken_ = true;
      return;
    }
    if (mail_reply->code != 250) {
      // Drain the RCPT and DATA replies so QUIT stays in sync.
      if (pipeline && !DrainPipelined(rcpt_cmds.size())) return;
      reusable_ = false;
      SessionReply(*mail_reply);
      return;
    }
    std::vector<size_t> accepted;
    for (size_t i = 0; i < rcpt_cmds.size(); ++i) {
      if (!pipeline && !Send(rcpt_cmds[i])) return;
      auto r = Read("RCPT");
      if (!r) return;
      RecipientOutcome o;
      o.address = req_.recipients[i];
      o.reply = ToProtoReply(*r, host_);
      if (r->code == 250 || r->code == 251) {
        accepted.push_back(i);
      } else {
        o.kind = r->IsPermanentFailure() ? RecipientOutcome::Kind::kBounced
                                         : RecipientOutcome::Kind::kDeferred;
      }
      result_.recipients.push_back(std::move(o));
    }
    if (accepted.empty() && !pipeline) {
      needs_rset_ = true;  // the transaction is open without recipients
      return;
    }
    ch_->SetTimeout(req_.timeouts.data_init);
    if (!pipeline && !Send("DATA\r\n")) return Fail(accepted, "DATA");
    auto data = Read("DATA");
    if (!data) return Fail(accepted, "DATA");
    if (accepted.empty()) {  // pipelined DATA with no recipient
      if (data->code == 354 && !EndEmptyData()) return;
      needs_rset_ = true;
      return;
    }
    if (data->code != 354) {
      needs_rset_ = true;
      return Set(accepted, *data);
    }
    ch_->SetTimeout(req_.timeouts.data_block);
    if (!Send(DotStuff(req_.message))) return Fail(accepted, "DATA");
    ch_->SetTimeout(req_.timeouts.data_end);
    auto end = Read("end of DATA");
    if (!end) return Fail(accepted, "end of DATA");
    Set(accepted, *end);
    ch_->SetTimeout(req_.timeouts.command);
  }

  // After the transaction: keep the session for the next one, or QUIT.
  TransactionResult Finish(const std::string& key, const Ehlo& ehlo) {
    if (!broken_ && reusable_ && needs_rset_) {
      reusable_ = Send("RSET\r\n");
      if (reusable_) {
        auto r = Read("RSET");
        reusable_ = r && r->code == 250;
      }
    }
    if (cache_ != nullptr && !broken_ && reusable_ && !result_.session_failed &&
        uses_ + 1 < cache_->options().max_reuse) {
      auto s = std::make_unique<ConnectionCache::Session>();
      s->channel = std::move(ch_);
      s->ehlo = ehlo;
      s->tls_used = result_.tls_used;
      s->tls_verify_error = result_.tls_verify_error;
      s->authenticated = result_.authenticated;
      s->uses = uses_ + 1;
      cache_->Put(key, std::move(s), absl::Now());
    } else if (!broken_) {
      Quit();
    }
    return result_;
  }

  // Every accepted recipient gets the DATA-phase reply.
  void Set(const std::vector<size_t>& accepted, const smtp::Reply& r) {
    for (size_t i : accepted) {
      auto& o = result_.recipients[i];
      o.reply = ToProtoReply(r, host_);
      o.kind = r.code == 250            ? RecipientOutcome::Kind::kDelivered
               : r.IsPermanentFailure() ? RecipientOutcome::Kind::kBounced
                                        : RecipientOutcome::Kind::kDeferred;
    }
  }

  // A lost connection during DATA: the message may or may not have been
  // taken; RFC 5321 §4.1.1.4 says treat as temporary (a possible duplicate
  // beats a loss).
  void Fail(const std::vector<size_t>& accepted, std::string_view phase) {
    for (size_t i : accepted) {
      auto& o = result_.recipients[i];
      o.kind = RecipientOutcome::Kind::kDeferred;
      o.reply = ErrorReply(last_error_, host_, phase);
    }
  }

  void Quit() {
    if (ch_ && ch_->WriteAll("QUIT\r\n")) {
      std::string ignored;
      ch_->ReadReply(&ignored);
    }
  }

  // After a refused MAIL in a pipelined group: the RCPT replies, then the
  // DATA reply (an empty "." if a sloppy server said 354 to it).
  bool DrainPipelined(size_t rcpts) {
    for (size_t i = 0; i < rcpts; ++i) {
      if (!Read("RCPT")) return false;
    }
    auto data = Read("DATA");
    if (!data) return false;
    return data->code != 354 || EndEmptyData();
  }

  // A DATA we had to send in the group but have nothing to deliver for:
  // an empty message ends it; its reply does not matter.
  bool EndEmptyData() {
    if (!Send(".\r\n")) return false;
    return Read("end of DATA").has_value();
  }

  bool Send(std::string_view data) {
    if (ch_->WriteAll(data)) return true;
    last_error_ = "write failed";
    Broken("write");
    return false;
  }

  std::optional<smtp::Reply> Read(std::string_view phase) {
    std::string error;
    auto r = ch_->ReadReply(&error);
    if (!r) {
      last_error_ = error;
      Broken(phase);
    }
    return r;
  }

  // The connection is unusable (I/O error, timeout, malformed reply).
  void Broken(std::string_view phase) {
    broken_ = true;
    if (first_command_ && result_.reused) stale_ = true;
    SessionError(last_error_, phase);
  }

  std::nullopt_t Fail0(const std::string& error, std::string_view phase) {
    broken_ = true;
    SessionError(error, phase);
    return std::nullopt;
  }

  void SessionError(const std::string& error, std::string_view phase) {
    result_.session_failed = true;
    result_.session_permanent = false;
    result_.session_reply = ErrorReply(error, host_, phase);
  }

  void SessionReply(const smtp::Reply& r) {
    result_.session_failed = true;
    result_.session_permanent = r.IsPermanentFailure();
    result_.session_reply = ToProtoReply(r, host_);
  }

  const TransactionRequest& req_;
  std::string host_;
  ConnectionCache* cache_;
  std::unique_ptr<Channel> ch_;
  TransactionResult result_;
  std::string last_error_;
  uint32_t uses_ = 0;
  bool broken_ = false;         // no further command on this connection
  bool reusable_ = true;        // the session may serve another transaction
  bool needs_rset_ = false;     // MAIL accepted but no DATA: RSET before reuse
  bool first_command_ = false;  // reading the first reply of a transaction
  bool stale_ = false;          // a cached session was found closed
};

}  // namespace

std::string DotStuff(std::string_view message) {
  std::string out;
  out.reserve(message.size() + message.size() / 64 + 8);
  bool line_start = true;
  for (size_t i = 0; i < message.size(); ++i) {
    char c = message[i];
    if (line_start && c == '.') out.push_back('.');
    line_start = false;
    if (c == '\r' && i + 1 < message.size() && message[i + 1] == '\n') continue;  // CRLF: at LF
    if (c == '\n' || c == '\r') {
      out += "\r\n";
      line_start = true;
      continue;
    }
    out.push_back(c);
  }
  if (!line_start) out += "\r\n";
  out += ".\r\n";
  return out;
}

bool SafeForEnvelope(std::string_view address) {
  for (char c : address) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x21 || u == 0x7f || c == '<' || c == '>') return false;
  }
  return true;
}

TransactionResult SendMail(const std::string& ip, uint16_t port, const std::string& host_name,
                           const TransactionRequest& request, ConnectionCache* cache) {
  std::string host = host_name.empty() || host_name == ip ? absl::StrCat("[", ip, "]")
                                                          : absl::StrCat(host_name, " [", ip, "]");
  if (!SafeForEnvelope(request.envelope_from)) {
    TransactionResult r;
    r.session_failed = true;
    r.session_permanent = true;
    r.session_reply = ErrorReply("unsafe envelope sender", host, "MAIL");
    return r;
  }
  for (const auto& rcpt : request.recipients) {
    if (!SafeForEnvelope(rcpt) || rcpt.empty()) {
      TransactionResult r;
      r.session_failed = true;
      r.session_permanent = true;
      r.session_reply = ErrorReply("unsafe recipient address", host, "RCPT");
      return r;
    }
  }
  Transaction t(request, host, cache);
  return t.Run(ip, port);
}

}  // namespace mailgrid::outbound
