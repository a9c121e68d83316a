// Evaluate: tests, match types, comparators, actions, implicit keep and
// conflicts (RFC 5228 §2.10), flags (RFC 5232), RFC examples.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "libs/sieve/sieve.h"

namespace mailgrid::sieve {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kMessage[] =
    "Return-Path: <alice+lists@Example.ORG>\r\n"
    "From: Alice Example <alice+lists@Example.ORG>\r\n"
    "To: Bob <bob@example.com>, carol@example.net\r\n"
    "Cc: undisclosed-recipients:;\r\n"
    "Subject: =?UTF-8?Q?Caf=C3=A9_menu?= for *Friday*\r\n"
    "X-Spam-Score: 7.5\r\n"
    "Message-ID: <m1@example.org>\r\n"
    "Content-Type: multipart/alternative; boundary=b\r\n"
    "\r\n"
    "--b\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Lunch is at noon, caf=C3=A9 downstairs.\r\n"
    "--b\r\n"
    "Content-Type: text/html\r\n"
    "\r\n"
    "<p>Lunch is at noon</p>\r\n"
    "--b--\r\n";

MessageContext Message() {
  return MessageContextFromRaw(kMessage, "alice+lists@Example.ORG", "bob+food@example.com");
}

Actions RunScript(std::string_view source, const MessageContext& message = Message()) {
  absl::StatusOr<Script> script = Compile(source);
  EXPECT_TRUE(script.ok()) << script.status();
  if (!script.ok()) return {};
  return Evaluate(*script, message);
}

// Whether the script's "if" fired: it files into "yes" when the test holds.
bool Holds(std::string_view requires_and_test) {
  std::string source = "require [\"fileinto\", \"envelope\", \"body\", \"subaddress\"];\n";
  source += "if ";
  source += requires_and_test;
  source += " { fileinto \"yes\"; }";
  Actions actions = RunScript(source);
  EXPECT_THAT(actions.error, IsEmpty());
  return !actions.actions.empty() && actions.actions[0].kind == ActionKind::kFileInto;
}

std::vector<std::string> Summary(const Actions& actions) {
  std::vector<std::string> out;
  for (const Action& a : actions.actions) {
    std::string s;
    switch (a.kind) {
      case ActionKind::kKeep:
        s = "keep";
        break;
      case ActionKind::kFileInto:
        s = "fileinto " + a.folder;
        break;
      case ActionKind::kDiscard:
        s = "discard";
        break;
      case ActionKind::kRedirect:
        s = "redirect " + a.address + (a.copy ? " copy" : "");
        break;
      case ActionKind::kReject:
        s = (a.extended ? "ereject " : "reject ") + a.reason;
        break;
      case ActionKind::kVacation:
        s = "vacation " + a.vacation.reason;
        break;
    }
    for (const std::string& f : a.flags) s += " [" + f + "]";
    out.push_back(s);
  }
  return out;
}

TEST(EvaluateTest, EmptyScriptKeepsImplicitly) {
  Actions actions = Evaluate(Script(), Message());
  EXPECT_THAT(Summary(actions), ElementsAre("keep"));
  EXPECT_TRUE(actions.implicit_keep);
  EXPECT_TRUE(actions.Delivers());
  EXPECT_THAT(Summary(RunScript("")), ElementsAre("keep"));
}

TEST(EvaluateTest, HeaderTestDecodesEncodedWords) {
  EXPECT_TRUE(Holds("header :contains \"subject\" \"café\""));
  EXPECT_TRUE(Holds("header :contains \"subject\" \"CAFé\""));  // ASCII casemap only
  EXPECT_FALSE(Holds("header :contains \"subject\" \"CAFÉ\""));
  EXPECT_TRUE(Holds("header :is \"Subject\" \"Café menu for *Friday*\""));
  EXPECT_FALSE(Holds("header :is \"Subject\" \"Café menu\""));
  EXPECT_TRUE(Holds("header :contains [\"X-Nothing\", \"X-Spam-Score\"] [\"9\", \"7.5\"]"));
  EXPECT_FALSE(Holds("header :contains \"X-Nothing\" \"\""));
  EXPECT_TRUE(Holds("header :contains \"X-Spam-Score\" \"\""));  // empty key: present
}

TEST(EvaluateTest, MatchesWildcardsAndEscapes) {
  EXPECT_TRUE(Holds("header :matches \"subject\" \"caf? menu*\""));  // ? is one UTF-8 char
  EXPECT_FALSE(Holds("header :matches :comparator \"i;octet\" \"subject\" \"Caf? menu*\""));
  EXPECT_TRUE(Holds("header :matches :comparator \"i;octet\" \"subject\" \"Caf?? menu*\""));
  EXPECT_TRUE(Holds("header :matches \"subject\" \"*\\\\*friday\\\\*\""));
  EXPECT_FALSE(Holds("header :matches \"subject\" \"*\\\\*friday\\\\?\""));
  EXPECT_TRUE(Holds("header :matches \"x-spam-score\" \"?.?\""));
  EXPECT_FALSE(Holds("header :matches \"x-spam-score\" \"?.??\""));
  EXPECT_TRUE(Holds("header :matches \"x-spam-score\" \"*\""));
  EXPECT_TRUE(Holds("header :matches \"x-spam-score\" \"**7*5**\""));
  EXPECT_FALSE(Holds("header :matches \"x-spam-score\" \"7\""));
}

TEST(EvaluateTest, Comparators) {
  EXPECT_TRUE(Holds("header :is \"x-spam-score\" \"7.5\""));
  EXPECT_TRUE(Holds("address :is \"from\" \"ALICE+LISTS@example.org\""));
  EXPECT_FALSE(Holds("address :is :comparator \"i;octet\" \"from\" \"alice+lists@example.org\""));
  EXPECT_TRUE(Holds("address :is :comparator \"i;octet\" \"from\" \"alice+lists@Example.ORG\""));
}

TEST(EvaluateTest, AddressParts) {
  EXPECT_TRUE(Holds("address :domain :is \"from\" \"example.org\""));
  EXPECT_TRUE(Holds("address :localpart :is \"from\" \"alice+lists\""));
  EXPECT_TRUE(Holds("address :user :is \"from\" \"alice\""));
  EXPECT_TRUE(Holds("address :detail :is \"from\" \"lists\""));
  EXPECT_TRUE(Holds("address :all :is \"to\" \"carol@example.net\""));
  EXPECT_FALSE(Holds("address :all :is \"to\" \"Bob\""));        // the display name is not compared
  EXPECT_FALSE(Holds("address :detail :matches \"to\" \"*\""));  // no '+': no detail
  EXPECT_FALSE(Holds("address :contains \"cc\" \"undisclosed\""));  // a group, no members
}

TEST(EvaluateTest, Envelope) {
  EXPECT_TRUE(Holds("envelope :all :is \"from\" \"alice+lists@example.org\""));
  EXPECT_TRUE(Holds("envelope :detail :is \"to\" \"food\""));
  EXPECT_TRUE(Holds("envelope :user :is \"to\" \"bob\""));
  EXPECT_TRUE(Holds("envelope :domain :is [\"from\", \"to\"] \"example.com\""));
  EXPECT_FALSE(Holds("envelope :is \"from\" \"\""));

  MessageContext bounce = Message();
  bounce.envelope_from = "";
  Actions actions = RunScript(
      "require [\"envelope\", \"fileinto\"]; if envelope :domain :is \"from\" \"\" "
      "{ fileinto \"bounces\"; }",
      bounce);
  EXPECT_THAT(Summary(actions), ElementsAre("fileinto bounces"));
}

TEST(EvaluateTest, ExistsSizeAndLogic) {
  EXPECT_TRUE(Holds("exists [\"From\", \"message-id\"]"));
  EXPECT_FALSE(Holds("exists [\"From\", \"X-Missing\"]"));
  EXPECT_TRUE(Holds("size :over 100"));
  EXPECT_FALSE(Holds("size :over 1K"));
  EXPECT_TRUE(Holds("size :under 1K"));
  std::string size = std::to_string(sizeof(kMessage) - 1);
  EXPECT_FALSE(Holds("size :over " + size));
  EXPECT_FALSE(Holds("size :under " + size));
  EXPECT_TRUE(Holds("allof (true, not false)"));
  EXPECT_FALSE(Holds("allof (true, false)"));
  EXPECT_TRUE(Holds("anyof (false, true)"));
  EXPECT_FALSE(Holds("anyof (false, false)"));
  EXPECT_TRUE(Holds("not anyof (false)"));
}

TEST(EvaluateTest, BodyText) {
  EXPECT_TRUE(Holds("body :contains \"CAFé downstairs\""));  // QP decoded, UTF-8
  EXPECT_FALSE(Holds("body :contains \"<p>\""));             // the plain alternative only
  EXPECT_TRUE(Holds("body :raw :contains \"<p>\""));
  EXPECT_TRUE(Holds("body :raw :contains \"caf=C3=A9\""));
  EXPECT_TRUE(Holds("body :matches \"*noon*\""));
  EXPECT_FALSE(Holds("body :is \"noon\""));
}

TEST(EvaluateTest, BodyAccessorIsCalledLazilyAndOnce) {
  MessageContext message = Message();
  int calls = 0;
  message.body_text = [&calls] {
    ++calls;
    return std::string("hello world");
  };
  RunScript("require \"body\"; if header :is \"x\" \"y\" { keep; }", message);
  EXPECT_EQ(calls, 0);
  RunScript(
      "require \"body\"; if body :contains \"a\" { keep; } if body :contains \"hello\" { stop; }",
      message);
  EXPECT_EQ(calls, 1);
}

TEST(EvaluateTest, IfElsifElseAndStop) {
  constexpr char kScript[] =
      "require \"fileinto\";\n"
      "if header :is \"x-spam-score\" \"1\" { fileinto \"a\"; }\n"
      "elsif header :is \"x-spam-score\" \"7.5\" { fileinto \"b\"; }\n"
      "elsif true { fileinto \"c\"; }\n"
      "else { fileinto \"d\"; }\n"
      "if true { stop; }\n"
      "fileinto \"never\";\n";
  EXPECT_THAT(Summary(RunScript(kScript)), ElementsAre("fileinto b"));
  EXPECT_THAT(
      Summary(RunScript("require \"fileinto\"; if false { discard; } else { fileinto \"e\"; }")),
      ElementsAre("fileinto e"));
  // stop keeps the implicit keep.
  EXPECT_THAT(Summary(RunScript("stop; discard;")), ElementsAre("keep"));
}

TEST(EvaluateTest, FileintoDeduplicatesAndInboxIsKeep) {
  Actions actions = RunScript(
      "require [\"fileinto\", \"copy\"]; fileinto \"A\"; fileinto \"A\"; fileinto \"inbox\"; "
      "fileinto :copy \"B\";");
  EXPECT_THAT(Summary(actions), ElementsAre("fileinto A", "keep", "fileinto B"));
  EXPECT_FALSE(actions.implicit_keep);
}

TEST(EvaluateTest, CopyKeepsImplicitKeep) {
  Actions actions = RunScript(
      "require [\"fileinto\", \"copy\"]; fileinto :copy \"Archive\"; redirect :copy "
      "\"boss@example.com\";");
  EXPECT_THAT(Summary(actions),
              ElementsAre("fileinto Archive", "redirect boss@example.com copy", "keep"));
  EXPECT_TRUE(actions.implicit_keep);
}

TEST(EvaluateTest, RedirectCancelsImplicitKeepAndIsBounded) {
  EXPECT_THAT(Summary(RunScript("redirect \"a@example.com\"; redirect \"A@example.com\";")),
              ElementsAre("redirect a@example.com"));
  Actions many = RunScript(
      "redirect \"a@x.example\"; redirect \"b@x.example\"; redirect \"c@x.example\"; "
      "redirect \"d@x.example\"; redirect \"e@x.example\";");
  EXPECT_EQ(many.error, "1:97: more than 4 redirects");
  EXPECT_THAT(Summary(many), ElementsAre("keep"));
}

TEST(EvaluateTest, Discard) {
  Actions actions = RunScript("discard;");
  EXPECT_THAT(Summary(actions), ElementsAre("discard"));
  EXPECT_FALSE(actions.Delivers());
  EXPECT_FALSE(actions.implicit_keep);
  EXPECT_THAT(Summary(RunScript("discard; keep;")), ElementsAre("discard", "keep"));
}

TEST(EvaluateTest, Imap4Flags) {
  // RFC 5232 §3 and §4: the internal variable, keep/fileinto use it unless
  // :flags is given, the implicit keep uses its final value.
  constexpr char kScript[] =
      "require [\"fileinto\", \"imap4flags\"];\n"
      "setflag \"\\\\Seen $Work\";\n"
      "addflag [\"\\\\Flagged\", \"$work\"];\n"
      "removeflag \"\\\\seen\";\n"
      "fileinto \"Work\";\n"
      "fileinto :flags \"\\\\Answered\" \"Other\";\n"
      "if hasflag :is \"$WORK\" { fileinto :copy \"x\"; }\n";
  // :copy without require "copy" is an error; check that first.
  EXPECT_FALSE(Compile(kScript).ok());
  std::string fixed = kScript;
  fixed.replace(fixed.find("fileinto :copy \"x\";"), 19, "addflag \"$Seen-By-Rule\";");
  Actions actions = RunScript(fixed);
  EXPECT_THAT(Summary(actions),
              ElementsAre("fileinto Work [$Work] [\\Flagged]", "fileinto Other [\\Answered]"));
  EXPECT_THAT(
      Summary(RunScript("require \"imap4flags\"; addflag \"\\\\Seen\"; addflag \"\\\\Seen\";")),
      ElementsAre("keep [\\Seen]"));
  EXPECT_THAT(
      Summary(RunScript("require \"imap4flags\"; keep :flags [\"a\", \"b c\"]; addflag \"z\";")),
      ElementsAre("keep [a] [b] [c]"));
  EXPECT_TRUE(Holds("true"));
  EXPECT_THAT(Summary(RunScript("require \"imap4flags\"; addflag \"$x\"; "
                                "if hasflag :matches \"$*\" { addflag \"hit\"; }")),
              ElementsAre("keep [$x] [hit]"));
  EXPECT_THAT(
      Summary(RunScript("require \"imap4flags\"; addflag \"$X\"; "
                        "if hasflag :comparator \"i;octet\" :is \"$x\" { addflag \"no\"; }")),
      ElementsAre("keep [$X]"));
}

TEST(EvaluateTest, RejectConflictsEndInKeep) {
  Actions alone = RunScript("require \"reject\"; reject \"Go away\";");
  EXPECT_THAT(Summary(alone), ElementsAre("reject Go away"));
  EXPECT_TRUE(alone.Rejected());
  EXPECT_FALSE(alone.implicit_keep);

  Actions e = RunScript("require \"ereject\"; ereject \"No\"; discard;");
  EXPECT_THAT(Summary(e), ElementsAre("ereject No", "discard"));

  Actions after = RunScript("require [\"reject\", \"fileinto\"];\nfileinto \"x\";\nreject \"no\";");
  EXPECT_EQ(after.error,
            "3:1: reject cannot be combined with keep, fileinto, redirect or vacation");
  EXPECT_THAT(Summary(after), ElementsAre("keep"));
  EXPECT_TRUE(after.implicit_keep);

  Actions before = RunScript(
      "require [\"reject\", \"imap4flags\"];\naddflag \"x\"; reject \"no\";\n"
      "  keep;");
  EXPECT_EQ(before.error, "3:3: keep cannot be combined with reject");
  // A runtime error keeps without the script's flags.
  EXPECT_THAT(Summary(before), ElementsAre("keep"));

  Actions redirect = RunScript("require \"reject\"; reject \"no\"; redirect \"x@example.com\";");
  EXPECT_EQ(redirect.error, "1:32: redirect cannot be combined with reject");
}

TEST(EvaluateTest, Vacation) {
  constexpr char kScript[] =
      "require \"vacation\";\n"
      "vacation :days 3 :subject \"Away\" :from \"bob@example.com\"\n"
      "  :addresses [\"bobby@example.com\"] :handle \"h1\" text:\n"
      "I am away.\n"
      "..\n"
      ".\n"
      ";\n";
  Actions actions = RunScript(kScript);
  ASSERT_EQ(actions.actions.size(), 2u);
  const Vacation& v = actions.actions[0].vacation;
  EXPECT_EQ(actions.actions[0].kind, ActionKind::kVacation);
  EXPECT_EQ(v.days, 3);
  EXPECT_EQ(v.subject, "Away");
  EXPECT_EQ(v.from, "bob@example.com");
  EXPECT_EQ(v.reason, "I am away.\r\n.\r\n");
  EXPECT_EQ(v.handle, "h1");
  EXPECT_THAT(v.addresses, ElementsAre("bobby@example.com"));
  EXPECT_FALSE(v.mime);
  EXPECT_TRUE(actions.implicit_keep);  // vacation does not cancel the keep

  // Days are clamped, the default handle depends on the text.
  Actions a = RunScript("require \"vacation\"; vacation :days 0 \"one\";");
  Actions b = RunScript("require \"vacation\"; vacation :days 9999 \"one\";");
  Actions c = RunScript("require \"vacation\"; vacation :mime \"two\";");
  EXPECT_EQ(a.actions[0].vacation.days, 1);
  EXPECT_EQ(b.actions[0].vacation.days, 365);
  EXPECT_EQ(a.actions[0].vacation.handle, b.actions[0].vacation.handle);
  EXPECT_NE(a.actions[0].vacation.handle, c.actions[0].vacation.handle);
  EXPECT_TRUE(c.actions[0].vacation.mime);

  Actions twice = RunScript("require \"vacation\"; vacation \"a\"; vacation \"b\";");
  EXPECT_EQ(twice.error, "1:35: vacation is used more than once");
  Actions with_reject =
      RunScript("require [\"vacation\", \"reject\"]; vacation \"a\"; reject \"b\";");
  EXPECT_EQ(with_reject.error,
            "1:47: reject cannot be combined with keep, fileinto, redirect or vacation");
}

TEST(EvaluateTest, ActionLimit) {
  std::string script = "require \"fileinto\";\n";
  for (int i = 0; i < 40; ++i) script += "fileinto \"f" + std::to_string(i) + "\";\n";
  Actions actions = RunScript(script);
  EXPECT_EQ(actions.error, "34:1: more than 32 actions");
  EXPECT_THAT(Summary(actions), ElementsAre("keep"));
}

TEST(EvaluateTest, Rfc5228Section9ExampleFilesAsExpected) {
  constexpr char kScript[] = R"(require ["fileinto"];
if header :is "Sender" "owner-ietf-mta-filters@imc.org" { fileinto "filter"; }
elsif address :DOMAIN :is ["From", "To"] "example.com" { keep; }
elsif anyof (NOT address :all :contains ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject" ["*make*money*fast*", "*university*dipl*mas*"])
  { fileinto "spam"; }
else { fileinto "personal"; }
)";
  auto message = [](std::string headers) {
    return MessageContextFromRaw(headers + "\r\nbody\r\n", "x@y.example", "me@example.com");
  };
  EXPECT_THAT(Summary(RunScript(kScript, message("Sender: owner-ietf-mta-filters@imc.org\r\n"))),
              ElementsAre("fileinto filter"));
  EXPECT_THAT(Summary(RunScript(kScript, message("From: a@example.com\r\nTo: me@example.com\r\n"))),
              ElementsAre("keep"));
  EXPECT_THAT(
      Summary(RunScript(kScript, message("From: a@other.example\r\nTo: you@x.example\r\n"))),
      ElementsAre("fileinto spam"));
  EXPECT_THAT(Summary(RunScript(kScript, message("From: a@other.example\r\nCc: me@example.com\r\n"
                                                 "Subject: Make Money FAST now\r\n"))),
              ElementsAre("fileinto spam"));
  EXPECT_THAT(Summary(RunScript(kScript, message("From: a@other.example\r\nCc: me@example.com\r\n"
                                                 "Subject: hello\r\n"))),
              ElementsAre("fileinto personal"));
}

TEST(EvaluateTest, ScriptIsSharedAcrossEvaluations) {
  absl::StatusOr<Script> script = Compile("require \"imap4flags\"; addflag \"\\\\Seen\";");
  ASSERT_TRUE(script.ok());
  Script copy = *script;
  // The flag variable starts empty on every run.
  EXPECT_THAT(Summary(Evaluate(copy, Message())), ElementsAre("keep [\\Seen]"));
  EXPECT_THAT(Summary(Evaluate(*script, Message())), ElementsAre("keep [\\Seen]"));
}

TEST(EvaluateTest, HostileMatchIsPolynomial) {
  // A pattern that is exponential for naive backtracking.
  std::string value(5000, 'a');
  MessageContext message;
  message.headers.push_back({"Subject", value});
  std::string key;
  for (int i = 0; i < 200; ++i) key += "*a";
  key += "b";
  Actions actions = RunScript(
      "require \"fileinto\"; if header :matches \"subject\" \"" + key + "\" { fileinto \"x\"; }",
      message);
  EXPECT_THAT(Summary(actions), ElementsAre("keep"));
}

}  // namespace
}  // namespace mailgrid::sieve
