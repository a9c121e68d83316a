// Compile: the grammar, the argument checks and every error path with its
// line:column.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "libs/sieve/sieve.h"

namespace mailgrid::sieve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ErrorOf(std::string_view source) {
  absl::StatusOr<Script> script = Compile(source);
  if (script.ok()) return "OK";
  EXPECT_EQ(script.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(script.status().message());
}

std::string ReasonOf(std::string_view source) {
  return std::string(CompileErrorReason(Compile(source).status()));
}

TEST(CompileTest, EmptyScriptAndCommentsCompile) {
  EXPECT_EQ(ErrorOf(""), "OK");
  EXPECT_EQ(ErrorOf("# only a comment\n/* and\n a bracket comment */\n"), "OK");
  EXPECT_EQ(ErrorOf("keep;"), "OK");
}

TEST(CompileTest, Rfc5228Section9Example) {
  // RFC 5228 §9 (the big example), verbatim apart from the Subject text.
  constexpr char kScript[] = R"(#
# Example Sieve Filter
# Declare any optional features or extension used by the script
#
require ["fileinto"];

#
# Handle messages from known mailing lists
# Move messages from IETF filter discussion list to filter mailbox
#
if header :is "Sender" "owner-ietf-mta-filters@imc.org"
        {
        fileinto "filter";  # move to "filter" mailbox
        }
#
# Keep all messages to or from people in my company
#
elsif address :DOMAIN :is ["From", "To"] "example.com"
        {
        keep;               # keep in "In" mailbox
        }

#
# Try and catch unsolicited email.  If a message is not to me,
# or it contains a subject known to be spam, file it away.
#
elsif anyof (NOT address :all :contains
               ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject"
               ["*make*money*fast*", "*university*dipl*mas*"])
        {
        fileinto "spam";   # move to "spam" mailbox
        }
else
        {
        # Move all other (non-company) mail to "personal"
        # mailbox.
        fileinto "personal";
        }
)";
  EXPECT_EQ(ErrorOf(kScript), "OK");
}

TEST(CompileTest, RequireListsExtensions) {
  absl::StatusOr<Script> script =
      Compile("require [\"fileinto\", \"imap4flags\"];\nrequire \"vacation\";\n");
  ASSERT_TRUE(script.ok()) << script.status();
  EXPECT_THAT(script->extensions(), ElementsAre("fileinto", "imap4flags", "vacation"));
}

TEST(CompileTest, EveryExtensionIsAccepted) {
  EXPECT_EQ(ErrorOf("require [\"fileinto\", \"envelope\", \"imap4flags\", \"vacation\", "
                    "\"body\", \"subaddress\", \"copy\", \"reject\", \"ereject\", "
                    "\"comparator-i;octet\", \"comparator-i;ascii-casemap\"];"),
            "OK");
}

TEST(CompileTest, UnknownExtension) {
  EXPECT_EQ(ErrorOf("require [\"fileinto\",\n  \"variables\"];"),
            "1:9: unsupported extension \"variables\"");
  EXPECT_EQ(ReasonOf("require \"regex\";"), "UNSUPPORTED_EXTENSION");
}

TEST(CompileTest, ExtensionUsedWithoutRequire) {
  EXPECT_EQ(ErrorOf("if true {\n  fileinto \"x\";\n}"),
            "2:3: fileinto is used without require \"fileinto\"");
  EXPECT_EQ(ErrorOf("vacation \"away\";"), "1:1: vacation is used without require \"vacation\"");
  EXPECT_EQ(ErrorOf("if envelope \"from\" \"a@b\" { keep; }"),
            "1:4: envelope is used without require \"envelope\"");
  EXPECT_EQ(ErrorOf("if body :contains \"x\" { keep; }"),
            "1:4: body is used without require \"body\"");
  EXPECT_EQ(ErrorOf("require \"fileinto\";\nfileinto :copy \"x\";"),
            "2:10: :copy is used without require \"copy\"");
  EXPECT_EQ(ErrorOf("keep :flags \"\\\\Seen\";"),
            "1:6: :flags is used without require \"imap4flags\"");
  EXPECT_EQ(ErrorOf("if address :user \"from\" \"a\" { keep; }"),
            "1:12: :user is used without require \"subaddress\"");
  EXPECT_EQ(ErrorOf("addflag \"x\";"), "1:1: addflag is used without require \"imap4flags\"");
  EXPECT_EQ(ErrorOf("reject \"no\";"), "1:1: reject is used without require \"reject\"");
  EXPECT_EQ(ErrorOf("require \"reject\"; ereject \"no\";"),
            "1:19: ereject is used without require \"ereject\"");
}

TEST(CompileTest, RequireMustComeFirst) {
  EXPECT_EQ(ErrorOf("keep;\nrequire \"fileinto\";"),
            "2:1: require must come before any other command");
  EXPECT_EQ(ErrorOf("if true {\n require \"fileinto\"; }"),
            "2:2: require must come before any other command");
}

