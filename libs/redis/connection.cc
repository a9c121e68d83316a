#include "libs/redis/connection.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/base/status.h"
#include "libs/base/strings.h"
#include "libs/redis/tls_stream.h"

namespace mailgrid::redis::internal {
namespace {

// A zero timeval means "no timeout" to the kernel, so a positive duration
// must never round down to it.
timeval PositiveTimeval(absl::Duration d) {
  return absl::ToTimeval(std::max(d, absl::Milliseconds(1)));
}

bool IsTimeout(int saved_errno, const char* errstr) {
  if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || saved_errno == ETIMEDOUT) {
    return true;
  }
  // hiredis may have made other calls after the failing one; its message
  // was formatted from the errno that mattered.
  return std::strcmp(errstr, std::strerror(EAGAIN)) == 0 ||
         std::strcmp(errstr, std::strerror(ETIMEDOUT)) == 0;
}

absl::Status Annotate(const absl::Status& s, const std::string& prefix) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(prefix, ": ", s.message()));
}

}  // namespace

ScopedSigpipeBlock::ScopedSigpipeBlock() {
  sigemptyset(&pipe_);
  sigaddset(&pipe_, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  was_pending_ = Pending();
}

ScopedSigpipeBlock::~ScopedSigpipeBlock() {
  if (!was_pending_ && Pending()) {
    timespec zero{0, 0};
    while (sigtimedwait(&pipe_, nullptr, &zero) == -1 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_, nullptr);
}

bool ScopedSigpipeBlock::Pending() {
  sigset_t pending;
  sigemptyset(&pending);
  sigpending(&pending);
  return sigismember(&pending, SIGPIPE) == 1;
}

Connection::Connection(redisContext* ctx, std::string endpoint)
    : ctx_(ctx), endpoint_(std::move(endpoint)) {}

Connection::~Connection() {
  tls_.reset();  // before redisFree closes the socket under it
  if (reader_ != nullptr) redisReaderFree(reader_);
  redisFree(ctx_);
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Dial(const Options& options) {
  redisContext* ctx;
  errno = 0;
  if (options.connect_timeout == absl::InfiniteDuration()) {
    ctx = redisConnect(options.host.c_str(), options.port);
  } else {
    ctx = redisConnectWithTimeout(options.host.c_str(), options.port,
                                  PositiveTimeval(options.connect_timeout));
  }
  int saved_errno = errno;
  if (ctx == nullptr) {
    return absl::ResourceExhaustedError("redis: out of memory allocating a connection");
  }
  std::unique_ptr<Connection> conn(new Connection(ctx, options.Endpoint()));
  if (ctx->err != 0) return conn->TransportError(saved_errno, "connect");

  RETURN_IF_ERROR(conn->SetReadTimeout(options.command_timeout));
  // Finds a silently dead peer (no FIN, e.g. a lost node) on idle
  // connections, which matters most for the subscriber.
  if (redisEnableKeepAlive(ctx) != REDIS_OK) return conn->TransportError(errno, "keepalive");
  if (options.tls.enabled) RETURN_IF_ERROR(conn->StartTls(options));

  const std::string prefix = absl::StrCat("redis ", conn->endpoint_);
  if (!options.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!options.user.empty()) auth.push_back(options.user);
    auth.push_back(options.password);
    ASSIGN_OR_RETURN(Reply reply, conn->Call(auth));
    RETURN_IF_ERROR(Annotate(StatusFromReply(reply), prefix + ": AUTH"));
  }
  if (options.db != 0) {
    ASSIGN_OR_RETURN(Reply reply, conn->Call({"SELECT", std::to_string(options.db)}));
    RETURN_IF_ERROR(Annotate(StatusFromReply(reply), prefix + ": SELECT"));
  }
  return conn;
}

absl::Status Connection::StartTls(const Options& options) {
  // The handshake is part of dialing: bound by connect_timeout.
  RETURN_IF_ERROR(SetReadTimeout(options.connect_timeout));
  absl::StatusOr<std::unique_ptr<TlsStream>> tls;
  {
    ScopedSigpipeBlock no_sigpipe;
    tls = TlsStream::Handshake(ctx_->fd, options.host, options.tls, endpoint_);
  }
  if (!tls.ok()) return Broken(tls.status());
  tls_ = *std::move(tls);
  reader_ = redisReaderCreate();
  if (reader_ == nullptr) return Broken(absl::ResourceExhaustedError("redis: out of memory"));
  return SetReadTimeout(options.command_timeout);
}

absl::Status Connection::Broken(absl::Status s) {
  broken_ = true;
  return s;
}

absl::Status Connection::SetReadTimeout(absl::Duration timeout) {
  // Zero means "block forever" to setsockopt(SO_RCVTIMEO/SO_SNDTIMEO).
  timeval tv{0, 0};
  if (timeout != absl::InfiniteDuration()) tv = PositiveTimeval(timeout);
  if (redisSetTimeout(ctx_, tv) != REDIS_OK) return TransportError(errno, "set timeout");
  return absl::OkStatus();
}

absl::StatusOr<Reply> Connection::Call(const std::vector<std::string>& args) {
  RETURN_IF_ERROR(Append(args));
  return Read();
}

absl::Status Connection::Append(const std::vector<std::string>& args) {
  if (broken_) return absl::UnavailableError(absl::StrCat("redis ", endpoint_, ": broken"));
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  if (tls_ != nullptr) {
    char* cmd = nullptr;
    int len = redisFormatCommandArgv(&cmd, static_cast<int>(args.size()), argv.data(), lens.data());
    if (len < 0 || cmd == nullptr) return Broken(absl::ResourceExhaustedError("redis: out of memory"));
    pending_.append(cmd, static_cast<size_t>(len));
    redisFreeCommand(cmd);
    return absl::OkStatus();
  }
  if (redisAppendCommandArgv(ctx_, static_cast<int>(args.size()), argv.data(), lens.data()) !=
      REDIS_OK) {
    return TransportError(errno, "append");
  }
  return absl::OkStatus();
}

absl::StatusOr<Reply> Connection::Read() {
  if (broken_) return absl::UnavailableError(absl::StrCat("redis ", endpoint_, ": broken"));
  if (tls_ != nullptr) return ReadTls();
  void* raw = nullptr;
  int rc;
  int saved_errno;
  {
    ScopedSigpipeBlock no_sigpipe;
    errno = 0;
    rc = redisGetReply(ctx_, &raw);
    saved_errno = errno;
  }
  if (rc != REDIS_OK || raw == nullptr) return TransportError(saved_errno, "command");
  Reply reply = Reply::FromHiredis(*static_cast<redisReply*>(raw));
  freeReplyObject(raw);
  return reply;
}

absl::StatusOr<Reply> Connection::ReadTls() {
  ScopedSigpipeBlock no_sigpipe;
  if (!pending_.empty()) {
    absl::Status sent = tls_->WriteAll(pending_);
    pending_.clear();
    if (!sent.ok()) return Broken(sent);
  }
  for (;;) {
    void* raw = nullptr;
    if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
      return Broken(absl::InternalError(
          absl::StrCat("redis ", endpoint_, ": protocol error: ", reader_->errstr)));
    }
    if (raw != nullptr) {
      Reply reply = Reply::FromHiredis(*static_cast<redisReply*>(raw));
      freeReplyObject(raw);
      return reply;
    }
    char buf[16 * 1024];
    absl::StatusOr<size_t> n = tls_->ReadSome(buf, sizeof(buf));
    if (!n.ok()) return Broken(n.status());
    if (redisReaderFeed(reader_, buf, *n) != REDIS_OK) {
      return Broken(absl::InternalError(
          absl::StrCat("redis ", endpoint_, ": protocol error: ", reader_->errstr)));
    }
  }
}

bool Connection::IsStale() const {
  if (broken_) return true;
  if (tls_ != nullptr) return tls_->IsStale();
  pollfd p{ctx_->fd, POLLIN, 0};
  return ::poll(&p, 1, 0) != 0;
}

int Connection::fd() const { return ctx_->fd; }

absl::Status Connection::TransportError(int saved_errno, std::string_view what) {
  broken_ = true;
  std::string msg = absl::StrCat("redis ", endpoint_, ": ", ToAbsl(what), ": ", ctx_->errstr);
  switch (ctx_->err) {
    case REDIS_ERR_IO:
      if (IsTimeout(saved_errno, ctx_->errstr)) return absl::DeadlineExceededError(msg);
      return absl::UnavailableError(msg);
    case REDIS_ERR_PROTOCOL:
      return absl::InternalError(msg);
    case REDIS_ERR_OOM:
      return absl::ResourceExhaustedError(msg);
    case REDIS_ERR_EOF:
    default:
      // EOF, failed name resolution, refused: Redis is not there.
      return absl::UnavailableError(msg);
  }
}

}  // namespace mailgrid::redis::internal
