#include "libs/redis/client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/base/status.h"
#include "libs/base/strings.h"
#include "libs/redis/connection.h"

namespace mailgrid::redis {
namespace {

// PTTL < 0 covers both a brand-new key and one left without an expiry by
// anything else, so the counter always ends up expiring.
constexpr std::string_view kIncrWithTtlScript = R"lua(
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
)lua";

// Redis takes whole milliseconds; a positive TTL must not round to zero.
absl::StatusOr<std::string> TtlMillis(absl::Duration ttl) {
  if (ttl <= absl::ZeroDuration() || ttl == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError("redis: ttl must be positive and finite");
  }
  return std::to_string(std::max<int64_t>(1, absl::ToInt64Milliseconds(ttl)));
}

absl::StatusOr<int64_t> IntegerReply(const Reply& r, std::string_view cmd) {
  if (!r.is_integer()) {
    return absl::InternalError(
        absl::StrCat("redis: ", ToAbsl(cmd), ": expected an integer, got ", r.DebugString()));
  }
  return r.as_integer();
}

absl::StatusOr<std::optional<std::string>> OptionalStringReply(const Reply& r,
                                                               std::string_view cmd) {
  if (r.is_nil()) return std::nullopt;
  if (!r.is_string()) {
    return absl::InternalError(
        absl::StrCat("redis: ", ToAbsl(cmd), ": expected a string, got ", r.DebugString()));
  }
  return r.as_string();
}

}  // namespace

// A checked-out connection; goes back to the pool (or is discarded if it
// broke) when the Lease dies, whatever path the call took.
class Client::Lease {
 public:
  Lease(Client* client, std::unique_ptr<internal::Connection> conn)
      : client_(client), conn_(std::move(conn)) {}
  Lease(Lease&& other) noexcept = default;
  Lease& operator=(Lease&&) = delete;
  ~Lease() {
    if (conn_ != nullptr) client_->Return(std::move(conn_));
  }
  internal::Connection* operator->() const { return conn_.get(); }

 private:
  Client* client_;
  std::unique_ptr<internal::Connection> conn_;
};

Client::Client(Options options) : options_(std::move(options)) {}

Client::~Client() = default;

bool Client::CanCheckout() const {
  return !idle_.empty() || open_ < std::max(1, options_.pool_size);
}

absl::StatusOr<Client::Lease> Client::Checkout() {
  std::vector<std::unique_ptr<internal::Connection>> stale;  // closed after unlock
  {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(this, &Client::CanCheckout),
                              options_.checkout_timeout)) {
      return absl::DeadlineExceededError(absl::StrCat(
          "redis ", options_.Endpoint(), ": all ", options_.pool_size,
          " pooled connections busy for ", absl::FormatDuration(options_.checkout_timeout)));
    }
    while (!idle_.empty()) {
      std::unique_ptr<internal::Connection> conn = std::move(idle_.back());
      idle_.pop_back();
      if (!conn->IsStale()) return Lease(this, std::move(conn));
      stale.push_back(std::move(conn));
      --open_;
    }
    // Reserve the slot before dialing, so the pool bound holds while the
    // (slow) dial happens without the lock.
    ++open_;
  }
  stale.clear();
  absl::StatusOr<std::unique_ptr<internal::Connection>> conn = internal::Connection::Dial(options_);
  if (!conn.ok()) {
    absl::MutexLock lock(&mu_);
    --open_;
    return conn.status();
  }
  return Lease(this, *std::move(conn));
}

void Client::Return(std::unique_ptr<internal::Connection> conn) {
  if (conn->broken()) {
    conn.reset();  // close outside the lock
    absl::MutexLock lock(&mu_);
    --open_;
    return;
  }
  absl::MutexLock lock(&mu_);
  idle_.push_back(std::move(conn));
}

PoolStats Client::stats() const {
  absl::MutexLock lock(&mu_);
  return PoolStats{open_, static_cast<int>(idle_.size())};
}

absl::Status Client::Ping() { return Command({"PING"}).status(); }

absl::StatusOr<Reply> Client::Command(std::vector<std::string> args) {
  if (args.empty()) return absl::InvalidArgumentError("redis: empty command");
  ASSIGN_OR_RETURN(Lease conn, Checkout());
  ASSIGN_OR_RETURN(Reply reply, conn->Call(args));
  RETURN_IF_ERROR(StatusFromReply(reply));
  return reply;
}

