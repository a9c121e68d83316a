#include "libs/base/net.h"

#include "gtest/gtest.h"

namespace mailgrid::net {
namespace {

TEST(NetTest, ParseHostPort) {
  auto a = ParseHostPort("10.0.0.1:25");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "10.0.0.1");
  EXPECT_EQ(a->port, 25);
  auto b = ParseHostPort("[::1]:143");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->ToString(), "[::1]:143");
  auto c = ParseHostPort(":587");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "127.0.0.1");
  EXPECT_FALSE(ParseHostPort("nohost").ok());
  EXPECT_FALSE(ParseHostPort("h:99999").ok());
  EXPECT_FALSE(ParseHostPort("h:abc").ok());
}

TEST(NetTest, PortInUseIsReported) {
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  EXPECT_TRUE(CheckPortFree({"127.0.0.1", *port}).ok());
}

}  // namespace
}  // namespace mailgrid::net
