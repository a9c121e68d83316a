#include "libs/mailstore_client/mailstore_client.h"

#include "gtest/gtest.h"

namespace mailgrid::mailstore_client {
namespace {

TEST(ShardMapTest, PlainListIsShardZero) {
  auto m = ShardMap::Parse(" a:1, b:2 ,c:3");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->shards.size(), 1u);
  EXPECT_EQ(m->shards.at(0), (std::vector<std::string>{"a:1", "b:2", "c:3"}));
  EXPECT_EQ(m->ToString(), "0=a:1,b:2,c:3");
}

TEST(ShardMapTest, NumberedShards) {
  auto m = ShardMap::Parse("0=a:1,b:2;1=c:3,d:4; 7 = e:5");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->shards.size(), 3u);
  EXPECT_EQ(m->shards.at(1), (std::vector<std::string>{"c:3", "d:4"}));
  EXPECT_EQ(m->shards.at(7), (std::vector<std::string>{"e:5"}));
  auto again = ShardMap::Parse(m->ToString());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->shards, m->shards);
}

TEST(ShardMapTest, Errors) {
  EXPECT_FALSE(ShardMap::Parse("0=a:1;0=b:2").ok());
  EXPECT_FALSE(ShardMap::Parse("x=a:1").ok());
  EXPECT_FALSE(ShardMap::Parse("a:1;b:2").ok());
  EXPECT_FALSE(ShardMap::Parse("0=nohostport").ok());
  EXPECT_FALSE(ShardMap::Parse("1=").ok());
  EXPECT_TRUE(ShardMap::Parse("")->shards.empty());
}

TEST(ClientTest, UnknownShardIsUnavailable) {
  auto c = MailstoreClient::FromFlag("127.0.0.1:1", nullptr);
  ASSERT_TRUE(c.ok());
  v1::FolderStatusRequest r;
  auto s = (*c)->FolderStatus(3, r);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace mailgrid::mailstore_client
