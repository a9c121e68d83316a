#include "libs/smtp/reply.h"

#include <string>

#include "gtest/gtest.h"

namespace mailgrid::smtp {
namespace {

TEST(ReplyTest, SerializeOneLine) {
  EXPECT_EQ(Reply::Make(250, "2.1.0", "Ok").Serialize(), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(Reply::Make(250, "2.1.0", "Ok").Serialize(false), "250 Ok\r\n");
  EXPECT_EQ(Reply::Make(354, "2.0.0", "go").Serialize(), "354 go\r\n");  // no status on 3xx
  EXPECT_EQ(Reply::Make(250, "", "").Serialize(), "250\r\n");
  // A status whose class disagrees with the code is dropped, not sent.
  EXPECT_EQ(Reply::Make(550, "2.0.0", "x").Serialize(), "550 x\r\n");
}

TEST(ReplyTest, SerializeMultiLine) {
  Reply r{550, "5.7.1", {"first", "second", "third"}};
  EXPECT_EQ(r.Serialize(), "550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n");
}

TEST(ReplyTest, SerializeNeverInjectsLines) {
  Reply r = Reply::Make(550, "5.1.1", "bad\r\n250 2.0.0 forged\x00z");
  std::string wire = r.Serialize();
  EXPECT_EQ(wire.find('\n'), wire.size() - 1);
  EXPECT_EQ(wire.find('\r'), wire.size() - 2);
  EXPECT_EQ(wire, "550 5.1.1 bad??250 2.0.0 forged\r\n");  // NUL ends the C string
  Reply odd{999, "", {"x"}};
  EXPECT_EQ(odd.Serialize().substr(0, 4), "451 ");
}

TEST(ReplyTest, SerializeCapsLineLength) {
  std::string wire = Reply::Make(250, "2.0.0", std::string(2000, 'x')).Serialize();
  EXPECT_EQ(wire.size(), kMaxReplyLineLength);
}

TEST(ReplyTest, EnhancedCodeSyntax) {
  EXPECT_TRUE(IsValidEnhancedCode("2.0.0"));
  EXPECT_TRUE(IsValidEnhancedCode("5.7.11"));
  EXPECT_TRUE(IsValidEnhancedCode("4.999.999"));
  EXPECT_FALSE(IsValidEnhancedCode("3.0.0"));
  EXPECT_FALSE(IsValidEnhancedCode("5.01.1"));
  EXPECT_FALSE(IsValidEnhancedCode("5.1"));
  EXPECT_FALSE(IsValidEnhancedCode("5.1.1000"));
  EXPECT_FALSE(IsValidEnhancedCode("5.1.1 "));
  EXPECT_FALSE(IsValidEnhancedCode("x.1.1"));
}

std::vector<Reply> ParseAll(std::string_view bytes, absl::Status* error = nullptr) {
  ReplyParser p;
  p.Feed(bytes);
  std::vector<Reply> out;
  while (true) {
    absl::StatusOr<std::optional<Reply>> r = p.Next();
    if (!r.ok()) {
      if (error) *error = r.status();
      return out;
    }
    if (!r->has_value()) return out;
    out.push_back(**r);
  }
}

TEST(ReplyParserTest, MultiLineEhlo) {
  std::vector<Reply> r =
      ParseAll("250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 CHUNKING\r\n");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].code, 250);
  EXPECT_EQ(r[0].enhanced, "");
  EXPECT_EQ(r[0].lines,
            (std::vector<std::string>{"mx.example.test", "PIPELINING", "SIZE 1000", "CHUNKING"}));
}

TEST(ReplyParserTest, EnhancedCodesSplitOff) {
  std::vector<Reply> r = ParseAll("550-5.1.1 no such\r\n550 5.1.1 user\r\n221 2.0.0 Bye\r\n");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].code, 550);
  EXPECT_EQ(r[0].enhanced, "5.1.1");
  EXPECT_EQ(r[0].lines, (std::vector<std::string>{"no such", "user"}));
  EXPECT_EQ(r[1].enhanced, "2.0.0");
  // Class mismatch: the "status" stays text.
  std::vector<Reply> m = ParseAll("550 2.0.0 odd\r\n");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].enhanced, "");
  EXPECT_EQ(m[0].lines[0], "2.0.0 odd");
}

TEST(ReplyParserTest, IncrementalAndBareCode) {
  ReplyParser p;
  std::string wire = "220 mx ESMTP\r\n250\r\n";
  std::vector<Reply> got;
  for (char c : wire) {
    p.Feed(std::string_view(&c, 1));
    absl::StatusOr<std::optional<Reply>> r = p.Next();
    ASSERT_TRUE(r.ok());
    if (r->has_value()) got.push_back(**r);
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].lines, std::vector<std::string>{"mx ESMTP"});
  EXPECT_EQ(got[1].code, 250);
  EXPECT_EQ(got[1].lines, std::vector<std::string>{""});
  EXPECT_EQ(p.buffered(), 0u);
}

TEST(ReplyParserTest, RoundTripsSerialize) {
  Reply r{452, "4.5.3", {"too many", "recipients"}};
  std::vector<Reply> back = ParseAll(r.Serialize());
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0], r);
}

TEST(ReplyParserTest, BadReplies) {
  for (std::string_view bad : std::vector<std::string_view>{
           "25 short\r\n", "abc text\r\n", "650 bad class\r\n", "160 bad class\r\n",
           "260 bad second digit\r\n", "250x no separator\r\n", "250-a\r\n251 b\r\n",
           "250 ctl\x01\r\n", "250 bare\rcr\r\n"}) {
    absl::Status error;
    ParseAll(bad, &error);
    EXPECT_FALSE(error.ok()) << bad;
  }
}

TEST(ReplyParserTest, ErrorIsSticky) {
  ReplyParser p;
  p.Feed("xyz\r\n250 ok\r\n");
  EXPECT_FALSE(p.Next().ok());
  EXPECT_FALSE(p.Next().ok());
}

TEST(ReplyParserTest, Limits) {
  ReplyParser p(ReplyParser::Limits{.max_line_length = 16, .max_lines = 3});
  p.Feed(std::string(17, '2'));
  EXPECT_FALSE(p.Next().ok());
  ReplyParser q(ReplyParser::Limits{.max_line_length = 100, .max_lines = 3});
  q.Feed("250-a\r\n250-b\r\n250-c\r\n250 d\r\n");
  EXPECT_FALSE(q.Next().ok());
}

TEST(ReplyParserTest, AcceptsBareLfFromServers) {
  std::vector<Reply> r = ParseAll("250-a\n250 b\n");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].lines.size(), 2u);
}

}  // namespace
}  // namespace mailgrid::smtp