TEST(CompileTest, UnknownCommandAndTest) {
  EXPECT_EQ(ErrorOf("keep;\n  frobnicate;"), "2:3: unknown command \"frobnicate\"");
  EXPECT_EQ(ReasonOf("frobnicate;"), "SYNTAX");
  EXPECT_EQ(ErrorOf("if spam { keep; }"), "1:4: unknown test \"spam\"");
}

TEST(CompileTest, GrammarErrors) {
  EXPECT_EQ(ErrorOf("keep"), "1:5: expected ';' or '{' but found end of script");
  EXPECT_EQ(ErrorOf("if true { keep; "), "1:17: expected '}' but found end of script");
  EXPECT_EQ(ErrorOf("keep; }"), "1:7: unexpected '}'");
  EXPECT_EQ(ErrorOf("if header \"a\" [\"b\" \"c\"] { keep; }"),
            "1:20: expected ',' or ']' but found string");
  EXPECT_EQ(ErrorOf("if anyof (true false) { keep; }"), "1:16: true takes no nested test");
  EXPECT_EQ(ErrorOf("if true keep;"), "1:9: true takes no nested test");
  EXPECT_EQ(ErrorOf("if anyof (true; false) { keep; }"), "1:15: expected ',' or ')' but found ';'");
  EXPECT_EQ(ErrorOf("if anyof (true, ) { keep; }"), "1:17: expected a test but found ')'");
  EXPECT_EQ(ErrorOf("keep; $"), "1:7: unexpected character '$'");
  EXPECT_EQ(ErrorOf("if header : \"a\" \"b\" {}"), "1:11: ':' must start a tag");
  EXPECT_EQ(ErrorOf("if size :over 10X { keep; }"),
            "1:17: a number must be followed by white space or punctuation");
  EXPECT_EQ(ErrorOf("if size :over 99999999999999999999 { keep; }"), "1:15: number is too large");
  EXPECT_EQ(ErrorOf("if size :over 18014398509481984K { keep; }"), "1:15: number is too large");
}

TEST(CompileTest, UnterminatedTokens) {
  EXPECT_EQ(ErrorOf("keep;\n/* never ends"), "2:1: unterminated comment");
  EXPECT_EQ(ErrorOf("require \"fileinto\";\nfileinto \"abc"), "2:10: unterminated string");
  EXPECT_EQ(ErrorOf("require \"vacation\";\nvacation text:\nhello\n"),
            "2:10: unterminated multi-line string");
  EXPECT_EQ(ErrorOf("require \"vacation\";\nvacation text: junk\n.\n;"),
            "2:16: \"text:\" must be followed by the end of the line");
}

TEST(CompileTest, InvalidUtf8IsRejectedWithPosition) {
  EXPECT_EQ(ErrorOf("keep;\n# caf\xC3\xA9 ok\nkeep; \xFF"), "3:7: the script is not valid UTF-8");
  EXPECT_EQ(ErrorOf("# \xC0\xAF overlong"), "1:3: the script is not valid UTF-8");
}

TEST(CompileTest, ArgumentErrors) {
  EXPECT_EQ(ErrorOf("keep \"x\";"), "1:6: keep takes 0 positional arguments, not 1");
  EXPECT_EQ(ErrorOf("require \"fileinto\";\nfileinto;"),
            "2:1: fileinto takes 1 positional argument, not 0");
  EXPECT_EQ(ErrorOf("require \"fileinto\";\nfileinto [\"a\", \"b\"];"),
            "2:10: fileinto: argument 1 must be a string");
  EXPECT_EQ(ErrorOf("require \"fileinto\";\nfileinto \"\";"), "2:10: empty folder name");
  EXPECT_EQ(ErrorOf("if header :is :contains \"a\" \"b\" { keep; }"),
            "1:15: :contains cannot be combined with :is");
  EXPECT_EQ(ErrorOf("if header :is :is \"a\" \"b\" { keep; }"), "1:15: tag :is is given twice");
  EXPECT_EQ(ErrorOf("if header :over \"a\" \"b\" { keep; }"), "1:11: unknown tag :over for header");
  EXPECT_EQ(ErrorOf("if header :comparator \"i;foo\" \"a\" \"b\" { keep; }"),
            "1:23: unsupported comparator \"i;foo\"");
  EXPECT_EQ(ErrorOf("if header :comparator \"a\" \"b\" { keep; }"),
            "1:4: header takes 2 positional arguments, not 1");
  EXPECT_EQ(ErrorOf("if header :comparator { keep; }"), "1:11: :comparator needs a string");
  EXPECT_EQ(ErrorOf("if size 10 { keep; }"), "1:4: size needs :over or :under");
  EXPECT_EQ(ErrorOf("if size :over :under 1 { keep; }"),
            "1:15: :under cannot be combined with :over");
  EXPECT_EQ(ErrorOf("if size :over \"1\" { keep; }"), "1:15: size: argument 1 must be a number");
  EXPECT_EQ(ErrorOf("if header \"bad name\" \"x\" { keep; }"),
            "1:11: invalid header name \"bad name\"");
  EXPECT_EQ(ErrorOf("redirect \"not an address\";"),
            "1:10: redirect: \"not an address\" is not a valid address");
  EXPECT_EQ(ErrorOf("require \"envelope\"; if envelope \"auth\" \"x\" { keep; }"),
            "1:33: unsupported envelope part \"auth\"");
  EXPECT_EQ(ErrorOf("require \"imap4flags\"; setflag \"var\" \"\\\\Seen\";"),
            "1:31: setflag with a variable name needs the \"variables\" extension, which is not "
            "supported");
  EXPECT_EQ(ErrorOf("require \"imap4flags\"; if hasflag \"v\" \"x\" { keep; }"),
            "1:34: hasflag with a variable list needs the \"variables\" extension, which is not "
            "supported");
  EXPECT_EQ(ErrorOf("require \"body\"; if body :content \"text\" \"x\" { keep; }"),
            "1:25: body :content is not supported");
}