absl::StatusOr<std::vector<Reply>> Client::Pipeline(
    std::vector<std::vector<std::string>> commands) {
  for (const auto& c : commands) {
    if (c.empty()) return absl::InvalidArgumentError("redis: empty command in pipeline");
  }
  if (commands.empty()) return std::vector<Reply>{};
  ASSIGN_OR_RETURN(Lease conn, Checkout());
  for (const auto& c : commands) RETURN_IF_ERROR(conn->Append(c));
  std::vector<Reply> replies;
  replies.reserve(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    ASSIGN_OR_RETURN(Reply reply, conn->Read());
    replies.push_back(std::move(reply));
  }
  return replies;
}

absl::StatusOr<std::optional<std::string>> Client::Get(std::string_view key) {
  ASSIGN_OR_RETURN(Reply r, Command({"GET", std::string(key)}));
  return OptionalStringReply(r, "GET");
}

absl::StatusOr<std::optional<std::string>> Client::GetDel(std::string_view key) {
  ASSIGN_OR_RETURN(Reply r, Command({"GETDEL", std::string(key)}));
  return OptionalStringReply(r, "GETDEL");
}

absl::StatusOr<bool> Client::Set(std::string_view key, std::string_view value, SetOptions opts) {
  std::vector<std::string> args = {"SET", std::string(key), std::string(value)};
  if (opts.ttl != absl::ZeroDuration()) {
    ASSIGN_OR_RETURN(std::string ms, TtlMillis(opts.ttl));
    args.push_back("PX");
    args.push_back(std::move(ms));
  }
  if (opts.if_absent) args.push_back("NX");
  ASSIGN_OR_RETURN(Reply r, Command(std::move(args)));
  return !r.is_nil();  // NX that did not set answers nil
}

absl::StatusOr<bool> Client::Del(std::string_view key) {
  ASSIGN_OR_RETURN(Reply r, Command({"DEL", std::string(key)}));
  ASSIGN_OR_RETURN(int64_t n, IntegerReply(r, "DEL"));
  return n > 0;
}

absl::StatusOr<int64_t> Client::Incr(std::string_view key) { return IncrBy(key, 1); }

absl::StatusOr<int64_t> Client::IncrBy(std::string_view key, int64_t delta) {
  ASSIGN_OR_RETURN(Reply r, Command({"INCRBY", std::string(key), std::to_string(delta)}));
  return IntegerReply(r, "INCRBY");
}

absl::StatusOr<int64_t> Client::IncrWithTtl(std::string_view key, absl::Duration ttl,
                                            int64_t delta) {
  ASSIGN_OR_RETURN(std::string ms, TtlMillis(ttl));
  ASSIGN_OR_RETURN(Reply r, Eval(kIncrWithTtlScript, {std::string(key)},
                                 {std::to_string(delta), std::move(ms)}));
  return IntegerReply(r, "IncrWithTtl");
}

absl::StatusOr<bool> Client::Expire(std::string_view key, absl::Duration ttl) {
  ASSIGN_OR_RETURN(std::string ms, TtlMillis(ttl));
  ASSIGN_OR_RETURN(Reply r, Command({"PEXPIRE", std::string(key), std::move(ms)}));
  ASSIGN_OR_RETURN(int64_t n, IntegerReply(r, "PEXPIRE"));
  return n == 1;
}

absl::StatusOr<std::optional<absl::Duration>> Client::Ttl(std::string_view key) {
  ASSIGN_OR_RETURN(Reply r, Command({"PTTL", std::string(key)}));
  ASSIGN_OR_RETURN(int64_t ms, IntegerReply(r, "PTTL"));
  if (ms == -2) return std::nullopt;
  if (ms == -1) return absl::InfiniteDuration();
  return absl::Milliseconds(ms);
}

absl::StatusOr<int64_t> Client::Publish(std::string_view channel, std::string_view message) {
  ASSIGN_OR_RETURN(Reply r, Command({"PUBLISH", std::string(channel), std::string(message)}));
  return IntegerReply(r, "PUBLISH");
}

absl::StatusOr<Reply> Client::Eval(std::string_view script, std::vector<std::string> keys,
                                   std::vector<std::string> args) {
  std::vector<std::string> cmd;
  cmd.reserve(3 + keys.size() + args.size());
  cmd.push_back("EVAL");
  cmd.push_back(std::string(script));
  cmd.push_back(std::to_string(keys.size()));
  for (auto& k : keys) cmd.push_back(std::move(k));
  for (auto& a : args) cmd.push_back(std::move(a));
  return Command(std::move(cmd));
}

}  // namespace mailgrid::redis
