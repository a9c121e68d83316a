// GrpcBackend's submission rate limit against a real redis-server: both
// hourly counters in one script, the room it reports, the refusal and the
// counters' expiry (smtp_session.cc decides from the room where to count).
#include "services/relay/grpc_backend.h"

#include <limits>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "libs/redis/client.h"
#include "libs/redis/testing/redis_server.h"

namespace mailgrid::relay {
namespace {

class GrpcBackendRateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = redis::testing::RedisServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  std::unique_ptr<GrpcBackend> Backend(int user_limit, int tenant_limit) {
    Options o;
    o.redis = server_->url();
    o.rate_user_per_hour = user_limit;
    o.rate_tenant_per_hour = tenant_limit;
    auto b = GrpcBackend::Create(o, "", "");
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? *std::move(b) : nullptr;
  }
  std::unique_ptr<redis::testing::RedisServer> server_;
};

TEST_F(GrpcBackendRateTest, CountsBothLimitsInOneCallAndReportsTheSmallerRoom) {
  std::unique_ptr<GrpcBackend> b = Backend(3, 5);
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(b->CountsSubmissions());
  // The user's limit is the tighter one.
  auto r = b->CountSubmissionRoom("t1", "u1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 2);
  r = b->CountSubmissionRoom("t1", "u1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 1);
  // Another user of the tenant: the tenant's counter (3 of 5) is tighter.
  r = b->CountSubmissionRoom("t1", "u2");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 2);
  r = b->CountSubmissionRoom("t1", "u1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 0);
  // Over the user's limit.
  r = b->CountSubmissionRoom("t1", "u1");
  EXPECT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
  EXPECT_TRUE(absl::IsResourceExhausted(b->CountSubmission("t1", "u1")));
  // The counters are the keys relayd always used, and they expire.
  redis::Client c(server_->ClientOptions());
  int64_t hour = absl::ToUnixSeconds(absl::Now()) / 3600;
  for (const std::string& key :
       {absl::StrCat("relay:rate:u:u1:", hour), absl::StrCat("relay:rate:t:t1:", hour)}) {
    auto v = c.Get(key);
    ASSERT_TRUE(v.ok()) << v.status();
    ASSERT_TRUE(v->has_value()) << key;
    auto ttl = c.Ttl(key);
    ASSERT_TRUE(ttl.ok()) << ttl.status();
    ASSERT_TRUE(ttl->has_value()) << key;
    EXPECT_GT(**ttl, absl::ZeroDuration()) << key;
    EXPECT_LE(**ttl, absl::Hours(2)) << key;
  }
  auto u1 = c.Get(absl::StrCat("relay:rate:u:u1:", hour));
  ASSERT_TRUE(u1.ok() && u1->has_value());
  EXPECT_EQ(**u1, "5");  // every call counted, the refused ones too
}

TEST_F(GrpcBackendRateTest, OneLimitOnlyAndNoLimit) {
  std::unique_ptr<GrpcBackend> tenant_only = Backend(0, 2);
  ASSERT_NE(tenant_only, nullptr);
  auto r = tenant_only->CountSubmissionRoom("t9", "u9");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 1);
  std::unique_ptr<GrpcBackend> none = Backend(0, 0);
  ASSERT_NE(none, nullptr);
  EXPECT_FALSE(none->CountsSubmissions());
  r = none->CountSubmissionRoom("t9", "u9");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, std::numeric_limits<int64_t>::max());
}

TEST_F(GrpcBackendRateTest, RedisDownFailsOpen) {
  std::unique_ptr<GrpcBackend> b = Backend(3, 5);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(server_->Stop().ok());
  auto r = b->CountSubmissionRoom("t1", "u1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 0);  // no room known: the session counts at MAIL next time
}

}  // namespace
}  // namespace mailgrid::relay
