#include "libs/smtp/data_reader.h"

#include <string>

#include "gtest/gtest.h"

namespace mailgrid::smtp {
namespace {

struct Result {
  bool done = false;
  size_t consumed = 0;
  std::string message;
  bool bare_cr = false, bare_lf = false, too_big = false;
};

Result Read(std::string_view input, uint64_t max = 0, size_t piece = 0) {
  DotReader r(max);
  Result out;
  if (piece == 0) piece = input.size() + 1;
  for (size_t off = 0; off < input.size() && !r.done(); off += piece) {
    std::string_view chunk = input.substr(off, piece);
    size_t n = r.Consume(chunk);
    out.consumed += n;
    if (n < chunk.size()) break;
  }
  out.done = r.done();
  out.bare_cr = r.bare_cr();
  out.bare_lf = r.bare_lf();
  out.too_big = r.too_big();
  out.message = r.TakeMessage();
  return out;
}

TEST(DotReaderTest, EndsOnlyAtCrLfDotCrLf) {
  Result r = Read("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.message, "Subject: x\r\n\r\nbody\r\n");
  EXPECT_EQ(r.consumed, std::string("Subject: x\r\n\r\nbody\r\n.\r\n").size());
}

TEST(DotReaderTest, EmptyMessage) {
  Result r = Read(".\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.message, "");
  EXPECT_EQ(r.consumed, 3u);
}

TEST(DotReaderTest, Unstuffing) {
  Result r = Read("..\r\n...x\r\n.y\r\n a.\r\n.\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.message, ".\r\n..x\r\ny\r\n a.\r\n");
  EXPECT_FALSE(r.bare_cr || r.bare_lf);
}

TEST(DotReaderTest, SmugglingSequencesNeverEndData) {
  for (std::string_view fake : {"\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\n", "\r\n.\r\r\n"}) {
    std::string input = "a" + std::string(fake) + "MAIL FROM:<evil@x.test>\r\n";
    Result r = Read(input);
    EXPECT_FALSE(r.done) << "fake end " << testing::PrintToString(std::string(fake));
    EXPECT_EQ(r.consumed, input.size());
    EXPECT_TRUE(r.bare_cr || r.bare_lf);
    // The real end still ends it; the message is flagged and not stored.
    DotReader d(0);
    d.Consume(input);
    EXPECT_EQ(d.Consume("\r\n.\r\n"), 5u);
    EXPECT_TRUE(d.done());
    EXPECT_TRUE(d.failed());
    EXPECT_EQ(d.TakeMessage(), "");
  }
}

TEST(DotReaderTest, BareLfAtStartIsNotALineStart) {
  // The data begins at a line start; a bare LF there must not create one.
  Result r = Read("\n.\r\n");
  EXPECT_FALSE(r.done);
  EXPECT_TRUE(r.bare_lf);
}

TEST(DotReaderTest, SizeLimit) {
  Result ok = Read("12345678\r\n.\r\n", 10);
  EXPECT_TRUE(ok.done);
  EXPECT_FALSE(ok.too_big);
  Result big = Read("123456789\r\n.\r\n", 10);
  EXPECT_TRUE(big.done);
  EXPECT_TRUE(big.too_big);
  EXPECT_EQ(big.message, "");
}

TEST(DotReaderTest, SplitAnywhereGivesSameResult) {
  std::string input = "a\r\n..b\r\n\r\n.\r\nrest";
  Result whole = Read(input);
  for (size_t piece = 1; piece < input.size(); ++piece) {
    Result r = Read(input, 0, piece);
    EXPECT_EQ(r.done, whole.done) << piece;
    EXPECT_EQ(r.message, whole.message) << piece;
    EXPECT_EQ(r.consumed, whole.consumed) << piece;
  }
}

// Complete CRLF lines are copied whole, partial ones byte by byte: both
// must agree on the message, the end and the bare CR/LF flags, whatever
// the read size.
TEST(DotReaderTest, WholeLinesAndPiecesAgree) {
  std::string lines;
  for (int i = 0; i < 20; ++i) lines += std::string(70, static_cast<char>('a' + i)) + "\r\n";
  for (std::string_view odd : {"", "x\ry\r\n", "x\ny\r\n", "\r\r\n", ".\r\r\n"}) {
    std::string input = lines + std::string(odd) + "..z\r\n.\r\nQUIT\r\n";
    Result whole = Read(input);
    EXPECT_TRUE(whole.done);
    EXPECT_EQ(whole.bare_cr || whole.bare_lf, !odd.empty()) << testing::PrintToString(std::string(odd));
    if (odd.empty()) {
      EXPECT_EQ(whole.message, lines + ".z\r\n");
    }
    for (size_t piece : {1, 2, 3, 7, 71, 72, 73, 500}) {
      Result r = Read(input, 0, piece);
      EXPECT_EQ(r.done, whole.done) << piece;
      EXPECT_EQ(r.message, whole.message) << piece;
      EXPECT_EQ(r.consumed, whole.consumed) << piece;
      EXPECT_EQ(r.bare_cr, whole.bare_cr) << piece;
      EXPECT_EQ(r.bare_lf, whole.bare_lf) << piece;
    }
  }
}

TEST(DotReaderTest, BinaryContentPassesThrough) {
  std::string body("a\0b\xff\r\n", 6);
  Result r = Read(body + ".\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.message, body);
}

}  // namespace
}  // namespace mailgrid::smtp
