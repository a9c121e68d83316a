// ShouldSendVacation (RFC 5230 §4.5-4.6, RFC 3834 §2), the memory key and
// the reply.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "libs/sieve/sieve.h"

namespace mailgrid::sieve {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

MessageContext Message(std::string extra_headers = "",
                       std::string to = "To: Bob <bob@example.com>\r\n",
                       std::string sender = "alice@example.org") {
  std::string raw = "From: Alice <alice@example.org>\r\n" + to +
                    "Subject: =?UTF-8?Q?Caf=C3=A9?=\r\n"
                    "Message-ID: <orig@example.org>\r\n" +
                    extra_headers + "\r\nHi Bob\r\n";
  return MessageContextFromRaw(raw, sender, "bob@example.com");
}

const std::vector<std::string> kOwn = {"bob@example.com"};

std::string Why(const MessageContext& message, const Vacation& vacation = {},
                const std::vector<std::string>& own = kOwn) {
  std::string why;
  return ShouldSendVacation(message, vacation, own, &why) ? "send" : why;
}

TEST(VacationTest, OrdinaryMailGetsAReply) {
  EXPECT_EQ(Why(Message()), "send");
  EXPECT_EQ(Why(Message("Auto-Submitted: no\r\n")), "send");
  EXPECT_EQ(Why(Message("", "To: x@example.net\r\nCc: BOB+work@Example.com\r\n")), "send");
  EXPECT_EQ(Why(Message("", "Resent-To: bob@example.com\r\n")), "send");
}

TEST(VacationTest, NeverToNullSenderOrAutomaticMail) {
  EXPECT_EQ(Why(Message("", "To: bob@example.com\r\n", "")), "null sender");
  EXPECT_EQ(Why(Message("", "To: bob@example.com\r\n", "<>")), "null sender");
  EXPECT_EQ(Why(Message("Auto-Submitted: auto-replied\r\n")), "Auto-Submitted");
  EXPECT_EQ(Why(Message("Auto-Submitted: Auto-Generated; owner-email=x@y\r\n")), "Auto-Submitted");
}

TEST(VacationTest, NeverToLists) {
  EXPECT_EQ(Why(Message("List-Id: <dev.example.org>\r\n")), "mailing list (List-*)");
  EXPECT_EQ(Why(Message("List-Unsubscribe: <mailto:u@x>\r\n")), "mailing list (List-*)");
  EXPECT_EQ(Why(Message("Precedence: bulk\r\n")), "Precedence: bulk");
  EXPECT_EQ(Why(Message("Precedence: List\r\n")), "Precedence: list");
  EXPECT_EQ(Why(Message("Precedence: junk\r\n")), "Precedence: junk");
  EXPECT_EQ(Why(Message("Precedence: first-class\r\n")), "send");
}

TEST(VacationTest, NeverToDaemonsAndListAddresses) {
  for (std::string sender :
       {"MAILER-DAEMON@example.org", "owner-dev@example.org", "dev-request@example.org",
        "listserv@example.org", "Majordomo@example.org"}) {
    EXPECT_EQ(Why(Message("", "To: bob@example.com\r\n", sender)),
              "sender is a mailing list or mailer daemon")
        << sender;
  }
  EXPECT_EQ(Why(Message("", "To: bob@example.com\r\n", "requester@example.org")), "send");
}

TEST(VacationTest, OnlyWhenTheUserIsARecipient) {
  EXPECT_EQ(Why(Message("", "To: team@example.com\r\n")), "the user is not in To/Cc");
  // :addresses names the other addresses of the user.
  Vacation v;
  v.addresses = {"Team <team@example.com>"};
  EXPECT_EQ(Why(Message("", "To: team@example.com\r\n"), v), "send");
  EXPECT_EQ(
      Why(Message("", "To: team@example.com\r\n"), {}, {"bob@example.com", "team@example.com"}),
      "send");
  // Never to oneself.
  EXPECT_EQ(Why(Message("", "To: bob@example.com\r\n", "Bob+x@example.com")), "sender is the user");
}

TEST(VacationTest, MemoryKeyDependsOnHandleAndSender) {
  Vacation a;
  a.handle = "h1";
  Vacation b;
  b.handle = "h2";
  EXPECT_EQ(VacationMemoryKey(a, "Alice@Example.org"), VacationMemoryKey(a, "alice@example.org"));
  EXPECT_NE(VacationMemoryKey(a, "alice@example.org"), VacationMemoryKey(b, "alice@example.org"));
  EXPECT_NE(VacationMemoryKey(a, "alice@example.org"), VacationMemoryKey(a, "eve@example.org"));
  EXPECT_EQ(VacationMemoryKey(a, "x").size(), 16u);
}

TEST(VacationTest, ReplyFollowsRfc3834) {
  Vacation v;
  v.reason = "I am away.\nBack Monday.";
  std::string reply =
      BuildVacationReply(Message("References: <r0@example.org>\r\n"), v, "bob@example.com",
                         "Fri, 27 Nov 2026 08:00:00 +0000", "<reply1@mail.example.com>");
  EXPECT_THAT(reply, HasSubstr("From: bob@example.com\r\n"));
  EXPECT_THAT(reply, HasSubstr("To: alice@example.org\r\n"));
  EXPECT_THAT(reply, HasSubstr("Subject: Auto: =?UTF-8?B?"));
  EXPECT_THAT(reply, HasSubstr("In-Reply-To: <orig@example.org>\r\n"));
  EXPECT_THAT(reply, HasSubstr("References: <r0@example.org> <orig@example.org>\r\n"));
  EXPECT_THAT(reply, HasSubstr("Auto-Submitted: auto-replied"));
  EXPECT_THAT(reply, HasSubstr("Message-ID: <reply1@mail.example.com>\r\n"));
  EXPECT_THAT(reply, HasSubstr("\r\n\r\nI am away.\r\nBack Monday.\r\n"));

  v.subject = "Out\r\nBcc: evil@example.net";
  v.from = "Bob B <bob@example.com>";
  reply = BuildVacationReply(Message(), v, "bob@example.com", "d", "<id>");
  EXPECT_THAT(reply, Not(HasSubstr("\r\nBcc:")));
  EXPECT_THAT(reply, HasSubstr("From: Bob B <bob@example.com>\r\n"));
}

TEST(VacationTest, MimeReasonIsTheEntity) {
  Vacation v;
  v.mime = true;
  v.reason = "Content-Type: text/html\r\n\r\n<b>away</b>\r\n";
  std::string reply = BuildVacationReply(Message(), v, "bob@example.com", "d", "<id>");
  EXPECT_THAT(reply, HasSubstr("MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<b>away</b>"));
  EXPECT_THAT(reply, Not(HasSubstr("text/plain")));
}

}  // namespace
}  // namespace mailgrid::sieve
