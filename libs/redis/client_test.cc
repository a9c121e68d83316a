// Client against a real redis-server, including Redis going away and coming
// back. No durations are asserted; waits poll with generous limits.
#include "libs/redis/client.h"

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "libs/redis/testing/eventually.h"
#include "libs/redis/testing/redis_server.h"
#include "libs/redis/testing/status_macros.h"

namespace mailgrid::redis {
namespace {

using ::mailgrid::redis::testing::RedisServer;
using ::mailgrid::redis::testing::RedisServerOptions;

using ::mailgrid::redis::testing::Eventually;

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = RedisServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  std::unique_ptr<RedisServer> server_;
};

TEST_F(ClientTest, BasicCommands) {
  Client client(server_->ClientOptions());
  MG_EXPECT_OK(client.Ping());

  MG_ASSERT_OK_AND_ASSIGN(std::optional<std::string> missing, client.Get("absent"));
  EXPECT_FALSE(missing.has_value());

  MG_ASSERT_OK_AND_ASSIGN(bool stored, client.Set("k", "v1"));
  EXPECT_TRUE(stored);
  MG_ASSERT_OK_AND_ASSIGN(std::optional<std::string> v, client.Get("k"));
  EXPECT_EQ(v, "v1");

  MG_ASSERT_OK_AND_ASSIGN(bool deleted, client.Del("k"));
  EXPECT_TRUE(deleted);
  MG_ASSERT_OK_AND_ASSIGN(deleted, client.Del("k"));
  EXPECT_FALSE(deleted);

  MG_ASSERT_OK_AND_ASSIGN(Reply echo, client.Command({"ECHO", "hello"}));
  EXPECT_EQ(echo, Reply::String("hello"));

  MG_ASSERT_OK(client.Command({"HSET", "h", "f1", "a", "f2", "b"}));
  MG_ASSERT_OK_AND_ASSIGN(Reply all, client.Command({"HGETALL", "h"}));
  ASSERT_TRUE(all.is_array());
  EXPECT_EQ(all.elements().size(), 4u);

  MG_ASSERT_OK_AND_ASSIGN(int64_t n, client.Incr("n"));
  EXPECT_EQ(n, 1);
  MG_ASSERT_OK_AND_ASSIGN(n, client.IncrBy("n", 41));
  EXPECT_EQ(n, 42);
  MG_ASSERT_OK_AND_ASSIGN(n, client.IncrBy("n", -2));
  EXPECT_EQ(n, 40);
}

TEST_F(ClientTest, SetIfAbsentAndGetDel) {
  Client client(server_->ClientOptions());
  MG_ASSERT_OK_AND_ASSIGN(bool first, client.Set("ticket", "t1", {.if_absent = true}));
  EXPECT_TRUE(first);
  MG_ASSERT_OK_AND_ASSIGN(bool second, client.Set("ticket", "t2", {.if_absent = true}));
  EXPECT_FALSE(second);

  MG_ASSERT_OK_AND_ASSIGN(std::optional<std::string> taken, client.GetDel("ticket"));
  EXPECT_EQ(taken, "t1");
  MG_ASSERT_OK_AND_ASSIGN(taken, client.GetDel("ticket"));
  EXPECT_FALSE(taken.has_value()) << "a one-time ticket must be taken once";
}

TEST_F(ClientTest, BinarySafeKeysAndValues) {
  Client client(server_->ClientOptions());
  const std::string key("k\0e\r\ny", 6);
  std::string value("\0a\r\n\xff\0", 6);
  for (int c = 0; c < 256; ++c) value.push_back(static_cast<char>(c));
  MG_ASSERT_OK(client.Set(key, value));
  MG_ASSERT_OK_AND_ASSIGN(std::optional<std::string> got, client.Get(key));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, value);
  // The NUL-truncated key must not exist: the key went over whole.
  MG_ASSERT_OK_AND_ASSIGN(std::optional<std::string> prefix, client.Get("k"));
  EXPECT_FALSE(prefix.has_value());
  MG_ASSERT_OK_AND_ASSIGN(Reply strlen, client.Command({"STRLEN", key}));
  EXPECT_EQ(strlen.as_integer(), static_cast<int64_t>(value.size()));
}

