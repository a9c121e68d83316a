// Golden IMAP output. Where expected strings come from:
//  - Rfc3501Sample: the ENVELOPE and BODY of the FETCH example in RFC 3501
//    §8, verbatim; testdata/rfc3501_fetch.eml was written to carry exactly
//    those header fields and a 3028-octet, 92-line body.
//  - DovecotVector: the message and BODYSTRUCTURE/BODY strings of Dovecot's
//    src/lib-imap/test-imap-bodystructure.c (known server output), with our
//    documented differences: media type, subtype, encoding and disposition
//    type in upper case, the default charset as ("CHARSET" "US-ASCII"), and
//    the outer parentheses that Dovecot's writer leaves to its caller.
//  - The others: derived by reading RFC 3501 §7.4.2 (grammar and NIL rules),
//    with sizes and line counts printed by testdata/make_testdata.py --sizes
//    from the pieces the messages are built of.
#include "libs/mail/imap_format.h"

#include <string>

#include "gtest/gtest.h"
#include "libs/mail/header.h"
#include "libs/mail/test_util.h"

namespace mailgrid::mail {
namespace {

using testing::ReadTestdata;
using Text = SectionSpec::Text;

Message Parse(std::string_view raw) {
  absl::StatusOr<Message> m = ParseMessage(raw);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : Message{};
}

TEST(ImapFormatTest, Rfc3501Sample) {
  std::string raw = ReadTestdata("rfc3501_fetch.eml");
  Message m = Parse(raw);
  EXPECT_EQ(
      FormatEnvelope(m.envelope()),
      R"x(("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" )x"
      R"x((("Terry Gray" NIL "gray" "cac.washington.edu")) )x"
      R"x((("Terry Gray" NIL "gray" "cac.washington.edu")) )x"
      R"x((("Terry Gray" NIL "gray" "cac.washington.edu")) )x"
      R"x(((NIL NIL "imap" "cac.washington.edu")) )x"
      R"x(((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) )x"
      R"x(NIL NIL "<B27397-0100000@cac.washington.edu>"))x");
  EXPECT_EQ(FormatBodyStructure(m, false),
            R"x(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92))x");
  EXPECT_EQ(FormatBodyStructure(m, true),
            R"x(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92 NIL NIL NIL NIL))x");
}

constexpr char kDovecotMessage[] =
    "From: user@domain.org\n"
    "Date: Sat, 24 Mar 2007 23:00:00 +0200\n"
    "Mime-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=\"foo\n"
    " bar\"\n"
    "\n"
    "Root MIME prologue\n"
    "\n"
    "--foo bar\n"
    "Content-Type: text/x-myown; charset=us-ascii; foo=\"quoted\\\"string\"\n"
    "Content-ID: <foo@example.com>\n"
    "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
    "Content-Disposition: inline; foo=bar\n"
    "Content-Description: hellodescription\n"
    "Content-Language: en, fi, se\n"
    "Content-Location: http://example.com/test.txt\n"
    "\n"
    "hello\n"
    "\n"
    "--foo bar\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "From: sub@domain.org\n"
    "To: sub-to1@domain.org, sub-to2@domain.org\n"
    "Date: Sun, 12 Aug 2012 12:34:56 +0300\n"
    "Subject: submsg\n"
    "Content-Type: multipart/alternative; boundary=\"sub1\"\n"
    "\n"
    "Sub MIME prologue\n"
    "--sub1\n"
    "Content-Type: text/html\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "<p>Hello world</p>\n"
    "\n"
    "--sub1\n"
    "Content-Type: text/plain\n"
    "Content-Transfer-Encoding: ?invalid\n"
    "\n"
    "Hello another world\n"
    "\n"
    "--sub1--\n"
    "Sub MIME epilogue\n"
    "\n"
    "--foo bar--\n"
    "Root MIME epilogue\n";

TEST(ImapFormatTest, DovecotVector) {
  // Dovecot counts sizes as if lines ended in CRLF; we store CRLF.
  std::string raw = ToCrlf(kDovecotMessage);
  Message m = Parse(raw);
  const std::string envelope =
      R"x(("Sun, 12 Aug 2012 12:34:56 +0300" "submsg" ((NIL NIL "sub" "domain.org")) )x"
      R"x(((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) )x"
      R"x(((NIL NIL "sub-to1" "domain.org")(NIL NIL "sub-to2" "domain.org")) NIL NIL NIL NIL))x";
  EXPECT_EQ(
      FormatBodyStructure(m, true),
      R"x((("TEXT" "X-MYOWN" ("charset" "us-ascii" "foo" "quoted\"string") "<foo@example.com>" )x"
      R"x("hellodescription" "7BIT" 7 1 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("INLINE" ("foo" "bar")) )x"
      R"x(("en" "fi" "se") "http://example.com/test.txt")("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 412 )x" +
          envelope +
          R"x( (("TEXT" "HTML" ("CHARSET" "US-ASCII") NIL NIL "8BIT" 20 1 NIL NIL NIL NIL))x"
          R"x(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 21 1 NIL NIL NIL NIL) )x"
          R"x("ALTERNATIVE" ("boundary" "sub1") NIL NIL NIL) 21 NIL NIL NIL NIL) )x"
          R"x("MIXED" ("boundary" "foo bar") NIL NIL NIL))x");
  EXPECT_EQ(
      FormatBodyStructure(m, false),
      R"x((("TEXT" "X-MYOWN" ("charset" "us-ascii" "foo" "quoted\"string") "<foo@example.com>" )x"
      R"x("hellodescription" "7BIT" 7 1)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 412 )x" +
          envelope +
          R"x( (("TEXT" "HTML" ("CHARSET" "US-ASCII") NIL NIL "8BIT" 20 1))x"
          R"x(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 21 1) "ALTERNATIVE") 21) )x"
          R"x("MIXED"))x");
}

