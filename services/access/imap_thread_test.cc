#include "services/access/imap_thread.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace mailgrid::access {
namespace {

TEST(BaseSubjectTest, Rfc5256Section2_1) {
  struct Case {
    const char* in;
    const char* base;
    bool reply;
  } cases[] = {
      {"hello", "HELLO", false},
      {"Re: hello", "HELLO", true},
      {"RE: Re:   hello \t  world  ", "HELLO WORLD", true},
      {"Re: [list] Fwd: Hello (fwd)", "HELLO", true},
      {"[list] Hello", "HELLO", false},
      {"[list]", "[LIST]", false},  // the blob stays when nothing would be left
      {"[Fwd: Re: hi]", "HI", true},
      {"RE [x]: test", "TEST", true},
      {"Fw: a", "A", true},
      {"FWD:b", "B", true},
      {"Refactoring", "REFACTORING", false},
      {"re:", "", true},
      {"[a][b] re: [c] x (fwd) (FWD) ", "X", true},
      {"=?UTF-8?B?UmU6IOS9oOWlvQ==?=", "你好", true},
      {"Re: =?UTF-8?Q?caf=C3=A9?=", "CAFé", true},
      {"hello\r\n world", "HELLO WORLD", false},
  };
  for (const Case& c : cases) {
    BaseSubject b = ExtractBaseSubject(c.in);
    EXPECT_EQ(b.text, c.base) << c.in;
    EXPECT_EQ(b.reply_or_fwd, c.reply) << c.in;
  }
}

TEST(SentDateTest, ParsesRfc5322Dates) {
  int64_t t = 0;
  ASSERT_TRUE(ParseSentDate("Tue, 1 Jul 2003 10:52:37 +0200", &t));
  EXPECT_EQ(t, 1057049557);  // 2003-07-01 08:52:37 UTC
  ASSERT_TRUE(ParseSentDate("1 Jul 03 08:52:37 GMT (comment)", &t));
  EXPECT_EQ(t, 1057049557);
  ASSERT_TRUE(ParseSentDate("Tue,  1 Jul 2003 03:52:37 EST", &t));
  EXPECT_EQ(t, 1057049557);
  ASSERT_TRUE(ParseSentDate("1 Jul 2003 08:52 +0000", &t));
  EXPECT_EQ(t, 1057049520);
  EXPECT_FALSE(ParseSentDate("", &t));
  EXPECT_FALSE(ParseSentDate("garbage", &t));
  EXPECT_FALSE(ParseSentDate("31 Feb 2003 10:00 +0000", &t));
  EXPECT_FALSE(ParseSentDate("1 Jul 2003 25:00 +0000", &t));
}

ThreadMessage M(uint32_t id, int64_t sent, std::string subject, std::string message_id = "",
                std::string references = "", std::string in_reply_to = "") {
  ThreadMessage m;
  m.id = id;
  m.order = id;
  m.sent = sent;
  m.subject = std::move(subject);
  m.message_id = std::move(message_id);
  m.references = std::move(references);
  m.in_reply_to = std::move(in_reply_to);
  return m;
}

TEST(ThreadTest, OrderedSubject) {
  std::vector<ThreadMessage> m = {
      M(1, 100, "hello"),     M(2, 50, "other"),  M(3, 300, "Re: hello"),
      M(4, 200, "Re: hello"), M(5, 400, "third"), M(6, 60, "Re: other"),
  };
  // Threads by the date of their first message; a single child is written
  // flat, several as siblings.
  EXPECT_EQ(ThreadOrderedSubject(m), "(2 6)(1 (4)(3))(5)");
  EXPECT_EQ(ThreadOrderedSubject({}), "");
  // Equal dates: mailbox order decides.
  EXPECT_EQ(ThreadOrderedSubject({M(2, 10, "a"), M(1, 10, "Re: a")}), "(1 2)");
}

TEST(ThreadTest, References) {
  std::vector<ThreadMessage> m = {
      M(1, 10, "hello", "<a@x>"),
      M(2, 20, "Re: hello", "<b@x>", "<a@x>"),
      M(3, 30, "Re: hello", "<c@x>", "<a@x> <b@x>"),
      M(4, 40, "Re: hello", "<d@x>", "", "<a@x>"),  // In-Reply-To only
      M(5, 50, "other", "<e@x>"),
      // Its parent is not here: the dummy goes, it becomes a root.
      M(6, 5, "Re: other thing", "<f@x>", "<missing@x>"),
      // No references, a reply by subject: under the thread of 5.
      M(7, 60, "Re: other", "<g@x>"),
      // Two non-replies with one subject: siblings under a dummy.
      M(8, 70, "lonely", "<h@x>"),
      M(9, 80, "lonely", "<i@x>"),
  };
  EXPECT_EQ(ThreadReferences(m), "(6)(1 (2 3)(4))(5 7)((8)(9))");
}

TEST(ThreadTest, ReferencesSurvivesHostileInput) {
  // Loops, self references, duplicate and missing Message-IDs.
  std::vector<ThreadMessage> m = {
      M(1, 10, "a", "<a@x>", "<b@x>"),    M(2, 20, "b", "<b@x>", "<a@x>"),
      M(3, 30, "c", "<c@x>", "<c@x>"),    M(4, 40, "d", "<a@x>", "<c@x>"),  // duplicate id of 1
      M(5, 50, "e", "", "<<<>>> junk <"), M(6, 60, "f", "<f@x>", "<p@x> <q@x> <p@x>"),
  };
  std::string t = ThreadReferences(m);
  // Every message appears exactly once.
  std::string digits;
  for (char c : t) {
    if (c >= '0' && c <= '9') digits.push_back(c);
  }
  std::sort(digits.begin(), digits.end());
  EXPECT_EQ(digits, "123456") << t;
}

TEST(ThreadTest, DeepChainDoesNotRecurse) {
  std::vector<ThreadMessage> m;
  const int n = 100000;
  for (int i = 1; i <= n; ++i) {
    m.push_back(M(i, i, "Re: deep", absl::StrCat("<", i, "@x>"),
                  i > 1 ? absl::StrCat("<", i - 1, "@x>") : ""));
  }
  std::string t = ThreadReferences(m);
  EXPECT_EQ(t.substr(0, 7), "(1 2 3 ");
  EXPECT_EQ(t.back(), ')');
  // A wide-and-deep comb: every message has two children.
  m.clear();
  for (int i = 1; i <= n; ++i) {
    int parent = i / 2;
    m.push_back(M(i, i, "x", absl::StrCat("<", i, "@x>"),
                  parent > 0 ? absl::StrCat("<", parent, "@x>") : ""));
  }
  t = ThreadReferences(m);
  EXPECT_EQ(t.substr(0, 4), "(1 (");
}

}  // namespace
}  // namespace mailgrid::access
