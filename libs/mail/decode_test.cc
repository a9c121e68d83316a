#include "libs/mail/decode.h"

#include <string>

#include "gtest/gtest.h"
#include "libs/mail/test_util.h"

namespace mailgrid::mail {
namespace {

using testing::ReadTestdata;

Message Parse(std::string_view raw) {
  absl::StatusOr<Message> m = ParseMessage(raw);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : Message{};
}

TEST(Base64Test, Tolerant) {
  EXPECT_EQ(DecodeBase64("SGVsbG8gV29ybGQ="), "Hello World");
  EXPECT_EQ(DecodeBase64("SGVs\r\n bG8g\tV29y bGQ="), "Hello World");
  bool garbage = false;
  EXPECT_EQ(DecodeBase64("SGVs*bG8=", &garbage), "Hello");
  EXPECT_TRUE(garbage);
  garbage = false;
  EXPECT_EQ(DecodeBase64("SGk=\r\nSGk=", &garbage), "HiHi");  // padded chunks
  EXPECT_FALSE(garbage);
  EXPECT_EQ(DecodeBase64("SGk"), "Hi");  // no padding
  EXPECT_EQ(DecodeBase64("S"), "");
  EXPECT_EQ(DecodeBase64(""), "");
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t n = 0; n < 5; ++n) {
    EXPECT_EQ(DecodeBase64(EncodeBase64(all.substr(0, 250 + n))), all.substr(0, 250 + n));
  }
  EXPECT_EQ(EncodeBase64("Hi"), "SGk=");
  EXPECT_EQ(EncodeBase64("Hel"), "SGVs");
}

TEST(QuotedPrintableTest, Rfc2045Rules) {
  EXPECT_EQ(DecodeQuotedPrintable("Caf=C3=A9 at 3pm.\r\n"), "Café at 3pm.\r\n");
  EXPECT_EQ(DecodeQuotedPrintable("caf=c3=a9"), "café");
  EXPECT_EQ(DecodeQuotedPrintable("soft=\r\nbreak"), "softbreak");
  EXPECT_EQ(DecodeQuotedPrintable("soft=\nbreak\n"), "softbreak\n");
  EXPECT_EQ(DecodeQuotedPrintable("padded= \t\r\nbreak"), "paddedbreak");
  EXPECT_EQ(DecodeQuotedPrintable("trailing  \r\nspace\t\r\n"), "trailing\r\nspace\r\n");
  bool malformed = false;
  EXPECT_EQ(DecodeQuotedPrintable("a=ZZb=4", &malformed), "a=ZZb=4");
  EXPECT_TRUE(malformed);
  EXPECT_EQ(DecodeQuotedPrintable("last line="), "last line");
}

TEST(DecodeTest, TransferEncodings) {
  EXPECT_EQ(ParseTransferEncoding(""), TransferEncoding::kIdentity);
  EXPECT_EQ(ParseTransferEncoding("8BIT"), TransferEncoding::kIdentity);
  EXPECT_EQ(ParseTransferEncoding("Base64"), TransferEncoding::kBase64);
  EXPECT_EQ(ParseTransferEncoding("quoted-printable"), TransferEncoding::kQuotedPrintable);
  EXPECT_EQ(ParseTransferEncoding("x-uuencode"), TransferEncoding::kUnknown);

  std::string raw = ReadTestdata("mixed_attachments.eml");
  Message m = Parse(raw);
  EXPECT_EQ(DecodedBody(raw, m.parts[4]),
            "%PDF-1.4\n% fake contract for tests\n1 0 obj <<>> endobj\n%%EOF\n");
  std::optional<std::string> png = DecodedBody(raw, m.parts[5]);
  ASSERT_TRUE(png.has_value());
  EXPECT_EQ(png->substr(0, 8), "\x89PNG\r\n\x1a\n");
  EXPECT_EQ(png->size(), 48u);
  EXPECT_EQ(DecodedBody(raw, m.parts[2]),
            "Hi team,\r\n\r\nplease find the contract attached. Café at 3pm.\r\n");

  Message uu = Parse("Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n");
  EXPECT_EQ(DecodedBody("Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n", uu.root()),
            std::nullopt);
}

TEST(DecodeTest, ChineseBodies) {
  std::string gb = ReadTestdata("gb2312_subject.eml");
  Message m = Parse(gb);
  PartText t = DecodeTextPart(gb, m.root());
  EXPECT_EQ(t.text, "合同已签订，请查收。\r\n签订合同书的原件在财务部。\r\n");
  EXPECT_FALSE(t.lossy);

  std::string gbk = ReadTestdata("gbk_subject.eml");
  Message k = Parse(gbk);
  EXPECT_EQ(DecodeTextPart(gbk, k.root()).text, "镕钢厂的报告。\r\n");

  // Undeclared charset: UTF-8 when valid, else the fallback.
  std::string raw = "Subject: x\r\n\r\n\xBA\xCF\xCD\xAC";
  Message u = Parse(raw);
  EXPECT_EQ(DecodeTextPart(raw, u.root(), "gbk").text, "合同");
  EXPECT_EQ(DecodeTextPart(raw, u.root()).text, "ºÏÍ¬");  // windows-1252 by default

  std::string unknown = "Content-Type: text/plain; charset=x-martian\r\n\r\nhello";
  Message x = Parse(unknown);
  PartText ut = DecodeTextPart(unknown, x.root());
  EXPECT_TRUE(ut.unknown_charset);
  EXPECT_EQ(ut.text, "hello");
}

TEST(HtmlTest, Stripping) {
  EXPECT_EQ(HtmlToText("<p>Hi <b>Bob</b>,</p><p>caf&#233; &amp; tea&#x21;</p>"),
            "\nHi Bob,\n\ncafé & tea!\n");
  EXPECT_EQ(HtmlToText("<style>p{x}</style><SCRIPT>alert('<p>')</SCRIPT>ok<!-- <b>c</b> -->!"),
            "ok!");
  EXPECT_EQ(HtmlToText("a &unknown; b &#0; c &#99999999;"), "a &unknown; b \uFFFD c \uFFFD");
  EXPECT_EQ(HtmlToText("unterminated <b"), "unterminated ");
  EXPECT_EQ(HtmlToText("<script>never closed"), "");
}

TEST(SearchTextTest, MixedWithAttachments) {
  std::string raw = ReadTestdata("mixed_attachments.eml");
  Message m = Parse(raw);
  SearchText s = ExtractSearchText(raw, m);
  EXPECT_EQ(s.subject, "Q3 contract and drawings");
  EXPECT_EQ(s.from, "Zhang, Wei wei.zhang@example.cn");
  EXPECT_EQ(s.to, "Project Team team@example.com");
  EXPECT_EQ(s.cc, "李四 li.si@example.cn");
  // The alternative gives its plain part; attachments give their names.
  EXPECT_EQ(s.body,
            "Hi team,\r\n\r\nplease find the contract attached. Café at 3pm.\r\n"
            "\ncontract.pdf\n公司标志.png");
  EXPECT_FALSE(s.truncated);
}

TEST(SearchTextTest, ChineseSubjectAndForward) {
  std::string gb = ReadTestdata("gb2312_subject.eml");
  Message m = Parse(gb);
  SearchText s = ExtractSearchText(gb, m);
  EXPECT_EQ(s.subject, "合同签订通知");
  EXPECT_EQ(s.from, "王五 wang.wu@example.cn");
  EXPECT_EQ(s.body, "合同已签订，请查收。\r\n签订合同书的原件在财务部。\r\n");

  std::string fwd = ReadTestdata("forward.eml");
  Message f = Parse(fwd);
  EXPECT_EQ(ExtractSearchText(fwd, f).body,
            "See below.\r\n\nReview\nCan we move the review to Thursday?\r\n");
}

TEST(SearchTextTest, HtmlOnlyAndTruncation) {
  std::string raw =
      "Subject: s\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\n"
      "Content-Type: text/html; charset=utf-8\r\n\r\n<p>only&nbsp;html</p>\r\n--a--\r\n";
  Message m = Parse(raw);
  EXPECT_EQ(ExtractSearchText(raw, m).body, "\nonly html\n");
  SearchTextOptions small;
  small.max_body_bytes = 6;
  SearchText t = ExtractSearchText(raw, m, small);
  EXPECT_TRUE(t.truncated);
  EXPECT_EQ(t.body, "\nonly ");

  // An alternative in which no delimiter was found has no parts to pick.
  std::string empty = "Content-Type: multipart/alternative; boundary=z\r\n\r\nno parts\r\n";
  Message e = Parse(empty);
  EXPECT_EQ(ExtractSearchText(empty, e).body, "");

  std::string cjk = "Content-Type: text/plain; charset=utf-8\r\n\r\n合同书";
  Message c = Parse(cjk);
  small.max_body_bytes = 7;  // cut inside the third character: back to a boundary
  EXPECT_EQ(ExtractSearchText(cjk, c, small).body, "合同");
}

}  // namespace
}  // namespace mailgrid::mail
