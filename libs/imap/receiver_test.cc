#include "libs/imap/receiver.h"

#include <string>
#include <variant>

#include "gtest/gtest.h"

namespace mailgrid::imap {
namespace {

template <typename T>
T Expect(Receiver& r) {
  ReceiverResult res = r.Next();
  EXPECT_TRUE(std::holds_alternative<T>(res)) << "got alternative " << res.index();
  return std::holds_alternative<T>(res) ? std::get<T>(std::move(res)) : T{};
}

TEST(Receiver, FramesACommand) {
  Receiver r;
  r.Feed("a1 fetch 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.10>)\r\n");
  Request req = Expect<Request>(r);
  EXPECT_EQ(req.tag, "a1");
  EXPECT_EQ(req.command, "FETCH");
  EXPECT_EQ(DebugString(req.args), "1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From \"To\") ]<0.10>)");
  ASSERT_EQ(req.args.size(), 2u);
  ASSERT_EQ(req.args[1].items.size(), 4u);
  EXPECT_EQ(req.args[1].items[2].type, Token::Type::kList);
  Expect<NeedMoreData>(r);
}

TEST(Receiver, UidCommandsAreOneName) {
  Receiver r;
  r.Feed("x UID fetch 1 UID\r\n");
  EXPECT_EQ(Expect<Request>(r).command, "UID FETCH");
}

TEST(Receiver, SynchronizingLiteralAsksOnceEvenByteByByte) {
  const std::string input = "a LOGIN {5}\r\nalice {3}\r\npwd\r\n";
  Receiver r;
  int continuations = 0;
  Request got;
  for (char c : input) {
    r.Feed(std::string_view(&c, 1));
    for (;;) {
      ReceiverResult res = r.Next();
      if (std::holds_alternative<NeedMoreData>(res)) break;
      if (std::holds_alternative<NeedContinuation>(res)) ++continuations;
      if (auto* req = std::get_if<Request>(&res)) got = std::move(*req);
    }
  }
  EXPECT_EQ(continuations, 2);
  EXPECT_EQ(DebugString(got.args), "{5}\"alice\" {3}\"pwd\"");
}

TEST(Receiver, NonSynchronizingLiteralNeedsNoContinuation) {
  Receiver r;
  r.Feed("a LOGIN {5+}\r\nalice {0+}\r\n\r\n");
  Request req = Expect<Request>(r);
  EXPECT_EQ(DebugString(req.args), "{5}\"alice\" {0}\"\"");
}

TEST(Receiver, Literal8IsBinarySafe) {
  Receiver r;
  r.Feed(std::string("a APPEND x ~{3+}\r\na\0b\r\n", 23));
  Request req = Expect<Request>(r);
  ASSERT_EQ(req.args.size(), 2u);
  EXPECT_TRUE(req.args[1].literal8);
  EXPECT_EQ(req.args[1].value, std::string("a\0b", 3));
}

// A refused literal is never stored: stream 10 MB of it and watch the
// receiver's memory stay bounded, then check framing survived.
TEST(Receiver, RefusedLiteralIsSkippedWithoutBuffering) {
  Receiver r;  // default limits: 64 KiB for a non-APPEND literal
  const uint64_t size = 10u << 20;
  r.Feed("a LOGIN {" + std::to_string(size) + "+}\r\n");
  ProtocolError e = Expect<ProtocolError>(r);
  EXPECT_EQ(e.tag, "a");
  EXPECT_EQ(e.condition, Condition::kNo);
  EXPECT_EQ(e.code, "TOOBIG");
  EXPECT_FALSE(e.close_connection);
  const std::string chunk(64 * 1024, 'x');
  size_t peak = 0;
  for (uint64_t sent = 0; sent < size; sent += chunk.size()) {
    r.Feed(chunk);
    EXPECT_TRUE(std::holds_alternative<NeedMoreData>(r.Next()));
    peak = std::max(peak, r.buffered_bytes());
  }
  EXPECT_LE(peak, 2 * chunk.size());
  r.Feed(" more args\r\nb NOOP\r\n");
  EXPECT_EQ(Expect<Request>(r).tag, "b");
}

TEST(Receiver, SynchronizingLiteralTooBigIsRefusedBeforeContinuation) {
  ReceiverLimits limits;
  limits.max_argument_literal_size = 10;
  Receiver r(limits);
  r.Feed("a LOGIN {11}\r\nb NOOP\r\n");
  ProtocolError e = Expect<ProtocolError>(r);
  EXPECT_EQ(e.code, "TOOBIG");
  EXPECT_EQ(Expect<Request>(r).tag, "b");  // the client never sent the bytes
}

TEST(Receiver, OverlongLineIsRefusedWithoutBuffering) {
  Receiver r;
  r.Feed("a1 LOGIN ");
  const std::string chunk(16 * 1024, 'x');
  bool refused = false;
  size_t peak = 0;
  for (int i = 0; i < 640; ++i) {  // 10 MB without a line end
    r.Feed(chunk);
    for (;;) {
      ReceiverResult res = r.Next();
      if (std::holds_alternative<NeedMoreData>(res)) break;
      auto* e = std::get_if<ProtocolError>(&res);
      ASSERT_NE(e, nullptr);
      EXPECT_EQ(e->tag, "a1");
      EXPECT_EQ(e->code, "TOOBIG");
      refused = true;
    }
    peak = std::max(peak, r.buffered_bytes());
  }
  EXPECT_TRUE(refused);
  EXPECT_LE(peak, r.limits().max_line_length + 2 * chunk.size());
  r.Feed("\r\nb NOOP\r\n");
  EXPECT_EQ(Expect<Request>(r).tag, "b");
}

TEST(Receiver, IdleAndSaslModes) {
  Receiver r;
  r.Feed("a IDLE\r\nDONE\r\nb AUTHENTICATE PLAIN\r\nAGFsaWNlAHB3\r\n*\r\nc NOOP\r\n");
  EXPECT_EQ(Expect<Request>(r).command, "IDLE");
  r.ExpectIdleDone("a");
  Expect<IdleDone>(r);
  EXPECT_EQ(Expect<Request>(r).command, "AUTHENTICATE");
  r.ExpectSaslResponse("b");
  EXPECT_EQ(Expect<SaslResponse>(r).data, std::string("\0alice\0pw", 9));
  r.ExpectSaslResponse("b");
  EXPECT_TRUE(Expect<SaslResponse>(r).cancelled);
  EXPECT_EQ(Expect<Request>(r).tag, "c");
}

TEST(Receiver, IdleEndedByAnythingElse) {
  Receiver r;
  r.Feed("a IDLE\r\nb NOOP\r\nc NOOP\r\n");
  Expect<Request>(r);
  r.ExpectIdleDone("a");
  ProtocolError e = Expect<ProtocolError>(r);
  EXPECT_EQ(e.tag, "a");
  EXPECT_EQ(Expect<Request>(r).tag, "c");
}

TEST(Receiver, PendingInputAfterStartTls) {
  Receiver r;
  r.Feed("a STARTTLS\r\nb LOGIN injected x\r\n");
  EXPECT_EQ(Expect<Request>(r).command, "STARTTLS");
  EXPECT_GT(r.pending_input(), 0u);  // the server must drop it (or close)
  r.DiscardPendingInput();
  EXPECT_EQ(r.pending_input(), 0u);
  Expect<NeedMoreData>(r);
}

TEST(Receiver, LookupRefusesBeforeArguments) {
  auto lookup = +[](std::string_view name, SessionState) {
    CommandCheck c;
    if (name != "NOOP") c.verdict = CommandCheck::Verdict::kNotAllowed;
    return c;
  };
  Receiver r(ReceiverLimits{}, lookup);
  r.Feed("a APPEND INBOX {10}\r\nb NOOP\r\n");
  ProtocolError e = Expect<ProtocolError>(r);  // no NeedContinuation first
  EXPECT_EQ(e.tag, "a");
  EXPECT_EQ(Expect<Request>(r).tag, "b");
}

// A connection idles (IDLE, or between commands) for hours: the buffer a
// large APPEND grew must not stay with it (issue 10's idle memory; before
// the fix, ~130 KiB per connection after a 100 KB APPEND).
TEST(Receiver, IdleReceiverReleasesTheBufferOfALargeLiteral) {
  auto lookup = +[](std::string_view, SessionState) {
    CommandCheck c;
    c.large_literals = true;
    return c;
  };
  Receiver r(ReceiverLimits{}, lookup);
  const std::string message(100 * 1024, 'x');
  const std::string input = "a APPEND INBOX {" + std::to_string(message.size()) + "+}\r\n" +
                            message + "\r\n";
  Request got;
  for (size_t at = 0; at < input.size(); at += 16 * 1024) {  // as reads deliver it
    r.Feed(std::string_view(input).substr(at, 16 * 1024));
    for (;;) {
      ReceiverResult res = r.Next();
      if (std::holds_alternative<NeedMoreData>(res)) break;
      if (auto* req = std::get_if<Request>(&res)) got = std::move(*req);
    }
  }
  ASSERT_EQ(got.args.size(), 2u);
  EXPECT_EQ(got.args[1].value.size(), message.size());
  EXPECT_LE(r.input_capacity(), Receiver::kIdleInputCapacity);

  // Still frames what comes next, a literal split across reads included.
  r.Feed("b NOOP\r\nc APPEND INBOX {" + std::to_string(message.size()) + "+}\r\n" +
         message.substr(0, 60 * 1024));
  EXPECT_EQ(Expect<Request>(r).tag, "b");
  Expect<NeedMoreData>(r);
  r.Feed(message.substr(60 * 1024) + "\r\n");
  EXPECT_EQ(Expect<Request>(r).tag, "c");
  Expect<NeedMoreData>(r);
  EXPECT_LE(r.input_capacity(), Receiver::kIdleInputCapacity);
}

TEST(Receiver, ConsecutiveErrorsClose) {
  ReceiverLimits limits;
  limits.max_consecutive_errors = 2;
  Receiver r(limits);
  r.Feed("((\r\n))\r\na NOOP\r\n");
  EXPECT_FALSE(Expect<ProtocolError>(r).close_connection);
  EXPECT_TRUE(Expect<ProtocolError>(r).close_connection);
  EXPECT_TRUE(r.closed());
  Expect<NeedMoreData>(r);
  r.Feed("b NOOP\r\n");
  Expect<NeedMoreData>(r);
  EXPECT_EQ(r.buffered_bytes(), 0u);
}

TEST(Receiver, NoteRejectedCommandCountsToo) {
  ReceiverLimits limits;
  limits.max_consecutive_errors = 2;
  Receiver r(limits);
  EXPECT_FALSE(r.NoteRejectedCommand());
  EXPECT_TRUE(r.NoteRejectedCommand());
  EXPECT_TRUE(r.closed());
}

TEST(Receiver, TokensAndDepthAreBounded) {
  ReceiverLimits limits;
  limits.max_tokens = 3;
  limits.max_depth = 2;
  Receiver r(limits);
  r.Feed("a X 1 2 3 4\r\nb X ((()))\r\nc X (())\r\n");
  EXPECT_EQ(Expect<ProtocolError>(r).code, "LIMIT");
  EXPECT_EQ(Expect<ProtocolError>(r).code, "LIMIT");
  EXPECT_EQ(DebugString(Expect<Request>(r).args), "(())");
}

}  // namespace
}  // namespace mailgrid::imap
