// Internal: one blocking hiredis connection. Not thread-safe; the pool hands
// a Connection to one caller at a time. Not part of the public API.
#pragma once

#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/redis/options.h"
#include "libs/redis/reply.h"

struct redisContext;
struct redisReader;

namespace mailgrid::redis::internal {

// hiredis writes with write(2), so a send on a socket the server already
// closed raises SIGPIPE, whose default action kills the process. Redis is
// allowed to vanish, so around each I/O we block SIGPIPE on the calling
// thread and swallow one that I/O caused, leaving the process-wide
// disposition (not ours to change) alone.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock();
  ~ScopedSigpipeBlock();
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  static bool Pending();
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
};

class TlsStream;

// With options.tls.enabled the socket is hiredis's (dial, timeouts,
// keepalive) but the bytes go through a TlsStream, commands are formatted
// with redisFormatCommandArgv and replies parsed by a redisReader; hiredis's
// own I/O is never called on that context.
class Connection {
 public:
  // Dials within options.connect_timeout, then AUTH and SELECT as `options`
  // asks. Each later send and reply read is bounded by
  // options.command_timeout until SetReadTimeout() changes it.
  static absl::StatusOr<std::unique_ptr<Connection>> Dial(const Options& options);
  // InfiniteDuration: block until data arrives (for pub/sub).
  absl::Status SetReadTimeout(absl::Duration timeout);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends one command and reads its reply. An error reply is returned as a
  // Reply of type kError; only transport failures are a non-OK status, and
  // they mark the connection broken.
  absl::StatusOr<Reply> Call(const std::vector<std::string>& args);
  // Buffers a command; it is sent by the next Read().
  absl::Status Append(const std::vector<std::string>& args);
  // Flushes buffered commands, then reads one reply.
  absl::StatusOr<Reply> Read();

  // True once an I/O, timeout or protocol error happened: the reply stream
  // may be out of step, so the connection must never be reused.
  bool broken() const { return broken_; }
  // Cheap check before reuse from the pool: an idle connection has nothing
  // to read, so readable means the server closed it (e.g. Redis restarted).
  bool IsStale() const;
  int fd() const;

 private:
  Connection(redisContext* ctx, std::string endpoint);
  absl::Status TransportError(int saved_errno, std::string_view what);
  absl::Status StartTls(const Options& options);
  absl::StatusOr<Reply> ReadTls();
  // A failed TLS step leaves the stream out of step, like TransportError.
  absl::Status Broken(absl::Status s);

  redisContext* ctx_;
  std::string endpoint_;
  bool broken_ = false;
  // TLS only: the stream, the reply parser, and commands appended but not
  // yet sent.
  std::unique_ptr<TlsStream> tls_;
  redisReader* reader_ = nullptr;
  std::string pending_;
};

}  // namespace mailgrid::redis::internal
