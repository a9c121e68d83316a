#include "libs/redis/options.h"

#include "gtest/gtest.h"
#include "libs/redis/testing/status_macros.h"

namespace mailgrid::redis {
namespace {

TEST(OptionsTest, DefaultsAreValid) {
  Options o;
  MG_EXPECT_OK(o.Validate());
  EXPECT_EQ(o.Endpoint(), "127.0.0.1:6379");
}

TEST(OptionsTest, UrlHostAndPort) {
  MG_ASSERT_OK_AND_ASSIGN(Options o, Options::FromUrl("redis://cache.internal:6380"));
  EXPECT_EQ(o.host, "cache.internal");
  EXPECT_EQ(o.port, 6380);
  EXPECT_EQ(o.password, "");
  EXPECT_EQ(o.db, 0);
}

TEST(OptionsTest, UrlDefaultsPortAndKeepsTimeouts) {
  MG_ASSERT_OK_AND_ASSIGN(Options o, Options::FromUrl("redis://localhost"));
  EXPECT_EQ(o.host, "localhost");
  EXPECT_EQ(o.port, 6379);
  EXPECT_EQ(o.command_timeout, Options().command_timeout);
  EXPECT_EQ(o.pool_size, Options().pool_size);
}

TEST(OptionsTest, UrlPasswordUserAndDb) {
  MG_ASSERT_OK_AND_ASSIGN(Options o, Options::FromUrl("redis://:s3cret@10.0.0.5:7000/2"));
  EXPECT_EQ(o.user, "");
  EXPECT_EQ(o.password, "s3cret");
  EXPECT_EQ(o.host, "10.0.0.5");
  EXPECT_EQ(o.port, 7000);
  EXPECT_EQ(o.db, 2);

  MG_ASSERT_OK_AND_ASSIGN(Options acl, Options::FromUrl("redis://svc:pw@h:1"));
  EXPECT_EQ(acl.user, "svc");
  EXPECT_EQ(acl.password, "pw");
}

TEST(OptionsTest, UrlPasswordEscapesAndRawAt) {
  MG_ASSERT_OK_AND_ASSIGN(Options o, Options::FromUrl("redis://:p%40ss%2Fw%3Ad@h:1"));
  EXPECT_EQ(o.password, "p@ss/w:d");
  // An unescaped '@' in the password: the last '@' ends the credentials.
  MG_ASSERT_OK_AND_ASSIGN(Options raw, Options::FromUrl("redis://:a@b@h:2"));
  EXPECT_EQ(raw.password, "a@b");
  EXPECT_EQ(raw.host, "h");
  EXPECT_EQ(raw.port, 2);
}

TEST(OptionsTest, UrlIpv6) {
  MG_ASSERT_OK_AND_ASSIGN(Options o, Options::FromUrl("redis://[::1]:6390"));
  EXPECT_EQ(o.host, "::1");
  EXPECT_EQ(o.port, 6390);
  EXPECT_EQ(o.Endpoint(), "[::1]:6390");
}

TEST(OptionsTest, UrlRejectsBadInput) {
  for (const char* bad :
       {"", "http://h:1", "redis://", "redis://:1", "redis://h:0", "redis://h:65536", "redis://h:x",
        "redis://h:", "redis://h/x", "redis://h/-1", "redis://pw@h", "redis://:%zz@h",
        "redis://:%4@h", "redis://[::1", "redis://[::1]x", "redis://u:@h"}) {
    absl::StatusOr<Options> o = Options::FromUrl(bad);
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument) << "url: " << bad;
  }
  EXPECT_TRUE(Options::FromUrl("rediss://h:1").ok());  // TLS: see tls_test.cc
}

TEST(OptionsTest, ValidateNamesTheField) {
  Options o;
  o.pool_size = 0;
  EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(o.Validate().message().find("pool_size"), absl::string_view::npos);
  o = Options();
  o.command_timeout = absl::ZeroDuration();
  EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument);
  o = Options();
  o.port = 70000;
  EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mailgrid::redis
