// Encoded inputs were produced with Python's codecs and base64 (an encoder
// independent of ours); the RFC 2047 §8 and RFC 2231 examples are quoted from
// the RFCs.
#include "libs/mail/rfc2047.h"

#include <string>

#include "gtest/gtest.h"
#include "libs/mail/charset.h"
#include "libs/mail/header.h"

namespace mailgrid::mail {
namespace {

TEST(Rfc2047Test, ChineseCharsets) {
  EXPECT_EQ(DecodeHeader("=?GB2312?B?us/NrMeptqnNqNaq?="), "合同签订通知");
  // 镕 is GBK only; its trail byte is ASCII 'F'.
  EXPECT_EQ(DecodeHeader("=?GBK?B?1uzpRrv5IL2yu7C45Q==?="), "朱镕基 讲话稿");
  // Labelled GB2312, really GBK: read as GB18030, a superset of both.
  EXPECT_EQ(DecodeHeader("=?gb2312?B?1uzpRrv5IL2yu7C45Q==?="), "朱镕基 讲话稿");
  EXPECT_EQ(DecodeHeader("=?big5?B?plis+Q==?="), "合約");
  EXPECT_EQ(DecodeHeader("=?UTF-8?B?5ZCI5ZCM?="), "合同");
}

TEST(Rfc2047Test, OtherCharsets) {
  EXPECT_EQ(DecodeHeader("=?ISO-2022-JP?B?GyRCMnE1RBsoQg==?="), "会議");
  EXPECT_EQ(DecodeHeader("=?shift_jis?B?g2WDWINn?="), "テスト");
  EXPECT_EQ(DecodeHeader("=?euc-kr?B?x9Gxub7u?="), "한국어");
  EXPECT_EQ(DecodeHeader("=?koi8-r?B?8NLJ18XU?="), "Привет");
  EXPECT_EQ(DecodeHeader("=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?="), "Keld Jørn Simonsen");
  // ISO-8859-1 is read as windows-1252, as mail clients do.
  EXPECT_EQ(DecodeHeader("=?iso-8859-1?q?=80_5?="), "€ 5");
}

// RFC 2047 §8, "encoded form" → "displayed as".
TEST(Rfc2047Test, WhiteSpaceBetweenWords) {
  EXPECT_EQ(DecodeHeader("(=?ISO-8859-1?Q?a?=)"), "(a)");
  EXPECT_EQ(DecodeHeader("(=?ISO-8859-1?Q?a?= b)"), "(a b)");
  EXPECT_EQ(DecodeHeader("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)"), "(ab)");
  EXPECT_EQ(DecodeHeader("(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)"), "(ab)");
  EXPECT_EQ(DecodeHeader(Unfold("(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)")), "(ab)");
  EXPECT_EQ(DecodeHeader("(=?ISO-8859-1?Q?a_b?=)"), "(a b)");
  EXPECT_EQ(DecodeHeader("(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)"), "(a b)");
  EXPECT_EQ(DecodeHeader("Re: =?UTF-8?B?5ZCI5ZCM?= ok"), "Re: 合同 ok");
}

TEST(Rfc2047Test, CharacterSplitAcrossWords) {
  // 中 is E4 B8 AD: the first word carries two bytes, the second one.
  EXPECT_EQ(DecodeHeader("=?UTF-8?B?5Lg=?= =?UTF-8?B?rQ==?="), "中");
}

TEST(Rfc2047Test, LanguageSuffix) {
  EXPECT_EQ(DecodeHeader("=?US-ASCII*EN?Q?Keith_Moore?="), "Keith Moore");
}

TEST(Rfc2047Test, UnknownCharsetKeepsTheWord) {
  DecodedText d = DecodeHeaderText("=?x-klingon?B?SGVsbG8=?= world");
  EXPECT_TRUE(d.unknown_charset);
  EXPECT_EQ(d.text, "=?x-klingon?B?SGVsbG8=?= world");
  // A label that could smuggle iconv options is not a charset.
  DecodedText t = DecodeHeaderText("=?utf-8//TRANSLIT?Q?x?=");
  EXPECT_EQ(t.text, "=?utf-8//TRANSLIT?Q?x?=");  // not even an encoded-word: '/' is a tspecial
}

TEST(Rfc2047Test, MalformedWordsStayLiteral) {
  EXPECT_EQ(DecodeHeader("=?utf-8?Q?unterminated"), "=?utf-8?Q?unterminated");
  EXPECT_EQ(DecodeHeader("=?utf-8?X?abc?="), "=?utf-8?X?abc?=");
  EXPECT_EQ(DecodeHeader("=?utf-8?Q?has space?="), "=?utf-8?Q?has space?=");
  EXPECT_EQ(DecodeHeader("=?=?utf-8?q?x?="), "=?x");
  EXPECT_EQ(DecodeHeader("=?\?B?eA==?="), "=?\?B?eA==?=");
  EXPECT_EQ(DecodeHeader("=?utf-8?q?\?="), "");
}

TEST(Rfc2047Test, ControlsNeverSurvive) {
  EXPECT_EQ(DecodeHeader("=?utf-8?q?a=0D=0ABcc:_x=00?="), "a  Bcc: x ");
}

TEST(Rfc2047Test, RawEightBit) {
  std::string gbk_raw = "\xBA\xCF\xCD\xAC";  // 合同 in GBK, no encoded-word
  DecodedText plain = DecodeHeaderText(gbk_raw);
  EXPECT_TRUE(plain.lossy);
  // BA and CF are invalid; CD AC happens to be valid UTF-8 (U+036C).
  EXPECT_EQ(plain.text, "\uFFFD\uFFFD\u036C");
  DecodeOptions options;
  options.fallback_charset = "gbk";
  EXPECT_EQ(DecodeHeaderText(gbk_raw, options).text, "合同");
  // Raw UTF-8 (RFC 6532) is taken as it is.
  EXPECT_EQ(DecodeHeaderText("会议 Besprechung", options).text, "会议 Besprechung");
}

TEST(Rfc2231Test, ExtendedValue) {
  auto params = ParseMimeParameters("; title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A");
  ASSERT_EQ(params.size(), 1u);
  EXPECT_EQ(params[0].name, "title*");
  EXPECT_EQ(params[0].base_name(), "title");
  EXPECT_TRUE(params[0].extended);
  EXPECT_EQ(params[0].value, "us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A");
  EXPECT_EQ(params[0].decoded, "This is ***fun***");
}

TEST(Rfc2231Test, Continuations) {
  auto params = ParseMimeParameters(
      "; URL*0=\"ftp://\";\r\n URL*1=\"cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar\"");
  ASSERT_EQ(params.size(), 1u);
  EXPECT_EQ(params[0].name, "URL");
  EXPECT_EQ(params[0].value, "ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar");

  auto mixed = ParseMimeParameters(
      "; title*1*=%2A%2A%2Afun%2A%2A%2A%20; title*0*=us-ascii'en'This%20is%20even%20more%20;"
      " title*2=\"isn't it!\"");
  ASSERT_EQ(mixed.size(), 1u);
  EXPECT_EQ(mixed[0].decoded, "This is even more ***fun*** isn't it!");
  EXPECT_EQ(mixed[0].name, "title*");
  EXPECT_EQ(mixed[0].value,
            "us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn%27t%20it!");
}

TEST(Rfc2231Test, ChineseFilenames) {
  auto a = ParseMimeParameters("; filename*=gb2312''%BA%CF%CD%AC.doc");
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].decoded, "合同.doc");
  // RFC 2047 inside a quoted value: not standard, sent by many clients.
  auto b = ParseMimeParameters("; filename=\"=?GB2312?B?us/NrA==?=.doc\"");
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].value, "=?GB2312?B?us/NrA==?=.doc");
  EXPECT_EQ(b[0].decoded, "合同.doc");
  auto c = ParseMimeParameters("; filename*=x-unknown''%41");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_TRUE(c[0].unknown_charset);
  EXPECT_EQ(c[0].decoded, "A");
}