TEST(ImapFormatTest, MixedWithAttachments) {
  std::string raw = ReadTestdata("mixed_attachments.eml");
  Message m = Parse(raw);
  EXPECT_EQ(
      FormatBodyStructure(m, true),
      R"x(((("TEXT" "PLAIN" ("charset" "utf-8") NIL NIL "QUOTED-PRINTABLE" 66 3 NIL NIL NIL NIL))x"
      R"x(("TEXT" "HTML" ("charset" "utf-8") NIL NIL "7BIT" 65 1 NIL NIL NIL NIL) )x"
      R"x("ALTERNATIVE" ("boundary" "alt-42") NIL NIL NIL))x"
      R"x(("APPLICATION" "PDF" ("name" "contract.pdf") NIL NIL "BASE64" 88 NIL )x"
      R"x(("ATTACHMENT" ("filename" "contract.pdf")) NIL NIL))x"
      R"x(("IMAGE" "PNG" NIL "<logo@example.cn>" NIL "BASE64" 66 NIL )x"
      R"x(("INLINE" ("filename*" "UTF-8''%E5%85%AC%E5%8F%B8%E6%A0%87%E5%BF%97.png")) NIL NIL) )x"
      R"x("MIXED" ("boundary" "----=_Part_0_1234.5678") NIL NIL NIL))x");
  EXPECT_EQ(FormatEnvelope(m.envelope()),
            R"x(("Tue, 02 Jul 2024 10:15:00 +0800" "Q3 contract and drawings" )x"
            R"x((("Zhang, Wei" NIL "wei.zhang" "example.cn")) )x"
            R"x((("Zhang, Wei" NIL "wei.zhang" "example.cn")) )x"
            R"x((("Zhang, Wei" NIL "wei.zhang" "example.cn")) )x"
            R"x((("Project Team" NIL "team" "example.com")) )x"
            R"x((("=?UTF-8?B?5p2O5Zub?=" NIL "li.si" "example.cn")) NIL NIL )x"
            R"x("<20240702101500.1234@example.cn>"))x");
}

TEST(ImapFormatTest, ForwardedMessageBody) {
  std::string raw = ReadTestdata("forward.eml");
  Message m = Parse(raw);
  EXPECT_EQ(FormatBodyStructure(m, false),
            R"x((("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 12 1))x"
            R"x(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 186 )x"
            R"x(("Mon, 1 Jul 2024 08:00:00 +0000" "Review" (("Carol" NIL "carol" "example.net")) )x"
            R"x((("Carol" NIL "carol" "example.net")) (("Carol" NIL "carol" "example.net")) )x"
            R"x(((NIL NIL "alice" "example.com")) NIL NIL NIL "<review-1@example.net>") )x"
            R"x(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 37 1) 7) "MIXED"))x");
}

Envelope EnvelopeOf(std::string header) {
  return BuildEnvelope(ParseHeaderLenient(header + "\r\n"));
}

