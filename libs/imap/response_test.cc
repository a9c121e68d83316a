#include "libs/imap/response.h"

#include <string>

#include "gtest/gtest.h"

namespace mailgrid::imap {
namespace {

std::string Done(ResponseWriter& w) {
  auto r = w.Finish();
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : "";
}

TEST(ResponseWriter, PicksAtomQuotedOrLiteral) {
  auto w = ResponseWriter::Untagged();
  w.Atom("LIST").AString("Drafts").AString("My Mail").AString("a\"b\\c").AString("").AString("nil");
  EXPECT_EQ(Done(w), "* LIST Drafts \"My Mail\" \"a\\\"b\\\\c\" \"\" \"nil\"\r\n");

  auto l = ResponseWriter::Untagged();
  l.String("line1\r\nline2").String("caf\xC3\xA9");
  EXPECT_EQ(Done(l), "* {12}\r\nline1\r\nline2 {5}\r\ncaf\xC3\xA9\r\n");

  WriterOptions long_opts;
  long_opts.max_quoted_length = 4;
  auto lg = ResponseWriter::Untagged(long_opts);
  lg.String("abcd").String("abcde");
  EXPECT_EQ(Done(lg), "* \"abcd\" {5}\r\nabcde\r\n");
}

TEST(ResponseWriter, Utf8AllowsQuotedUtf8) {
  WriterOptions o;
  o.utf8 = true;
  auto w = ResponseWriter::Untagged(o);
  w.String("收件箱").String("\xC3\x28");  // invalid UTF-8 still goes as a literal
  EXPECT_EQ(Done(w), "* \"收件箱\" {2}\r\n\xC3\x28\r\n");
}

TEST(ResponseWriter, ListsNilNumbersFlags) {
  auto w = ResponseWriter::Untagged();
  w.Number(12).Atom("FETCH").Open().Atom("FLAGS").Open().Flag("\\Seen").Flag("$Junk").Close();
  w.Atom("UID").Number(4827313).Atom("ENVELOPE").Open().Nil().NString(std::nullopt).NString("x");
  w.Open().Close().Close().Close();
  EXPECT_EQ(Done(w),
            "* 12 FETCH (FLAGS (\\Seen $Junk) UID 4827313 ENVELOPE (NIL NIL \"x\" ()))\r\n");
}

TEST(ResponseWriter, MailboxNamesAreEncoded) {
  auto w = ResponseWriter::Untagged();
  w.Atom("LIST").Open().Flag("\\HasNoChildren").Close().String("/").Mailbox("收件箱");
  w.Mailbox("inbox").Mailbox("Tom & Jerry");
  EXPECT_EQ(Done(w), "* LIST (\\HasNoChildren) \"/\" &ZTZO9nux- INBOX \"Tom &- Jerry\"\r\n");
  WriterOptions o;
  o.utf8 = true;
  auto u = ResponseWriter::Untagged(o);
  u.Mailbox("收件箱");
  EXPECT_EQ(Done(u), "* \"收件箱\"\r\n");
}

TEST(ResponseWriter, StatusLinesAndCodes) {
  auto w = ResponseWriter::Tagged("a1");
  w.Status(Condition::kOk, "READ-WRITE", "SELECT completed");
  EXPECT_EQ(Done(w), "a1 OK [READ-WRITE] SELECT completed\r\n");
  EXPECT_EQ(StatusLine("a2", Condition::kNo, "TOOBIG", "too\r\nbig\x01"),
            "a2 NO [TOOBIG] too  big \r\n");
  EXPECT_EQ(StatusLine("", Condition::kBad, "", "no tag"), "* BAD no tag\r\n");
  EXPECT_EQ(StatusLine("a3", Condition::kBye, "", "bye"), "* BYE bye\r\n");
  EXPECT_EQ(StatusLine("bad tag", Condition::kBad, "", "x"), "* BAD x\r\n");
  EXPECT_EQ(StatusLine("a4", Condition::kOk, "BAD]CODE", "x"), "a4 OK x\r\n");
  EXPECT_EQ(StatusLine("a5", Condition::kNo, "BADCHARSET (UTF-8)", ""),
            "a5 NO [BADCHARSET (UTF-8)] Completed\r\n");
  EXPECT_EQ(StatusLine("a6", Condition::kOk, "", "[not a code"), "a6 OK  [not a code\r\n");
  EXPECT_EQ(StatusLine("a7", Condition::kOk, "", "caf\xC3\xA9"), "a7 OK caf??\r\n");
  EXPECT_EQ(ContinuationLine("Ready"), "+ Ready\r\n");
  EXPECT_EQ(ContinuationLine(""), "+ \r\n");
  EXPECT_EQ(ContinuationLine("dGVzdA=="), "+ dGVzdA==\r\n");
}

TEST(ResponseWriter, RefusesWhatCannotBeRepaired) {
  auto nul = ResponseWriter::Untagged();
  nul.String(std::string("a\0b", 3));
  EXPECT_FALSE(nul.Finish().ok());
  auto bin = ResponseWriter::Untagged();
  bin.Literal8(std::string("a\0b", 3));
  EXPECT_EQ(Done(bin), std::string("* ~{3}\r\na\0b\r\n", 13));
  auto atom = ResponseWriter::Untagged();
  atom.Atom("two words");
  EXPECT_FALSE(atom.Finish().ok());
  auto raw = ResponseWriter::Untagged();
  raw.Raw("BODY[]\r\n* BYE");
  EXPECT_FALSE(raw.Finish().ok());
  auto open = ResponseWriter::Untagged();
  open.Open();
  EXPECT_FALSE(open.Finish().ok());
  auto close = ResponseWriter::Untagged();
  close.Close();
  EXPECT_FALSE(close.Finish().ok());
  auto after = ResponseWriter::Tagged("a1");
  after.Status(Condition::kOk, "", "done").Atom("MORE");
  EXPECT_FALSE(after.Finish().ok());
  auto tag = ResponseWriter::Tagged("a+b");
  EXPECT_FALSE(tag.Finish().ok());
  auto flag = ResponseWriter::Untagged();
  flag.Flag("\\Se en");
  EXPECT_FALSE(flag.Finish().ok());
  auto mbox = ResponseWriter::Untagged();
  mbox.Mailbox("\xFF");
  EXPECT_FALSE(mbox.Finish().ok());
}

TEST(ResponseWriter, RawElements) {
  auto w = ResponseWriter::Untagged();
  w.Number(1)
      .Atom("FETCH")
      .Open()
      .Raw("BODY[HEADER.FIELDS (FROM)]")
      .Literal("x")
      .Raw("INTERNALDATE")
      .Raw("\"17-Jul-1996 02:44:25 -0700\"")
      .Close();
  EXPECT_EQ(Done(w),
            "* 1 FETCH (BODY[HEADER.FIELDS (FROM)] {1}\r\nx INTERNALDATE \"17-Jul-1996 02:44:25 "
            "-0700\")\r\n");
}

TEST(ResponseWriter, FormatsProtocolErrors) {
  ProtocolError e{"a1", Condition::kNo, "TOOBIG", "Literal too large", false};
  EXPECT_EQ(FormatError(e), "a1 NO [TOOBIG] Literal too large\r\n");
  ProtocolError u{"", Condition::kBad, "", "Invalid tag", false};
  EXPECT_EQ(FormatError(u), "* BAD Invalid tag\r\n");
}

}  // namespace
}  // namespace mailgrid::imap
