#include "libs/redis/reply.h"

#include <hiredis/hiredis.h>

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace mailgrid::redis {
namespace {

// Parses RESP bytes with hiredis's own reader, so FromHiredis is tested on
// the structures hiredis really builds.
Reply Parse(const std::string& resp) {
  std::unique_ptr<redisReader, void (*)(redisReader*)> reader(redisReaderCreate(), redisReaderFree);
  EXPECT_EQ(redisReaderFeed(reader.get(), resp.data(), resp.size()), REDIS_OK);
  void* raw = nullptr;
  EXPECT_EQ(redisReaderGetReply(reader.get(), &raw), REDIS_OK);
  EXPECT_NE(raw, nullptr) << "incomplete RESP: " << resp;
  if (raw == nullptr) return Reply::Error("parse failed");
  Reply r = Reply::FromHiredis(*static_cast<redisReply*>(raw));
  freeReplyObject(raw);
  return r;
}

TEST(ReplyTest, Scalars) {
  EXPECT_TRUE(Parse("$-1\r\n").is_nil());
  Reply i = Parse(":-42\r\n");
  EXPECT_TRUE(i.is_integer());
  EXPECT_EQ(i.as_integer(), -42);
  Reply s = Parse("+OK\r\n");
  EXPECT_TRUE(s.is_status());
  EXPECT_TRUE(s.is_string());
  EXPECT_EQ(s.as_string(), "OK");
  Reply e = Parse("-WRONGTYPE bad\r\n");
  EXPECT_TRUE(e.is_error());
  EXPECT_FALSE(e.is_string());
  EXPECT_EQ(e.as_string(), "WRONGTYPE bad");
}

TEST(ReplyTest, BinaryBulkString) {
  Reply r = Parse(std::string("$5\r\na\0b\r\n\r\n", 12));
  ASSERT_EQ(r.type(), Reply::Type::kString);
  EXPECT_EQ(r.as_string(), std::string("a\0b\r\n", 5));
}

TEST(ReplyTest, NestedArrayIsDeepCopied) {
  Reply r = Parse("*3\r\n$7\r\nmessage\r\n*2\r\n:1\r\n$-1\r\n*-1\r\n");
  ASSERT_TRUE(r.is_array());
  ASSERT_EQ(r.elements().size(), 3u);
  EXPECT_EQ(r.elements()[0].as_string(), "message");
  ASSERT_TRUE(r.elements()[1].is_array());
  EXPECT_EQ(r.elements()[1].elements()[0].as_integer(), 1);
  EXPECT_TRUE(r.elements()[1].elements()[1].is_nil());
  EXPECT_TRUE(r.elements()[2].is_nil());  // a nil array, e.g. an aborted EXEC
  EXPECT_EQ(r, Reply::Array({Reply::String("message"),
                             Reply::Array({Reply::Integer(1), Reply::Nil()}), Reply::Nil()}));
  EXPECT_EQ(r.DebugString(), "[\"message\", [1, (nil)], (nil)]");
}

TEST(ReplyTest, AccessorsOfOtherTypesAreEmpty) {
  Reply i = Reply::Integer(7);
  EXPECT_EQ(i.as_string(), "");
  EXPECT_TRUE(i.elements().empty());
  EXPECT_EQ(Reply::String("x").as_integer(), 0);
  EXPECT_NE(Reply::String("x"), Reply::Status("x"));
}

TEST(ReplyTest, StatusFromReplyMapsErrorCodes) {
  EXPECT_TRUE(StatusFromReply(Reply::Status("OK")).ok());
  EXPECT_TRUE(StatusFromReply(Reply::Nil()).ok());
  struct Case {
    const char* text;
    absl::StatusCode code;
  };
  for (const Case& c : {
           Case{"WRONGTYPE Operation against a key holding the wrong kind of value",
                absl::StatusCode::kFailedPrecondition},
           Case{"NOSCRIPT No matching script", absl::StatusCode::kFailedPrecondition},
           Case{"LOADING Redis is loading the dataset in memory", absl::StatusCode::kUnavailable},
           Case{"READONLY You can't write against a read only replica",
                absl::StatusCode::kUnavailable},
           Case{"NOAUTH Authentication required.", absl::StatusCode::kPermissionDenied},
           Case{"WRONGPASS invalid username-password pair", absl::StatusCode::kPermissionDenied},
           Case{"OOM command not allowed", absl::StatusCode::kResourceExhausted},
           Case{"ERR unknown command 'FOO'", absl::StatusCode::kInternal},
           Case{"ERR", absl::StatusCode::kInternal},
           Case{"", absl::StatusCode::kInternal},
       }) {
    absl::Status s = StatusFromReply(Reply::Error(c.text));
    EXPECT_EQ(s.code(), c.code) << c.text;
    EXPECT_EQ(s.message(), std::string("redis: ") + c.text);
  }
}

}  // namespace
}  // namespace mailgrid::redis
