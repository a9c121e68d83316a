// Subscriber against a real redis-server, including a Redis restart.
#include "libs/redis/subscriber.h"

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "libs/redis/client.h"
#include "libs/redis/testing/eventually.h"
#include "libs/redis/testing/redis_server.h"
#include "libs/redis/testing/status_macros.h"

namespace mailgrid::redis {
namespace {

using ::mailgrid::redis::testing::RedisServer;

using ::mailgrid::redis::testing::Eventually;

// Collects what the subscriber thread delivers.
class Inbox {
 public:
  void Add(std::string_view channel, std::string_view message) {
    absl::MutexLock lock(&mu_);
    messages_.emplace_back(std::string(channel), std::string(message));
  }
  void Subscribed() {
    absl::MutexLock lock(&mu_);
    ++subscriptions_;
  }
  std::vector<std::pair<std::string, std::string>> messages() const {
    absl::MutexLock lock(&mu_);
    return messages_;
  }
  int subscriptions() const {
    absl::MutexLock lock(&mu_);
    return subscriptions_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::pair<std::string, std::string>> messages_;
  int subscriptions_ = 0;
};

class SubscriberTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = RedisServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  std::unique_ptr<Subscriber> MakeSubscriber(std::vector<std::string> channels) {
    return std::make_unique<Subscriber>(
        server_->ClientOptions(), std::move(channels),
        [this](std::string_view ch, std::string_view msg) { inbox_.Add(ch, msg); },
        [this] { inbox_.Subscribed(); });
  }
  std::unique_ptr<RedisServer> server_;
  Inbox inbox_;
};

TEST_F(SubscriberTest, ReceivesPublishedMessagesInOrder) {
  auto sub = MakeSubscriber({"tenants", "users"});
  MG_ASSERT_OK(sub->Start());
  ASSERT_TRUE(Eventually([&] { return sub->subscribed(); })) << sub->last_error();
  EXPECT_EQ(inbox_.subscriptions(), 1);

  Client client(server_->ClientOptions());
  const std::string binary("a\0b\r\n", 5);
  MG_ASSERT_OK_AND_ASSIGN(int64_t receivers, client.Publish("tenants", "t1"));
  EXPECT_EQ(receivers, 1);
  MG_ASSERT_OK(client.Publish("other", "not for us"));
  MG_ASSERT_OK(client.Publish("users", binary));
  MG_ASSERT_OK(client.Publish("tenants", "t2"));

  ASSERT_TRUE(Eventually([&] { return inbox_.messages().size() >= 3; }));
  std::vector<std::pair<std::string, std::string>> want = {
      {"tenants", "t1"}, {"users", binary}, {"tenants", "t2"}};
  EXPECT_EQ(inbox_.messages(), want);
  sub->Stop();
  EXPECT_FALSE(sub->subscribed());
}

TEST_F(SubscriberTest, ResubscribesAfterRedisRestarts) {
  auto sub = MakeSubscriber({"changes"});
  MG_ASSERT_OK(sub->Start());
  ASSERT_TRUE(Eventually([&] { return sub->subscribed(); })) << sub->last_error();
  Client client(server_->ClientOptions());
  MG_ASSERT_OK(client.Publish("changes", "before"));
  ASSERT_TRUE(Eventually([&] { return inbox_.messages().size() == 1; }));

  int expected_subscriptions = 1;
  size_t expected_messages = 1;
  for (bool crash : {false, true}) {
    SCOPED_TRACE(crash ? "SIGKILL" : "SIGTERM");
    MG_ASSERT_OK(crash ? server_->Kill() : server_->Stop());
    ASSERT_TRUE(Eventually([&] { return !sub->subscribed(); }));
    // Let it fail to redial at least once while Redis is down.
    ASSERT_TRUE(Eventually([&] { return !sub->last_error().ok(); }));
    MG_ASSERT_OK(server_->Restart());
    ++expected_subscriptions;
    ASSERT_TRUE(Eventually([&] { return inbox_.subscriptions() == expected_subscriptions; }))
        << sub->last_error();
    MG_ASSERT_OK_AND_ASSIGN(int64_t receivers, client.Publish("changes", "after"));
    EXPECT_EQ(receivers, 1);
    ++expected_messages;
    ASSERT_TRUE(Eventually([&] { return inbox_.messages().size() == expected_messages; }));
    EXPECT_EQ(inbox_.messages().back().second, "after");
  }
  EXPECT_EQ(inbox_.messages().size(), 3u);
}

TEST_F(SubscriberTest, StopsCleanlyWhileRedisIsDownAndWhenIdle) {
  MG_ASSERT_OK(server_->Stop());
  auto down = MakeSubscriber({"c"});
  MG_ASSERT_OK(down->Start());
  ASSERT_TRUE(Eventually([&] { return !down->last_error().ok(); }));
  EXPECT_EQ(down->last_error().code(), absl::StatusCode::kUnavailable) << down->last_error();
  down->Stop();  // returns: that is the assertion
  down->Stop();  // idempotent

  MG_ASSERT_OK(server_->Restart());
  auto idle = MakeSubscriber({"c"});
  MG_ASSERT_OK(idle->Start());
  ASSERT_TRUE(Eventually([&] { return idle->subscribed(); }));
  idle.reset();  // the destructor stops a subscriber blocked in a read
  Client client(server_->ClientOptions());
  ASSERT_TRUE(Eventually([&] {
    absl::StatusOr<int64_t> n = client.Publish("c", "x");
    return n.ok() && *n == 0;
  })) << "the stopped subscriber's connection is closed";
}

TEST_F(SubscriberTest, RejectsMisuse) {
  Subscriber none(server_->ClientOptions(), {}, [](std::string_view, std::string_view) {});
  EXPECT_EQ(none.Start().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(none.Run().code(), absl::StatusCode::kInvalidArgument);

  auto sub = MakeSubscriber({"c"});
  MG_ASSERT_OK(sub->Start());
  EXPECT_EQ(sub->Start().code(), absl::StatusCode::kFailedPrecondition);
  sub->Stop();
  EXPECT_EQ(sub->Start().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SubscriberTest, RunBlocksTheCallerUntilStop) {
  Subscriber sub(server_->ClientOptions(), {"c"},
                 [this](std::string_view ch, std::string_view msg) { inbox_.Add(ch, msg); });
  absl::Status run_result = absl::UnknownError("not returned");
  std::thread runner([&] { run_result = sub.Run(); });
  ASSERT_TRUE(Eventually([&] { return sub.subscribed(); }));
  Client client(server_->ClientOptions());
  MG_ASSERT_OK(client.Publish("c", "m"));
  ASSERT_TRUE(Eventually([&] { return inbox_.messages().size() == 1; }));
  sub.Stop();
  runner.join();
  MG_EXPECT_OK(run_result);
}

}  // namespace
}  // namespace mailgrid::redis