TEST(CompileTest, ControlStructureErrors) {
  EXPECT_EQ(ErrorOf("elsif true { keep; }"), "1:1: elsif without a preceding if");
  EXPECT_EQ(ErrorOf("if true { keep; } keep; else { keep; }"), "1:25: else without a preceding if");
  EXPECT_EQ(ErrorOf("if true { keep; } else { keep; } else { keep; }"),
            "1:34: else without a preceding if");
  EXPECT_EQ(ErrorOf("if { keep; }"), "1:1: if needs exactly one test");
  EXPECT_EQ(ErrorOf("if true;"), "1:1: if needs a block { ... }");
  EXPECT_EQ(ErrorOf("if true { keep; } else true { keep; }"), "1:24: else takes no test");
  EXPECT_EQ(ErrorOf("keep { }"), "1:1: keep takes no block; end it with ';'");
  EXPECT_EQ(ErrorOf("stop true;"), "1:6: stop takes no test");
  EXPECT_EQ(ErrorOf("if not (true, false) { keep; }"), "1:4: not needs exactly one test");
  EXPECT_EQ(ErrorOf("if anyof true { keep; }"), "1:4: anyof needs a test list ( ... )");
  EXPECT_EQ(ErrorOf("if true true { keep; }"), "1:9: true takes no nested test");
  EXPECT_EQ(ErrorOf("if exists \"x\" true { keep; }"), "1:15: exists takes no nested test");
}

TEST(CompileTest, NestingLimit) {
  std::string deep;
  for (int i = 0; i < 40; ++i) deep += "if true {\n";
  deep += "keep;";
  for (int i = 0; i < 40; ++i) deep += "}";
  EXPECT_EQ(ErrorOf(deep), "33:4: nesting is deeper than 32");

  std::string tests = "if ";
  for (int i = 0; i < 40; ++i) tests += "not ";
  tests += "true { keep; }";
  EXPECT_EQ(ErrorOf(tests), "1:132: nesting is deeper than 32");

  std::string fine = "if ";
  for (int i = 0; i < 20; ++i) fine += "not ";
  fine += "true { keep; }";
  EXPECT_EQ(ErrorOf(fine), "OK");
}

TEST(CompileTest, SizeLimit) {
  std::string big(64 * 1024 + 1, ' ');
  absl::StatusOr<Script> script = Compile(big);
  ASSERT_FALSE(script.ok());
  EXPECT_EQ(script.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(script.status().message()), HasSubstr("65536"));
  EXPECT_EQ(CompileErrorReason(script.status()), "TOO_LARGE");
  EXPECT_EQ(ErrorOf(std::string(64 * 1024, ' ')), "OK");
}

TEST(CompileTest, ReasonIsEmptyForOtherStatuses) {
  EXPECT_EQ(CompileErrorReason(absl::OkStatus()), "");
  EXPECT_EQ(CompileErrorReason(absl::InvalidArgumentError("x")), "");
  EXPECT_EQ(ReasonOf("keep"), "SYNTAX");
}

TEST(CompileTest, CaseInsensitiveIdentifiersAndTags) {
  EXPECT_EQ(ErrorOf("REQUIRE \"fileinto\"; IF Header :CONTAINS \"subject\" \"x\" { FileInto "
                    "\"y\"; } ELSE { Keep; }"),
            "OK");
}

TEST(CompileTest, TaggedArgumentsMayFollowPositionalOnes) {
  // Lenient like most implementations: a tag and its value anywhere.
  EXPECT_EQ(ErrorOf("require [\"fileinto\", \"copy\"]; fileinto \"x\" :copy;"), "OK");
}

}  // namespace
}  // namespace mailgrid::sieve