TEST(Rfc2231Test, TolerantSyntax) {
  auto p = ParseMimeParameters(
      ";;; =x; novalue; charset=us-ascii (Plain text); filename=my file.txt; size=10;"
      " CHARSET=utf-8");
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].name, "charset");
  EXPECT_EQ(p[0].value, "us-ascii");  // the comment is not part of it; first one wins
  EXPECT_EQ(p[1].value, "my file.txt");
  EXPECT_EQ(p[2].value, "10");
  ASSERT_NE(FindParameter(p, "FILENAME"), nullptr);
  EXPECT_EQ(FindParameter(p, "FILENAME")->decoded, "my file.txt");
  EXPECT_EQ(FindParameter(p, "missing"), nullptr);
  auto q = ParseMimeParameters("; name=\"unterminated");
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].value, "unterminated");
}

TEST(EncoderTest, HeaderText) {
  EXPECT_EQ(EncodeHeaderText("Hello world"), "Hello world");
  EXPECT_EQ(EncodeHeaderText("合同 ready"), "=?UTF-8?B?5ZCI5ZCM?= ready");
  EXPECT_EQ(EncodeHeaderText("a\r\nBcc: evil@example.com"), "a  Bcc: evil@example.com");
  EXPECT_EQ(EncodeHeaderText("literal =?x?q?y?="), "literal =?UTF-8?B?PT94P3E/eT89?=");
  std::string long_text;
  for (int i = 0; i < 60; ++i) long_text += "合同";
  std::string encoded = EncodeHeaderText(long_text);
  size_t start = 0;
  while (start < encoded.size()) {
    size_t end = encoded.find(' ', start);
    if (end == std::string::npos) end = encoded.size();
    EXPECT_LE(end - start, 75u);
    start = end + 1;
  }
  EXPECT_EQ(DecodeHeader(encoded), long_text);
}

