// A thread-safe Redis client over a bounded pool of blocking hiredis
// connections. Redis holds only what may be lost, so every failure is a
// status, never a crash or an unbounded wait:
//   Redis down / connection lost   -> UNAVAILABLE
//   connect or reply timeout       -> DEADLINE_EXCEEDED
//   no pooled connection in time   -> DEADLINE_EXCEEDED
//   an error reply                 -> see StatusFromReply (reply.h)
// A connection that failed is discarded; the next call dials a fresh one, so
// once Redis is back the same Client works again.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/redis/options.h"
#include "libs/redis/reply.h"

namespace mailgrid::redis {

namespace internal {
class Connection;
}

struct SetOptions {
  // Expire after this long (millisecond precision); zero: never.
  absl::Duration ttl = absl::ZeroDuration();
  // SET ... NX: only if the key does not exist yet.
  bool if_absent = false;
};

struct PoolStats {
  int open = 0;  // connections dialed and not yet discarded (idle + in use)
  int idle = 0;  // of those, waiting in the pool
};

class Client {
 public:
  // Does not dial: connections are opened on demand, so a service starts
  // even while Redis is down. `options.pool_size` is clamped to >= 1.
  explicit Client(Options options);
  // Every call must have returned (connections in use are not tracked here).
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const Options& options() const { return options_; }

  // PING; OK when Redis answers. For health checks.
  absl::Status Ping();

  // Any command, binary-safe: each argument is sent as-is (NUL bytes
  // included). An error reply becomes a non-OK status.
  absl::StatusOr<Reply> Command(std::vector<std::string> args);

  // Sends all commands on one connection in one write, then reads all
  // replies. Per-command error replies are returned as Reply values (use
  // StatusFromReply); only transport failures fail the whole call. Wrap in
  // MULTI/EXEC for atomicity.
  absl::StatusOr<std::vector<Reply>> Pipeline(std::vector<std::vector<std::string>> commands);

  // nullopt when the key does not exist.
  absl::StatusOr<std::optional<std::string>> Get(std::string_view key);
  // Atomically reads and deletes (GETDEL): one-time tickets.
  absl::StatusOr<std::optional<std::string>> GetDel(std::string_view key);
  // True if the value was stored; false only when `if_absent` and the key
  // existed.
  absl::StatusOr<bool> Set(std::string_view key, std::string_view value, SetOptions opts = {});
  // True if the key existed.
  absl::StatusOr<bool> Del(std::string_view key);
  absl::StatusOr<int64_t> Incr(std::string_view key);
  absl::StatusOr<int64_t> IncrBy(std::string_view key, int64_t delta);
  // Adds `delta` and, if the key has no expiry yet (it was just created),
  // sets it to `ttl`, atomically (a Lua script): a fixed-window rate-limit
  // counter that can never be left without an expiry.
  absl::StatusOr<int64_t> IncrWithTtl(std::string_view key, absl::Duration ttl, int64_t delta = 1);
  // True if the key exists (and now expires after `ttl`).
  absl::StatusOr<bool> Expire(std::string_view key, absl::Duration ttl);
  // nullopt: no such key; InfiniteDuration: the key never expires.
  absl::StatusOr<std::optional<absl::Duration>> Ttl(std::string_view key);
  // Returns how many subscribers received the message.
  absl::StatusOr<int64_t> Publish(std::string_view channel, std::string_view message);
  // EVAL script numkeys keys... args...
  absl::StatusOr<Reply> Eval(std::string_view script, std::vector<std::string> keys,
                             std::vector<std::string> args);

  PoolStats stats() const;

 private:
  class Lease;

  absl::StatusOr<Lease> Checkout();
  void Return(std::unique_ptr<internal::Connection> conn);
  bool CanCheckout() const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<internal::Connection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mailgrid::redis
