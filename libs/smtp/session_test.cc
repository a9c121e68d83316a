// API-level tests of ServerSession: the event contents and the decision
// contract. The protocol dialogue itself is covered by the golden
// transcripts (transcript_test.cc).
#include "libs/smtp/session.h"

#include <string>

#include "gtest/gtest.h"

namespace mailgrid::smtp {
namespace {

class SessionTest : public testing::Test {
 protected:
  void Start(SessionConfig config = SessionConfig::Mx("mx.test")) {
    session_ = std::make_unique<ServerSession>(std::move(config));
    Event e = session_->Next();
    ASSERT_TRUE(std::holds_alternative<event::Greeting>(e));
    ASSERT_TRUE(session_->Accept().ok());
    EXPECT_EQ(session_->TakeOutput(), "220 mx.test ESMTP\r\n");
  }
  // Feeds `bytes` and returns the next event.
  Event Send(std::string_view bytes) {
    session_->Feed(bytes);
    return session_->Next();
  }
  void AcceptAll() {
    for (Event e = session_->Next(); NeedsDecision(e); e = session_->Next()) {
      ASSERT_TRUE(session_->Accept().ok()) << EventName(e);
    }
  }
  std::unique_ptr<ServerSession> session_;
};

TEST_F(SessionTest, DecisionContract) {
  session_ = std::make_unique<ServerSession>(SessionConfig::Mx("mx.test"));
  EXPECT_EQ(session_->Accept().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(std::holds_alternative<event::Greeting>(session_->Next()));
  EXPECT_TRUE(std::holds_alternative<event::AwaitingDecision>(session_->Next()));
  // Wrong kinds of reply change nothing.
  EXPECT_EQ(session_->Accept(Reply::Make(250, "2.0.0", "x")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(session_->Reject(Reply::Make(250, "2.0.0", "x")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(session_->Challenge("x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(session_->TakeOutput(), "");
  ASSERT_TRUE(session_->Accept(Reply::Make(220, "", "mx.test ready")).ok());
  EXPECT_EQ(session_->TakeOutput(), "220 mx.test ready\r\n");
  EXPECT_TRUE(std::holds_alternative<event::NeedInput>(session_->Next()));
}

TEST_F(SessionTest, EventsCarryParsedCommands) {
  Start();
  Event e = Send("EHLO client.test\r\n");
  auto* helo = std::get_if<event::Helo>(&e);
  ASSERT_NE(helo, nullptr);
  EXPECT_TRUE(helo->ehlo);
  EXPECT_EQ(helo->domain, "client.test");
  EXPECT_TRUE(helo->domain_valid);
  ASSERT_TRUE(session_->Accept().ok());

  e = Send("MAIL FROM:<> SIZE=10 BODY=8BITMIME\r\n");
  auto* mail = std::get_if<event::MailFrom>(&e);
  ASSERT_NE(mail, nullptr);
  EXPECT_TRUE(mail->reverse_path.null);
  EXPECT_EQ(mail->params.size, 10u);
  ASSERT_TRUE(session_->Accept().ok());

  e = Send("RCPT TO:<@relay.test:bob@local.test>\r\n");
  auto* rcpt = std::get_if<event::RcptTo>(&e);
  ASSERT_NE(rcpt, nullptr);
  EXPECT_EQ(rcpt->forward_path.Mailbox(), "bob@local.test");
  EXPECT_EQ(rcpt->forward_path.source_route, std::vector<std::string>{"relay.test"});
  ASSERT_TRUE(session_->Accept().ok());

  e = Send("RCPT TO:<carol@local.test>\r\n");
  ASSERT_TRUE(std::holds_alternative<event::RcptTo>(e));
  ASSERT_TRUE(session_->Reject(Reply::Make(550, "5.1.1", "unknown")).ok());

  e = Send("DATA\r\n");
  ASSERT_TRUE(std::holds_alternative<event::DataBegin>(e));
  ASSERT_TRUE(session_->Accept().ok());
  e = Send("hi\r\n.\r\n");
  auto* msg = std::get_if<event::MessageComplete>(&e);
  ASSERT_NE(msg, nullptr);
  EXPECT_EQ(msg->message, "hi\r\n");
  EXPECT_FALSE(msg->bdat);
  EXPECT_EQ(msg->envelope.helo, "client.test");
  EXPECT_TRUE(msg->envelope.esmtp);
  EXPECT_TRUE(msg->envelope.reverse_path.null);
  ASSERT_EQ(msg->envelope.recipients.size(), 1u);  // carol was rejected
  EXPECT_EQ(msg->envelope.recipients[0].path.local_part, "bob");
  ASSERT_TRUE(session_->Accept(Reply::Make(250, "2.0.0", "Ok: queued as 1")).ok());
  EXPECT_EQ(session_->TakeOutput(),
            "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n250-STARTTLS\r\n"
            "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"
            "250 CHUNKING\r\n"
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 unknown\r\n"
            "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as 1\r\n");
  EXPECT_EQ(session_->stats().messages, 1u);
}

TEST_F(SessionTest, StartTlsDropsBufferedInputAndState) {
  Start();
  session_->Feed("EHLO c.test\r\n");
  AcceptAll();
  session_->TakeOutput();
  Event e = Send("STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n");
  ASSERT_TRUE(std::holds_alternative<event::StartTls>(e));
  session_->Feed("RCPT TO:<more@x.test>\r\n");  // arrives before the Accept
  ASSERT_TRUE(session_->Accept().ok());
  EXPECT_EQ(session_->TakeOutput(), "220 2.0.0 Ready to start TLS\r\n");
  EXPECT_TRUE(session_->tls_active());
  EXPECT_EQ(session_->buffered_input(), 0u);
  EXPECT_EQ(session_->stats().discarded_after_starttls,
            std::string("MAIL FROM:<evil@x.test>\r\nRCPT TO:<more@x.test>\r\n").size());
  EXPECT_TRUE(std::holds_alternative<event::NeedInput>(session_->Next()));
  // HELO state is gone.
  Send("MAIL FROM:<a@b.test>\r\n");
  EXPECT_EQ(session_->TakeOutput(), "503 5.5.1 Error: send HELO/EHLO first\r\n");
}

TEST_F(SessionTest, AuthExchange) {
  SessionConfig c = SessionConfig::Submission("mx.test");
  c.tls_active = true;
  Start(c);
  session_->Feed("EHLO c.test\r\n");
  AcceptAll();
  session_->TakeOutput();
  Event e = Send("AUTH LOGIN\r\n");
  auto* auth = std::get_if<event::Auth>(&e);
  ASSERT_NE(auth, nullptr);
  EXPECT_EQ(auth->mechanism, "LOGIN");
  EXPECT_FALSE(auth->initial_response.has_value());
  ASSERT_TRUE(session_->Challenge("Username:").ok());
  EXPECT_EQ(session_->TakeOutput(), "334 VXNlcm5hbWU6\r\n");
  e = Send("dXNlcg==\r\n");
  auto* resp = std::get_if<event::AuthResponse>(&e);
  ASSERT_NE(resp, nullptr);
  EXPECT_EQ(resp->response, "user");
  EXPECT_EQ(session_->Accept(Reply::Make(250, "2.0.0", "x")).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(session_->Accept().ok());
  EXPECT_TRUE(session_->authenticated());
  EXPECT_EQ(session_->TakeOutput(), "235 2.7.0 Authentication successful\r\n");
  e = Send("MAIL FROM:<user@x.test>\r\n");
  EXPECT_TRUE(std::holds_alternative<event::MailFrom>(e));
}

TEST_F(SessionTest, PipeliningStatsAndEarlyTalker) {
  session_ = std::make_unique<ServerSession>(SessionConfig::Mx("mx.test"));
  session_->Feed("EHLO c.test\r\n");
  EXPECT_TRUE(session_->stats().early_talker);
  ASSERT_TRUE(std::holds_alternative<event::Greeting>(session_->Next()));
  ASSERT_TRUE(session_->Accept().ok());
  AcceptAll();
  EXPECT_FALSE(session_->stats().pipelining_violation);
  Send("NOOP\r\nNOOP\r\n");
  EXPECT_TRUE(session_->stats().pipelining_violation);
}

// The RCPTs buffered behind the one being decided, for a driver that looks
// them up in one batch; each is still its own event.
TEST_F(SessionTest, PipelinedRcptsListsTheBufferedRcptsOnly) {
  Start();
  Send("EHLO client.test\r\n");
  ASSERT_TRUE(session_->Accept().ok());
  EXPECT_TRUE(session_->PipelinedRcpts(10).empty());  // no transaction
  Event e = Send(
      "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@local.test>\r\nRCPT TO:<c@local.test>\r\n"
      "rcpt to:<d@local.test>\r\nRCPT TO:<bad\r\nRCPT TO:<e@local.test>\r\nDATA\r\n");
  ASSERT_TRUE(std::holds_alternative<event::MailFrom>(e));
  ASSERT_TRUE(session_->Accept().ok());
  e = session_->Next();
  ASSERT_TRUE(std::holds_alternative<event::RcptTo>(e));
  std::vector<Path> ahead = session_->PipelinedRcpts(10);
  ASSERT_EQ(ahead.size(), 2u);  // the malformed one ends the list
  EXPECT_EQ(ahead[0].Mailbox(), "c@local.test");
  EXPECT_EQ(ahead[1].Mailbox(), "d@local.test");
  EXPECT_EQ(session_->PipelinedRcpts(1).size(), 1u);
  // Looking ahead consumed nothing: every RCPT is still its own event.
  ASSERT_TRUE(session_->Accept().ok());
  e = session_->Next();
  auto* c = std::get_if<event::RcptTo>(&e);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->forward_path.Mailbox(), "c@local.test");
  ASSERT_TRUE(session_->Accept().ok());
  e = session_->Next();
  ASSERT_TRUE(std::holds_alternative<event::RcptTo>(e));
  EXPECT_TRUE(session_->PipelinedRcpts(10).empty());  // next comes the malformed line
  // An incomplete line is not listed either.
  session_->Feed("RCPT TO:<f@local.test>");
  EXPECT_TRUE(session_->PipelinedRcpts(10).empty());
}

TEST_F(SessionTest, ClosedSessionIgnoresInput) {
  Start();
  session_->Shutdown();
  EXPECT_TRUE(session_->closed());
  EXPECT_EQ(session_->TakeOutput(),
            "421 4.3.2 mx.test Service shutting down, closing transmission channel\r\n");
  session_->Feed("EHLO x\r\n");
  EXPECT_TRUE(std::holds_alternative<event::Closed>(session_->Next()));
  EXPECT_EQ(session_->TakeOutput(), "");
  EXPECT_EQ(session_->Accept().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SessionTest, RejectWith421Closes) {
  Start();
  Event e = Send("EHLO c.test\r\n");
  ASSERT_TRUE(std::holds_alternative<event::Helo>(e));
  ASSERT_TRUE(session_->Reject(Reply::Make(421, "4.3.0", "mx.test try later")).ok());
  EXPECT_TRUE(session_->closed());
}

TEST(SessionConfigTest, Validate) {
  EXPECT_TRUE(ValidateConfig(SessionConfig::Mx("mx.example.test")).ok());
  EXPECT_TRUE(ValidateConfig(SessionConfig::Submission("smtp.example.test")).ok());
  SessionConfig bad = SessionConfig::Mx("mx\r\n250 forged");
  EXPECT_FALSE(ValidateConfig(bad).ok());
  SessionConfig short_lines = SessionConfig::Mx("mx");
  short_lines.max_command_line_length = 100;
  EXPECT_FALSE(ValidateConfig(short_lines).ok());
  SessionConfig mech = SessionConfig::Submission("mx");
  mech.auth_mechanisms = {"plain"};
  EXPECT_FALSE(ValidateConfig(mech).ok());
  SessionConfig bin = SessionConfig::Mx("mx");
  bin.binarymime = true;
  bin.chunking = false;
  EXPECT_FALSE(ValidateConfig(bin).ok());
}

TEST(EventTest, NamesAndDecisions) {
  EXPECT_EQ(EventName(Event{event::RcptTo{}}), "RcptTo");
  EXPECT_TRUE(NeedsDecision(Event{event::RcptTo{}}));
  EXPECT_FALSE(NeedsDecision(Event{event::Rset{}}));
  EXPECT_FALSE(NeedsDecision(Event{event::NeedInput{}}));
  EXPECT_EQ(EventName(Event{event::Quit{}}), "Quit");
}

// An idle connection does not keep the buffer its last large message grew.
TEST_F(SessionTest, IdleSessionReleasesTheInputBufferOfALargeMessage) {
  Start();
  ASSERT_TRUE(std::holds_alternative<event::Helo>(Send("EHLO client.test\r\n")));
  ASSERT_TRUE(session_->Accept().ok());
  ASSERT_TRUE(std::holds_alternative<event::MailFrom>(Send("MAIL FROM:<a@x.test>\r\n")));
  ASSERT_TRUE(session_->Accept().ok());
  ASSERT_TRUE(std::holds_alternative<event::RcptTo>(Send("RCPT TO:<b@local.test>\r\n")));
  ASSERT_TRUE(session_->Accept().ok());
  ASSERT_TRUE(std::holds_alternative<event::DataBegin>(Send("DATA\r\n")));
  ASSERT_TRUE(session_->Accept().ok());
  std::string body;
  for (int i = 0; i < 1600; ++i) body += std::string(62, 'x') + "\r\n";  // 102,400 octets
  // Fed as a client's large writes arrive: the whole body and the end at once.
  session_->Feed(body + ".\r\n");
  EXPECT_GT(session_->input_capacity(), 65536u);
  Event e = session_->Next();
  auto* msg = std::get_if<event::MessageComplete>(&e);
  ASSERT_NE(msg, nullptr);
  EXPECT_EQ(msg->message, body);
  ASSERT_TRUE(session_->Accept(Reply::Make(250, "2.0.0", "Ok")).ok());
  EXPECT_TRUE(std::holds_alternative<event::NeedInput>(session_->Next()));
  EXPECT_LE(session_->input_capacity(), ServerSession::kIdleInputCapacity);
  // The session goes on as before.
  ASSERT_TRUE(std::holds_alternative<event::MailFrom>(Send("MAIL FROM:<c@x.test>\r\n")));
  ASSERT_TRUE(session_->Accept().ok());
  EXPECT_EQ(session_->buffered_input(), 0u);
}

}  // namespace
}  // namespace mailgrid::smtp