TEST_F(ClientTest, TtlAndExpiry) {
  Client client(server_->ClientOptions());
  MG_ASSERT_OK_AND_ASSIGN(std::optional<absl::Duration> none, client.Ttl("absent"));
  EXPECT_FALSE(none.has_value());

  MG_ASSERT_OK(client.Set("forever", "x"));
  MG_ASSERT_OK_AND_ASSIGN(std::optional<absl::Duration> inf, client.Ttl("forever"));
  ASSERT_TRUE(inf.has_value());
  EXPECT_EQ(*inf, absl::InfiniteDuration());

  MG_ASSERT_OK(client.Set("session", "s", {.ttl = absl::Seconds(100)}));
  MG_ASSERT_OK_AND_ASSIGN(std::optional<absl::Duration> ttl, client.Ttl("session"));
  ASSERT_TRUE(ttl.has_value());
  EXPECT_GT(*ttl, absl::ZeroDuration());
  EXPECT_LE(*ttl, absl::Seconds(100));

  MG_ASSERT_OK_AND_ASSIGN(bool existed, client.Expire("absent", absl::Seconds(5)));
  EXPECT_FALSE(existed);
  MG_ASSERT_OK_AND_ASSIGN(existed, client.Expire("forever", absl::Seconds(300)));
  EXPECT_TRUE(existed);
  MG_ASSERT_OK_AND_ASSIGN(ttl, client.Ttl("forever"));
  ASSERT_TRUE(ttl.has_value());
  EXPECT_GT(*ttl, absl::Seconds(100));
  EXPECT_LE(*ttl, absl::Seconds(300));

  // A short TTL really expires the key.
  MG_ASSERT_OK(client.Set("brief", "b", {.ttl = absl::Milliseconds(50)}));
  EXPECT_TRUE(Eventually([&] {
    absl::StatusOr<std::optional<std::string>> v = client.Get("brief");
    return v.ok() && !v->has_value();
  }));

  EXPECT_EQ(client.Set("k", "v", {.ttl = absl::Seconds(-1)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client.Expire("k", absl::ZeroDuration()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ClientTest, IncrWithTtlSetsExpiryOnceAndRestartsAfterIt) {
  Client client(server_->ClientOptions());
  MG_ASSERT_OK_AND_ASSIGN(int64_t n, client.IncrWithTtl("rate:alice", absl::Seconds(100)));
  EXPECT_EQ(n, 1);
  MG_ASSERT_OK_AND_ASSIGN(n, client.IncrWithTtl("rate:alice", absl::Seconds(100), 4));
  EXPECT_EQ(n, 5);
  MG_ASSERT_OK_AND_ASSIGN(std::optional<absl::Duration> ttl, client.Ttl("rate:alice"));
  ASSERT_TRUE(ttl.has_value());
  EXPECT_GT(*ttl, absl::ZeroDuration());
  EXPECT_LE(*ttl, absl::Seconds(100));

  // A counter somebody left without an expiry gets one.
  MG_ASSERT_OK(client.Set("rate:bob", "7"));
  MG_ASSERT_OK_AND_ASSIGN(n, client.IncrWithTtl("rate:bob", absl::Seconds(100)));
  EXPECT_EQ(n, 8);
  MG_ASSERT_OK_AND_ASSIGN(ttl, client.Ttl("rate:bob"));
  ASSERT_TRUE(ttl.has_value());
  EXPECT_NE(*ttl, absl::InfiniteDuration());

  // The window ends: the count starts over.
  MG_ASSERT_OK_AND_ASSIGN(n, client.IncrWithTtl("rate:carol", absl::Milliseconds(50)));
  EXPECT_EQ(n, 1);
  EXPECT_TRUE(Eventually([&] {
    absl::StatusOr<std::optional<std::string>> v = client.Get("rate:carol");
    return v.ok() && !v->has_value();
  }));
  MG_ASSERT_OK_AND_ASSIGN(n, client.IncrWithTtl("rate:carol", absl::Seconds(100)));
  EXPECT_EQ(n, 1);

  EXPECT_EQ(client.IncrWithTtl("rate:x", absl::ZeroDuration()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ClientTest, EvalAndPipelineTransaction) {
  Client client(server_->ClientOptions());
  MG_ASSERT_OK_AND_ASSIGN(Reply r, client.Eval("return {KEYS[1], ARGV[1], tonumber(ARGV[2]) * 2}",
                                               {"key"}, {"a", "21"}));
  EXPECT_EQ(r, Reply::Array({Reply::String("key"), Reply::String("a"), Reply::Integer(42)}));

  MG_ASSERT_OK_AND_ASSIGN(
      std::vector<Reply> replies,
      client.Pipeline({{"MULTI"}, {"INCR", "tx"}, {"EXPIRE", "tx", "100"}, {"EXEC"}}));
  ASSERT_EQ(replies.size(), 4u);
  EXPECT_EQ(replies[0], Reply::Status("OK"));
  EXPECT_EQ(replies[1], Reply::Status("QUEUED"));
  EXPECT_EQ(replies[3], Reply::Array({Reply::Integer(1), Reply::Integer(1)}));

  // A failing command inside a pipeline is a value, not a failed call.
  MG_ASSERT_OK_AND_ASSIGN(replies,
                          client.Pipeline({{"SET", "s", "x"}, {"LPUSH", "s", "y"}, {"GET", "s"}}));
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(StatusFromReply(replies[1]).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(replies[2], Reply::String("x"));
}

TEST_F(ClientTest, ErrorRepliesBecomeStatusesAndKeepTheConnection) {
  Client client(server_->ClientOptions());
  MG_ASSERT_OK(client.Set("str", "x"));
  absl::StatusOr<Reply> wrongtype = client.Command({"LPUSH", "str", "y"});
  EXPECT_EQ(wrongtype.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(wrongtype.status().message(), "WRONGTYPE")) << wrongtype.status();

  absl::StatusOr<Reply> unknown = client.Command({"NOSUCHCOMMAND", "x"});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(absl::StrContains(unknown.status().message(), "unknown command")) << unknown.status();

  EXPECT_EQ(client.Incr("str").status().code(), absl::StatusCode::kInternal);  // not an integer
  EXPECT_EQ(client.Eval("this is not lua", {}, {}).status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(client.Command({}).status().code(), absl::StatusCode::kInvalidArgument);

  // Error replies are protocol-level answers: the connection stays pooled.
  MG_EXPECT_OK(client.Ping());
  EXPECT_EQ(client.stats().open, 1);
  EXPECT_EQ(client.stats().idle, 1);
}

TEST_F(ClientTest, PoolUnderConcurrentUse) {
  Options opts = server_->ClientOptions();
  opts.pool_size = 3;
  Client client(opts);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 250;
  std::atomic<int> failures{0};
  std::atomic<int> max_open{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        if (!client.Incr("shared").ok()) failures++;
        if (!client.Set("thread:" + std::to_string(t), std::to_string(i)).ok()) failures++;
        int open = client.stats().open;
        int seen = max_open.load();
        while (open > seen && !max_open.compare_exchange_weak(seen, open)) {
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(max_open.load(), 3);
  MG_ASSERT_OK_AND_ASSIGN(std::optional<std::string> total, client.Get("shared"));
  EXPECT_EQ(total, std::to_string(kThreads * kPerThread));
  for (int t = 0; t < kThreads; ++t) {
    MG_ASSERT_OK_AND_ASSIGN(std::optional<std::string> last,
                            client.Get("thread:" + std::to_string(t)));
    EXPECT_EQ(last, std::to_string(kPerThread - 1));
  }
  // The server agrees on how many connections the pool holds.
  MG_ASSERT_OK_AND_ASSIGN(Reply info, client.Command({"INFO", "clients"}));
  int64_t connected = -1;
  for (absl::string_view line : absl::StrSplit(info.as_string(), "\r\n")) {
    if (absl::ConsumePrefix(&line, "connected_clients:")) {
      ASSERT_TRUE(absl::SimpleAtoi(line, &connected));
    }
  }
  EXPECT_GE(connected, 1);
  EXPECT_LE(connected, 3);
}

TEST_F(ClientTest, CheckoutWaitsThenTimesOutWhenPoolIsBusy) {
  Options opts = server_->ClientOptions();
  opts.pool_size = 1;
  opts.checkout_timeout = absl::Milliseconds(100);
  opts.command_timeout = absl::Seconds(120);
  Client client(opts);
  absl::StatusOr<Reply> popped;
  std::thread blocker([&] { popped = client.Command({"BLPOP", "queue", "0"}); });
  // Wait until the blocker holds the only connection.
  ASSERT_TRUE(Eventually([&] {
    PoolStats s = client.stats();
    return s.open == 1 && s.idle == 0;
  }));
  EXPECT_EQ(client.Get("x").status().code(), absl::StatusCode::kDeadlineExceeded);

  Client other(server_->ClientOptions());
  MG_ASSERT_OK(other.Command({"LPUSH", "queue", "job"}));
  blocker.join();
  MG_ASSERT_OK(popped);
  EXPECT_EQ(*popped, Reply::Array({Reply::String("queue"), Reply::String("job")}));
  MG_EXPECT_OK(client.Ping());
}

TEST_F(ClientTest, CommandTimeoutIsDeadlineExceededAndDiscardsTheConnection) {
  Options opts = server_->ClientOptions();
  opts.command_timeout = absl::Milliseconds(200);
  Client client(opts);
  // The server holds the reply back far longer than the timeout.
  absl::StatusOr<Reply> r = client.Command({"BLPOP", "never", "600"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  // Its reply could still arrive later, so that connection is not reused.
  EXPECT_EQ(client.stats().open, 0);
  MG_EXPECT_OK(client.Ping());
}

TEST_F(ClientTest, ConnectionKilledMidCommandIsUnavailableThenRecovers) {
  Client client(server_->ClientOptions());
  absl::StatusOr<Reply> r;
  std::thread blocker([&] { r = client.Command({"BLPOP", "never", "0"}); });
  ASSERT_TRUE(Eventually([&] { return client.stats().open == 1 && client.stats().idle == 0; }));
  Client admin(server_->ClientOptions());
  // Kill every other normal client (the blocked one), as a network fault would.
  ASSERT_TRUE(Eventually([&] {
    absl::StatusOr<Reply> killed = admin.Command({"CLIENT", "KILL", "TYPE", "normal"});
    return killed.ok() && killed->as_integer() >= 1;
  }));
  blocker.join();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_EQ(client.stats().open, 0);
  MG_EXPECT_OK(client.Ping());
}

TEST_F(ClientTest, RedisDownIsUnavailableAndTheSameClientRecovers) {
  Client client(server_->ClientOptions());
  // Fill the pool with idle connections that the restart will break.
  MG_ASSERT_OK(client.Set("before", "1"));
  std::vector<std::thread> warm;
  for (int i = 0; i < 4; ++i) warm.emplace_back([&] { client.Ping().IgnoreError(); });
  for (std::thread& t : warm) t.join();
  EXPECT_GE(client.stats().idle, 1);

  for (bool crash : {false, true}) {
    SCOPED_TRACE(crash ? "SIGKILL" : "SIGTERM");
    MG_ASSERT_OK(crash ? server_->Kill() : server_->Stop());
    // Every call fails fast with a status; none crash or hang.
    for (int i = 0; i < 6; ++i) {
      EXPECT_EQ(client.Ping().code(), absl::StatusCode::kUnavailable);
      EXPECT_EQ(client.Set("k", "v").status().code(), absl::StatusCode::kUnavailable);
      EXPECT_EQ(client.Get("k").status().code(), absl::StatusCode::kUnavailable);
      EXPECT_EQ(client.IncrWithTtl("r", absl::Seconds(1)).status().code(),
                absl::StatusCode::kUnavailable);
    }
    EXPECT_EQ(client.stats().open, 0);

    MG_ASSERT_OK(server_->Restart());
    ASSERT_TRUE(Eventually([&] { return client.Ping().ok(); }));
    MG_ASSERT_OK(client.Set("after", "2"));
    MG_ASSERT_OK_AND_ASSIGN(std::optional<std::string> v, client.Get("after"));
    EXPECT_EQ(v, "2");
    // Redis holds what may be lost: the restart emptied it.
    MG_ASSERT_OK_AND_ASSIGN(v, client.Get("before"));
    EXPECT_FALSE(v.has_value());
  }
}

TEST(ClientNoServerTest, NothingListeningIsUnavailable) {
  // Take a port from a server and stop it, so nothing listens there.
  auto server = RedisServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  Options opts = (*server)->ClientOptions();
  MG_ASSERT_OK((*server)->Stop());
  Client client(opts);
  absl::Status s = client.Ping();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), opts.Endpoint())) << s;
}

TEST(ClientAuthTest, PasswordAndDatabase) {
  RedisServerOptions server_opts;
  server_opts.password = "s3cret p@ss/word";
  auto started = RedisServer::Start(server_opts);
  ASSERT_TRUE(started.ok()) << started.status();
  RedisServer& server = **started;

  Options no_pass = server.ClientOptions();
  no_pass.password.clear();
  EXPECT_EQ(Client(no_pass).Ping().code(), absl::StatusCode::kPermissionDenied);

  Options wrong = server.ClientOptions();
  wrong.password = "nope";
  EXPECT_EQ(Client(wrong).Ping().code(), absl::StatusCode::kPermissionDenied);

  MG_ASSERT_OK_AND_ASSIGN(Options from_url, Options::FromUrl(server.url() + "/3"));
  EXPECT_EQ(from_url.password, server_opts.password);
  Client db3(from_url);
  MG_ASSERT_OK(db3.Set("only-in-3", "x"));
  Client db0(server.ClientOptions());
  MG_ASSERT_OK_AND_ASSIGN(std::optional<std::string> v, db0.Get("only-in-3"));
  EXPECT_FALSE(v.has_value());
  MG_ASSERT_OK_AND_ASSIGN(v, db3.Get("only-in-3"));
  EXPECT_EQ(v, "x");
}

}  // namespace
}  // namespace mailgrid::redis
