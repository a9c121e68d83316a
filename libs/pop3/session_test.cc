#include "libs/pop3/session.h"

#include "gtest/gtest.h"
#include "libs/imap/sasl.h"

namespace mailgrid::pop3 {
namespace {

TEST(StuffMessage, DotStuffsAndNormalizesLineEnds) {
  EXPECT_EQ(StuffMessage("a\n.b\r\n..c", std::nullopt), "a\r\n..b\r\n...c\r\n.\r\n");
  EXPECT_EQ(StuffMessage("", std::nullopt), ".\r\n");
}

TEST(StuffMessage, TopCutsAfterHeaderAndLines) {
  std::string m = "H: 1\r\nI: 2\r\n\r\nl1\r\nl2\r\nl3\r\n";
  EXPECT_EQ(StuffMessage(m, 0), "H: 1\r\nI: 2\r\n\r\n.\r\n");
  EXPECT_EQ(StuffMessage(m, 2), "H: 1\r\nI: 2\r\n\r\nl1\r\nl2\r\n.\r\n");
  EXPECT_EQ(StuffMessage(m, 99), "H: 1\r\nI: 2\r\n\r\nl1\r\nl2\r\nl3\r\n.\r\n");
}

TEST(Session, DecisionsOutOfTurnAreRefused) {
  Session s(SessionConfig{});
  EXPECT_FALSE(s.AcceptStartTls().ok());
  EXPECT_FALSE(s.AcceptAuth({}).ok());
  EXPECT_FALSE(s.Deliver("x").ok());
  EXPECT_FALSE(s.CommitDone(absl::OkStatus()).ok());
}

TEST(Session, NextWhilePendingSaysAwaiting) {
  SessionConfig c;
  c.tls_active = true;
  Session s(c);
  s.Start();
  s.Feed("USER u\r\nPASS p\r\nSTAT\r\n");
  EXPECT_TRUE(std::holds_alternative<event::Authenticate>(s.Next()));
  EXPECT_TRUE(std::holds_alternative<event::AwaitingDecision>(s.Next()));
  ASSERT_TRUE(s.AcceptAuth({{7, 5, "x7"}}).ok());
  EXPECT_TRUE(std::holds_alternative<event::NeedInput>(s.Next()));
  EXPECT_NE(s.TakeOutput().find("+OK 1 5\r\n"), std::string::npos);
}

// A burst of input (here 2,000 pipelined CAPAs, 12 KB) grows the buffer;
// once all of it is read the session gives the memory back.
TEST(Session, InputBufferIsReleasedOnceEverythingFedIsRead) {
  Session s(SessionConfig{});
  s.Start();
  std::string burst;
  for (int i = 0; i < 2000; ++i) burst += "CAPA\r\n";
  s.Feed(burst);
  EXPECT_GT(s.input_capacity(), Session::kIdleInputCapacity);
  EXPECT_TRUE(std::holds_alternative<event::NeedInput>(s.Next()));
  EXPECT_LE(s.input_capacity(), Session::kIdleInputCapacity);
  EXPECT_NE(s.TakeOutput().find("+OK"), std::string::npos);
  // Half a line stays buffered (and the buffer with it) until its end comes.
  s.Feed(std::string(500, 'x'));
  EXPECT_TRUE(std::holds_alternative<event::NeedInput>(s.Next()));
  EXPECT_EQ(s.buffered_input(), 500u);
}

TEST(Sasl, Decoders) {
  auto p = imap::DecodePlain(std::string("az\0user\0pw", 10));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->authzid, "az");
  EXPECT_EQ(p->authcid, "user");
  EXPECT_EQ(p->password, "pw");
  EXPECT_FALSE(imap::DecodePlain(std::string("\0\0pw", 4)).ok());
  EXPECT_FALSE(imap::DecodePlain("nonul").ok());

  auto x = imap::DecodeXoauth2("user=a@b\x01" "auth=Bearer t0k\x01\x01");
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x->authcid, "a@b");
  EXPECT_EQ(x->bearer_token, "t0k");
  EXPECT_FALSE(imap::DecodeXoauth2("user=a@b\x01\x01").ok());

  auto o = imap::DecodeOauthBearer("n,a=a=2Cb@c,\x01host=h\x01" "auth=Bearer T\x01\x01");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->authzid, "a,b@c");
  EXPECT_EQ(o->bearer_token, "T");
  EXPECT_FALSE(imap::DecodeOauthBearer("n,,\x01" "auth=Basic x\x01\x01").ok());
  EXPECT_FALSE(imap::DecodeOauthBearer("p,,\x01" "auth=Bearer x\x01\x01").ok());
}

}  // namespace
}  // namespace mailgrid::pop3