TEST(EncoderTest, Phrase) {
  EXPECT_EQ(EncodePhrase("Alice Example"), "Alice Example");
  EXPECT_EQ(EncodePhrase("Zhang, Wei"), "\"Zhang, Wei\"");
  EXPECT_EQ(EncodePhrase("say \"hi\""), "\"say \\\"hi\\\"\"");
  EXPECT_EQ(EncodePhrase("张三"), "=?UTF-8?B?5byg5LiJ?=");
  EXPECT_EQ(EncodePhrase(""), "");
}

TEST(EncoderTest, Folding) {
  std::string value;
  for (int i = 0; i < 30; ++i) value += "word" + std::to_string(i) + " ";
  value.pop_back();
  std::string field = FoldHeaderField("Subject", value);
  ASSERT_GE(field.size(), 2u);
  EXPECT_EQ(field.substr(field.size() - 2), "\r\n");
  size_t start = 0;
  int lines = 0;
  while (start < field.size()) {
    size_t end = field.find("\r\n", start);
    EXPECT_LE(end - start, 78u);
    start = end + 2;
    ++lines;
  }
  EXPECT_GT(lines, 1);
  EXPECT_EQ(Unfold(field.substr(field.find(':') + 1)), value);
  EXPECT_EQ(FoldHeaderField("X-Test", "a\r\nb"), "X-Test: a  b\r\n");
}

TEST(CharsetTest, Labels) {
  EXPECT_EQ(CanonicalCharset("gb2312"), "GB18030");
  EXPECT_EQ(CanonicalCharset(" \"utf8\" "), "UTF-8");
  EXPECT_EQ(CanonicalCharset("iso-8859-2"), "ISO-8859-2");
  EXPECT_EQ(CanonicalCharset("utf-8//IGNORE"), "");
  EXPECT_EQ(CanonicalCharset(std::string(41, 'a')), "");
  EXPECT_EQ(ConvertToUtf8("abc", "x-no-such-charset"), std::nullopt);
}

TEST(CharsetTest, Conversion) {
  bool lossy = false;
  EXPECT_EQ(ConvertToUtf8("\xBA\xCF\xCD\xAC", "GB2312", &lossy), "合同");
  EXPECT_FALSE(lossy);
  // A truncated double-byte character at the end.
  EXPECT_EQ(ConvertToUtf8("\xBA\xCF\xCD", "GBK", &lossy), "合\uFFFD");
  EXPECT_TRUE(lossy);
  // US-ASCII that is really UTF-8, and that is really windows-1252.
  EXPECT_EQ(ConvertToUtf8("caf\xC3\xA9", "us-ascii"), "café");
  EXPECT_EQ(ConvertToUtf8("caf\xE9", "us-ascii"), "café");
  EXPECT_EQ(SanitizeUtf8("a\xFF"
                         "b\xC0\xAF"),
            "a\uFFFDb\uFFFD\uFFFD");
  EXPECT_TRUE(IsValidUtf8("合同"));
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // a surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // past U+10FFFF
}

// Long ASCII runs are tested eight bytes at a time: a bad or non-ASCII byte
// at any offset of such a run, and at the very end, is still seen.
TEST(CharsetTest, AsciiRunsOfAnyLength) {
  std::string ascii(37, 'x');
  EXPECT_EQ(AsciiRunEnd(ascii, 0), 37u);
  EXPECT_EQ(AsciiRunEnd(ascii, 30), 37u);
  EXPECT_EQ(AsciiRunEnd("", 0), 0u);
  for (size_t at = 0; at < ascii.size(); ++at) {
    std::string bad = ascii;
    bad[at] = '\xFF';
    EXPECT_EQ(AsciiRunEnd(bad, 0), at);
    EXPECT_FALSE(IsValidUtf8(bad)) << at;
    EXPECT_EQ(SanitizeUtf8(bad), ascii.substr(0, at) + "\uFFFD" + ascii.substr(at + 1)) << at;
    std::string good = ascii.substr(0, at) + "é" + ascii.substr(at);
    EXPECT_TRUE(IsValidUtf8(good)) << at;
    EXPECT_EQ(SanitizeUtf8(good), good) << at;
  }
}

}  // namespace
}  // namespace mailgrid::mail
