#include "libs/mail/header.h"

#include <string>

#include "gtest/gtest.h"

namespace mailgrid::mail {
namespace {

TEST(HeaderTest, FieldsWithExactRanges) {
  std::string raw =
      "Subject: hello\r\n"
      "To: a@example.com,\r\n"
      "\tb@example.com\r\n"
      "\r\n"
      "body\r\n";
  Header h = ParseHeaderLenient(raw);
  ASSERT_EQ(h.fields.size(), 2u);
  EXPECT_FALSE(h.missing_blank_line);
  EXPECT_EQ(h.block, (ByteRange{0, 54}));
  EXPECT_EQ(h.block.In(raw), raw.substr(0, raw.find("body")));

  const HeaderField& subject = h.fields[0];
  EXPECT_EQ(subject.name, "Subject");
  EXPECT_EQ(subject.line.In(raw), "Subject: hello\r\n");
  EXPECT_EQ(subject.raw_value.In(raw), " hello");
  EXPECT_EQ(subject.value, "hello");

  const HeaderField& to = h.fields[1];
  EXPECT_EQ(to.line.In(raw), "To: a@example.com,\r\n\tb@example.com\r\n");
  EXPECT_EQ(to.raw_value.In(raw), " a@example.com,\r\n\tb@example.com");
  EXPECT_EQ(to.value, "a@example.com,\tb@example.com");
}

TEST(HeaderTest, BareLfAndObsoleteSpaceBeforeColon) {
  std::string raw = "Subject : old style\nX-Folded: one\n  two\n\nbody";
  Header h = ParseHeaderLenient(raw);
  ASSERT_EQ(h.fields.size(), 2u);
  EXPECT_EQ(h.fields[0].name, "Subject");
  EXPECT_EQ(h.fields[0].value, "old style");
  EXPECT_EQ(h.fields[1].value, "one  two");
  EXPECT_EQ(h.fields[1].line.In(raw), "X-Folded: one\n  two\n");
  EXPECT_EQ(h.block.end(), raw.find("body"));
}

TEST(HeaderTest, MboxSeparatorIsMalformed) {
  // Its colons are in the time; the "name" before the first one has spaces.
  std::string raw = "From nobody Mon Jan  1 00:00:00 2024\r\nSubject: ok\r\n\r\n";
  Header h = ParseHeaderLenient(raw);
  ASSERT_EQ(h.fields.size(), 1u);
  EXPECT_EQ(h.fields[0].name, "Subject");
  ASSERT_EQ(h.malformed.size(), 1u);
  EXPECT_EQ(h.malformed[0], (ByteRange{0, 38}));
}

TEST(HeaderTest, NamesWithSpacesAreMalformed) {
  std::string raw =
      "Subject: ok\r\n"
      "this line has no colon\r\n"
      " and a continuation of it\r\n"
      "Bad Name: x\r\n"
      ": empty name\r\n"
      "To: b@example.com\r\n"
      "\r\n";
  Header h = ParseHeaderLenient(raw);
  ASSERT_EQ(h.fields.size(), 2u);
  EXPECT_EQ(h.fields[0].name, "Subject");
  EXPECT_EQ(h.fields[1].name, "To");
  ASSERT_EQ(h.malformed.size(), 3u);
  EXPECT_EQ(h.malformed[0].In(raw), "this line has no colon\r\n and a continuation of it\r\n");
  EXPECT_EQ(h.malformed[1].In(raw), "Bad Name: x\r\n");
  EXPECT_EQ(h.malformed[2].In(raw), ": empty name\r\n");
}

TEST(HeaderTest, NulBytesAreKept) {
  std::string raw = std::string("Subject: a\0b\r\n\r\n", 16);
  Header h = ParseHeaderLenient(raw);
  ASSERT_EQ(h.fields.size(), 1u);
  EXPECT_TRUE(h.has_nul);
  EXPECT_EQ(h.fields[0].value, std::string("a\0b", 3));
}

TEST(HeaderTest, NoBlankLine) {
  std::string raw = "Subject: cut";
  Header h = ParseHeaderLenient(raw);
  EXPECT_TRUE(h.missing_blank_line);
  EXPECT_EQ(h.block, (ByteRange{0, raw.size()}));
  ASSERT_EQ(h.fields.size(), 1u);
  EXPECT_EQ(h.fields[0].value, "cut");
  EXPECT_EQ(h.fields[0].line.In(raw), "Subject: cut");
}

TEST(HeaderTest, EmptyHeader) {
  Header h = ParseHeaderLenient("\r\nbody");
  EXPECT_FALSE(h.missing_blank_line);
  EXPECT_EQ(h.block, (ByteRange{0, 2}));
  EXPECT_TRUE(h.fields.empty());
}

TEST(HeaderTest, BaseOffsetsIntoALargerMessage) {
  std::string raw = "XXXXSubject: s\r\n\r\n";
  Header h = ParseHeaderLenient(std::string_view(raw).substr(4), {}, 4);
  ASSERT_EQ(h.fields.size(), 1u);
  EXPECT_EQ(h.fields[0].line.In(raw), "Subject: s\r\n");
  EXPECT_EQ(h.block, (ByteRange{4, raw.size() - 4}));
}

TEST(HeaderTest, CaseInsensitiveLookup) {
  Header h = ParseHeaderLenient("received: a\r\nRECEIVED: b\r\nSubject: s\r\n\r\n");
  ASSERT_NE(h.First("Received"), nullptr);
  EXPECT_EQ(h.First("Received")->value, "a");
  EXPECT_EQ(h.All("received").size(), 2u);
  EXPECT_EQ(h.Value("SUBJECT"), "s");
  EXPECT_EQ(h.Value("Cc"), std::nullopt);
}

TEST(HeaderTest, LineLimit) {
  std::string big(1024 * 1024, 'x');
  std::string raw = "Subject: ok\r\nX-Big: " + big + "\r\nTo: after@example.com\r\n\r\nbody";
  HeaderLimits limits;  // 64 KiB lines
  Header h = ParseHeaderLenient(raw, limits);
  EXPECT_EQ(h.overflow, HeaderOverflow::kLineBytes);
  EXPECT_EQ(h.overflow_line, 2u);
  ASSERT_EQ(h.fields.size(), 1u);  // fields after the violation are not collected
  EXPECT_EQ(h.fields[0].name, "Subject");
  EXPECT_EQ(h.block.end(), raw.find("body"));  // but the end is still found

  absl::StatusOr<Header> strict = ParseHeader(raw, limits);
  ASSERT_FALSE(strict.ok());
  EXPECT_EQ(strict.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(strict.status().message(), "header line 2 is longer than 65536 bytes");
}

TEST(HeaderTest, HeaderBytesAndFieldLimits) {
  std::string raw;
  for (int i = 0; i < 10; ++i) raw += "X-N: " + std::to_string(i) + "\r\n";
  raw += "\r\n";
  HeaderLimits few;
  few.max_fields = 4;
  Header h = ParseHeaderLenient(raw, few);
  EXPECT_EQ(h.overflow, HeaderOverflow::kFields);
  EXPECT_EQ(h.fields.size(), 4u);
  EXPECT_EQ(h.fields[3].value, "3");
  EXPECT_EQ(DescribeOverflow(h, few), "header has more than 4 fields (at line 5)");

  HeaderLimits small;
  small.max_header_bytes = 20;  // the third line ends past byte 20
  Header s = ParseHeaderLenient(raw, small);
  EXPECT_EQ(s.overflow, HeaderOverflow::kHeaderBytes);
  EXPECT_EQ(s.fields.size(), 2u);
  EXPECT_EQ(s.block.end(), raw.size());
}

TEST(HeaderTest, FieldCutByLimitIsDroppedWhole) {
  std::string raw = "To: a@example.com,\r\n b@example.com,\r\n c@example.com\r\n\r\n";
  HeaderLimits small;
  small.max_header_bytes = 40;  // the second line of To ends at byte 37, the third past 40
  Header h = ParseHeaderLenient(raw, small);
  EXPECT_EQ(h.overflow, HeaderOverflow::kHeaderBytes);
  EXPECT_TRUE(h.fields.empty());
}

TEST(HeaderTest, UnfoldAndCrlf) {
  EXPECT_EQ(Unfold("  a\r\n b\n\tc  "), "a b\tc");
  EXPECT_EQ(ToCrlf("a\nb\r\nc\rd\n"), "a\r\nb\r\nc\rd\r\n");
  EXPECT_TRUE(IsValidFieldName("X-Mailer"));
  EXPECT_FALSE(IsValidFieldName("X Mailer"));
  EXPECT_FALSE(IsValidFieldName("X\xC3\xA9"));
  EXPECT_FALSE(IsValidFieldName(""));
}

}  // namespace
}  // namespace mailgrid::mail