TEST(ImapFormatTest, EnvelopeNilAndDefaultRules) {
  EXPECT_EQ(FormatEnvelope(Envelope{}), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
  // Sender present but empty is replaced by From, as if absent.
  Envelope e = EnvelopeOf("From: a@x.test\r\nSender:\r\nSubject:\r\nTo: b@y.test\r\n");
  EXPECT_EQ(
      FormatEnvelope(e),
      R"x((NIL "" ((NIL NIL "a" "x.test")) ((NIL NIL "a" "x.test")) ((NIL NIL "a" "x.test")) )x"
      R"x(((NIL NIL "b" "y.test")) NIL NIL NIL NIL))x");
}

TEST(ImapFormatTest, EnvelopeGroupsAndBrokenAddresses) {
  Envelope e = EnvelopeOf(
      "From: undisclosed\r\n"
      "To: A Group:Ed Jones <c@a.test>;, Undisclosed recipients:;\r\n"
      "Cc: Joe <@relay.test:joe@example.com>\r\n"
      "Subject: say \"hi\" \\ there\r\n");
  EXPECT_EQ(
      FormatEnvelope(e),
      R"x((NIL "say \"hi\" \\ there" ((NIL NIL "undisclosed" "MISSING_DOMAIN")) )x"
      R"x(((NIL NIL "undisclosed" "MISSING_DOMAIN")) ((NIL NIL "undisclosed" "MISSING_DOMAIN")) )x"
      R"x(((NIL NIL "A Group" NIL)("Ed Jones" NIL "c" "a.test")(NIL NIL NIL NIL))x"
      R"x((NIL NIL "Undisclosed recipients" NIL)(NIL NIL NIL NIL)) )x"
      R"x((("Joe" "@relay.test" "joe" "example.com")) NIL NIL NIL))x");
}

TEST(ImapFormatTest, EightBitAndNul) {
  std::string raw = ReadTestdata("utf8_headers.eml");
  Message m = Parse(raw);
  std::string subject = "会议纪要 — Besprechung über Verträge";
  std::string plain = FormatEnvelope(m.envelope());
  // IMAP4rev1 quoted strings are 7-bit: 8-bit text goes as a literal.
  EXPECT_NE(plain.find("{" + std::to_string(subject.size()) + "}\r\n" + subject + " "),
            std::string::npos);
  EXPECT_NE(plain.find("(({6}\r\n张三 NIL {6}\r\n张三 {13}\r\n例子.中国))"), std::string::npos);
  ImapFormatOptions utf8;
  utf8.utf8 = true;
  std::string accepted = FormatEnvelope(m.envelope(), utf8);
  EXPECT_NE(accepted.find("\"" + subject + "\""), std::string::npos);
  EXPECT_NE(accepted.find("((\"张三\" NIL \"张三\" \"例子.中国\"))"), std::string::npos);

  std::string out;
  AppendImapString(std::string("a\0b\r\nc", 6), {}, &out);
  EXPECT_EQ(out, "\"a b  c\"");
  out.clear();
  AppendImapString(std::string("\xFF\0", 2), {}, &out);
  EXPECT_EQ(out, "{2}\r\n\xFF ");
  out.clear();
  AppendImapString("\xFF", utf8, &out);  // invalid UTF-8 is never quoted
  EXPECT_EQ(out, "{1}\r\n\xFF");
}

TEST(ImapFormatTest, MultipartWithoutParts) {
  Message m = Parse("Content-Type: multipart/mixed; boundary=q\r\n\r\nnothing\r\n");
  EXPECT_EQ(FormatBodyStructure(m, false),
            R"x((("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0) "MIXED"))x");
}

class SectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    raw_ = ReadTestdata("rfc3501_sections.eml");
    message_ = Parse(raw_);
  }

  std::string Fetch(std::vector<uint32_t> part, Text text = Text::kNone,
                    std::vector<std::string> fields = {}) {
    SectionSpec spec{std::move(part), text, std::move(fields)};
    absl::StatusOr<SectionData> d = ResolveSection(raw_, message_, spec);
    if (!d.ok()) return "ERROR " + std::string(absl::StatusCodeToString(d.status().code()));
    return std::string(d->Bytes(raw_));
  }

  std::string raw_;
  Message message_;
};

// Every section of the RFC 3501 §6.4.5 example structure.
TEST_F(SectionTest, Rfc3501Example) {
  EXPECT_EQ(Fetch({}), raw_);
  EXPECT_EQ(
      Fetch({}, Text::kHeader),
      "Subject: outer\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n");
  std::string text = Fetch({}, Text::kText);
  EXPECT_EQ(text.substr(0, 6), "--b0\r\n");
  EXPECT_EQ(text.substr(text.size() - 8), "--b0--\r\n");
  EXPECT_EQ(Fetch({1}), "[1]\r\n");
  EXPECT_EQ(Fetch({2}), "[2]\r\n");
  std::string three = Fetch({3});
  EXPECT_EQ(three.substr(0, 18), "Subject: inner 3\r\n");
  EXPECT_EQ(three.substr(three.size() - 8), "--b3--\r\n");
  EXPECT_EQ(Fetch({3}, Text::kHeader),
            "Subject: inner 3\r\nContent-Type: multipart/mixed; boundary=b3\r\n\r\n");
  std::string three_text = Fetch({3}, Text::kText);
  EXPECT_EQ(three_text.substr(0, 6), "--b3\r\n");
  EXPECT_EQ(three_text.substr(three_text.size() - 8), "--b3--\r\n");
  EXPECT_EQ(Fetch({3, 1}), "[3.1]\r\n");
  EXPECT_EQ(Fetch({3, 2}), "[3.2]\r\n");
  EXPECT_EQ(Fetch({4}).substr(0, 6), "--b4\r\n");
  EXPECT_EQ(Fetch({4, 1}), "[4.1]\r\n");
  EXPECT_EQ(Fetch({4, 1}, Text::kMime), "Content-Type: image/gif\r\n\r\n");
  EXPECT_EQ(Fetch({4, 2}).substr(0, 20), "Subject: inner 4.2\r\n");
  EXPECT_EQ(Fetch({4, 2}, Text::kHeader),
            "Subject: inner 4.2\r\nContent-Type: multipart/mixed; boundary=b42\r\n\r\n");
  EXPECT_EQ(Fetch({4, 2}, Text::kText).substr(0, 7), "--b42\r\n");
  EXPECT_EQ(Fetch({4, 2, 1}), "[4.2.1]\r\n");
  EXPECT_EQ(Fetch({4, 2, 2}).substr(0, 8), "--b422\r\n");
  EXPECT_EQ(Fetch({4, 2, 2, 1}), "[4.2.2.1]\r\n");
  EXPECT_EQ(Fetch({4, 2, 2, 2}), "[4.2.2.2]\r\n");
  EXPECT_EQ(Fetch({4, 2, 2, 2}, Text::kMime), "Content-Type: text/richtext\r\n\r\n");
}

