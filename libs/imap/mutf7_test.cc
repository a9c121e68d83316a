#include "libs/imap/mutf7.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/imap/base64.h"
#include "libs/imap/utf8.h"

namespace mailgrid::imap {
namespace {

void ExpectRoundTrip(const std::string& utf8, const std::string& wire) {
  auto enc = EncodeMutf7(utf8);
  ASSERT_TRUE(enc.ok()) << enc.status();
  EXPECT_EQ(*enc, wire);
  auto dec = DecodeMutf7(wire);
  ASSERT_TRUE(dec.ok()) << wire << ": " << dec.status();
  EXPECT_EQ(*dec, utf8);
}

TEST(Mutf7, Rfc3501Examples) {
  // RFC 3501 §5.1.3: "~peter/mail/台北/日本語".
  ExpectRoundTrip("~peter/mail/\xE5\x8F\xB0\xE5\x8C\x97/\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",
                  "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
}

TEST(Mutf7, ChineseNames) {
  ExpectRoundTrip("收件箱", "&ZTZO9nux-");
  ExpectRoundTrip("已发送", "&XfJT0ZAB-");
  ExpectRoundTrip("草稿箱/2024年", "&g0l6P3ux-/2024&XnQ-");
}

TEST(Mutf7, AsciiAmpersandAndEmpty) {
  ExpectRoundTrip("", "");
  ExpectRoundTrip("INBOX", "INBOX");
  ExpectRoundTrip("Tom & Jerry", "Tom &- Jerry");
  ExpectRoundTrip("&&", "&-&-");
  ExpectRoundTrip("Été", "&AMk-t&AOk-");
}

TEST(Mutf7, NonBmpUsesSurrogatePairs) {
  ExpectRoundTrip("\xF0\x9F\x93\xA7 mail", "&2D3c5w- mail");  // U+1F4E7
}

TEST(Mutf7, ControlCharactersAreEncodedNotDirect) {
  ExpectRoundTrip("a\tb", "a&AAk-b");
  EXPECT_FALSE(DecodeMutf7("a\tb").ok());
}

TEST(Mutf7, RejectsInvalid) {
  const char* bad[] = {
      "&ZTZO9nux",             // unterminated shift
      "&AGE-",                 // encodes "a", which must stand for itself
      "&ACY-",                 // encodes "&", which must be "&-"
      "&ZTZO9nux-&ZTZO9nux-",  // adjacent shifts (one shift would do)
      "&ZTZ-",                 // non-zero padding bits
      "&ZTZO9nu-",             // dangling BASE64 character
      "&2D0-",                 // lone high surrogate
      "&3,8-",                 // lone low surrogate
      "&2D3YPQ-",              // high surrogate followed by a high surrogate
      "&AAA-",                 // U+0000
      "&Jjo!-",                // "!" inside a shift
      "&U/BTFw-",              // "/" is not modified BASE64 ("," is)
      "caf\xC3\xA9",           // raw 8-bit
      "a\x7f",                 // DEL
      "&-&",                   // "&" then an unterminated shift
  };
  for (const char* s : bad) EXPECT_FALSE(DecodeMutf7(s).ok()) << s;
}

TEST(Mutf7, EncodeRejectsInvalidUtf8) {
  EXPECT_FALSE(EncodeMutf7("\xC3").ok());
  EXPECT_FALSE(EncodeMutf7("\xED\xA0\x80").ok());  // UTF-8 encoded surrogate
  EXPECT_FALSE(EncodeMutf7("\xC0\xAF").ok());      // overlong "/"
}

// Every valid name survives the round trip, and decoding accepts exactly
// the encoder's output (checked on a spread of code points).
TEST(Mutf7, RoundTripsManyCodePoints) {
  for (uint32_t cp = 1; cp < 0x11000; cp += 7) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    std::string s = "x";
    AppendUtf8(cp, &s);
    AppendUtf8(cp + 1 <= 0x10FFFF && !(cp + 1 >= 0xD800 && cp + 1 <= 0xDFFF) ? cp + 1 : 'y', &s);
    auto enc = EncodeMutf7(s);
    ASSERT_TRUE(enc.ok());
    auto dec = DecodeMutf7(*enc);
    ASSERT_TRUE(dec.ok()) << *enc << " " << dec.status();
    EXPECT_EQ(*dec, s);
  }
}

TEST(Utf8, Validation) {
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("收件箱"));
  EXPECT_FALSE(IsValidUtf8("\xFF"));
  EXPECT_FALSE(IsValidUtf8("\xE6\x94"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\xAF"));      // overlong
}

TEST(Base64, StrictDecoding) {
  EXPECT_EQ(DecodeBase64("AGFsaWNlAHBhc3N3b3Jk").value(), std::string("\0alice\0password", 15));
  EXPECT_EQ(DecodeBase64("").value(), "");
  EXPECT_EQ(DecodeBase64("YQ==").value(), "a");
  EXPECT_EQ(DecodeBase64("YWI=").value(), "ab");
  EXPECT_FALSE(DecodeBase64("YQ").ok());        // no padding
  EXPECT_FALSE(DecodeBase64("YR==").ok());      // non-zero padding bits
  EXPECT_FALSE(DecodeBase64("Y Q==").ok());     // whitespace
  EXPECT_FALSE(DecodeBase64("=YQ=").ok());      // padding in front
  EXPECT_FALSE(DecodeBase64("YQ==YQ==").ok());  // padding in the middle
  for (const std::string& s :
       std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    EXPECT_EQ(DecodeBase64(EncodeBase64(s)).value(), s);
  }
}

}  // namespace
}  // namespace mailgrid::imap