TEST_F(SectionTest, HeaderFields) {
  EXPECT_EQ(Fetch({}, Text::kHeaderFields, {"SUBJECT"}), "Subject: outer\r\n\r\n");
  EXPECT_EQ(Fetch({}, Text::kHeaderFieldsNot, {"subject", "Mime-Version"}),
            "Content-Type: multipart/mixed; boundary=b0\r\n\r\n");
  EXPECT_EQ(Fetch({4, 2}, Text::kHeaderFields, {"subject"}), "Subject: inner 4.2\r\n\r\n");
  EXPECT_EQ(Fetch({}, Text::kHeaderFields, {"X-None"}), "\r\n");
}

TEST_F(SectionTest, Errors) {
  EXPECT_EQ(Fetch({1}, Text::kHeader), "ERROR INVALID_ARGUMENT");
  EXPECT_EQ(Fetch({1}, Text::kText), "ERROR INVALID_ARGUMENT");
  EXPECT_EQ(Fetch({}, Text::kMime), "ERROR INVALID_ARGUMENT");
  EXPECT_EQ(Fetch({5}), "ERROR NOT_FOUND");
  EXPECT_EQ(Fetch({3, 3}), "ERROR NOT_FOUND");
  EXPECT_EQ(Fetch({1, 1}), "ERROR NOT_FOUND");
  EXPECT_EQ(Fetch({0}), "ERROR NOT_FOUND");
}

TEST(SectionOtherTest, SinglePartAndFoldedFields) {
  std::string raw = "Subject: folded\r\n  subject\r\nX-A: 1\r\nTo: x@y.test\r\n\r\nthe body\r\n";
  Message m = Parse(raw);
  auto fetch = [&](SectionSpec spec) {
    absl::StatusOr<SectionData> d = ResolveSection(raw, m, spec);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? std::string(d->Bytes(raw)) : "";
  };
  EXPECT_EQ(fetch({{1}, Text::kNone, {}}), "the body\r\n");
  EXPECT_EQ(fetch({{1}, Text::kMime, {}}), raw.substr(0, raw.find("the body")));
  // Whole lines, folding included, in message order.
  EXPECT_EQ(fetch({{}, Text::kHeaderFields, {"to", "subject"}}),
            "Subject: folded\r\n  subject\r\nTo: x@y.test\r\n\r\n");
}

TEST(SectionOtherTest, HeaderWithoutBlankLineGetsOne) {
  std::string raw = "Subject: only a header";
  Message m = Parse(raw);
  absl::StatusOr<SectionData> d = ResolveSection(raw, m, {{}, Text::kHeader, {}});
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->built);
  EXPECT_EQ(d->Bytes(raw), "Subject: only a header\r\n\r\n");
  EXPECT_EQ(d->size(), 26u);
  absl::StatusOr<SectionData> f = ResolveSection(raw, m, {{}, Text::kHeaderFields, {"Subject"}});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->Bytes(raw), "Subject: only a header\r\n\r\n");
}

TEST(SectionOtherTest, Partial) {
  std::string_view data = "0123456789";
  EXPECT_EQ(ApplyPartial(data, 0, 4), "0123");
  EXPECT_EQ(ApplyPartial(data, 8, 4), "89");
  EXPECT_EQ(ApplyPartial(data, 10, 4), "");
  EXPECT_EQ(ApplyPartial(data, 3, std::nullopt), "3456789");
}

}  // namespace
}  // namespace mailgrid::mail
