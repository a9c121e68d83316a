#include "libs/imap/sequence_set.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/imap/datetime.h"

namespace mailgrid::imap {
namespace {

SequenceSet P(std::string_view s) {
  auto r = SequenceSet::Parse(s, 100000);
  EXPECT_TRUE(r.ok()) << s << ": " << r.status();
  return r.ok() ? *r : SequenceSet();
}

std::string Norm(std::string_view s, uint32_t max) {
  return SequenceSet::Of(P(s).Normalize(max)).ToString();
}

TEST(SequenceSet, Parses) {
  EXPECT_EQ(P("1").ranges(), (std::vector<SeqRange>{{1, 1}}));
  EXPECT_EQ(P("1:4,7,9:*").ranges(), (std::vector<SeqRange>{{1, 4}, {7, 7}, {9, kSeqStar}}));
  EXPECT_EQ(P("*:3").ranges(), (std::vector<SeqRange>{{kSeqStar, 3}}));
  EXPECT_EQ(P("4294967295").ranges(), (std::vector<SeqRange>{{4294967295u, 4294967295u}}));
  EXPECT_TRUE(P("$").saved_result());
  EXPECT_EQ(P("1:4,7,9:*").ToString(), "1:4,7,9:*");
  EXPECT_TRUE(P("2:*").has_star());
  EXPECT_EQ(P("5,2:900").max_explicit(), 900u);
}

TEST(SequenceSet, RejectsMalformed) {
  for (const char* s : {"", "0", "01", "1:", ":1", "1,,2", "1,", ",1", "1:2:3", "a", "-1",
                        "4294967296", "99999999999", "1 2", "$,1", "**"}) {
    EXPECT_FALSE(SequenceSet::Parse(s, 1000).ok()) << s;
  }
  EXPECT_FALSE(SequenceSet::Parse("$", 1000, /*allow_saved=*/false).ok());
}

TEST(SequenceSet, RangeLimit) {
  EXPECT_TRUE(SequenceSet::Parse("1,2,3", 3).ok());
  auto r = SequenceSet::Parse("1,2,3,4", 3);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("[LIMIT]"), std::string::npos);
}

TEST(SequenceSet, NormalizeResolvesStarOrdersClipsMerges) {
  EXPECT_EQ(Norm("1:*", 1000000), "1:1000000");
  EXPECT_EQ(Norm("5:2", 10), "2:5");
  EXPECT_EQ(Norm("559:*", 100), "100");  // RFC 3501: "*" is always included
  EXPECT_EQ(Norm("3,1,2,7:9,8,20", 15), "1:3,7:9");
  EXPECT_EQ(Norm("1:5,3:10,11", 100), "1:11");
  EXPECT_EQ(Norm("4294967295,1", 4294967295u), "1,4294967295");
  EXPECT_EQ(Norm("*", 0), "");
  EXPECT_EQ(Norm("1:*", 0), "");
}

TEST(SequenceSet, CountContainsForEach) {
  const SequenceSet s = P("2:4,10:*,3");
  EXPECT_EQ(s.Count(12), 6u);  // 2,3,4,10,11,12
  EXPECT_TRUE(s.Contains(12, 12));
  EXPECT_TRUE(s.Contains(3, 12));
  EXPECT_FALSE(s.Contains(5, 12));
  EXPECT_FALSE(s.Contains(13, 12));
  std::vector<uint32_t> seen;
  s.ForEach(12, [&](uint32_t n) { seen.push_back(n); });
  EXPECT_EQ(seen, (std::vector<uint32_t>{2, 3, 4, 10, 11, 12}));
  EXPECT_EQ(P("1:*").Count(1000000), 1000000u);  // counted, not expanded
}

// 1,2,...,N (the 100k-item set) is linear to parse and collapses to
// one range; this checks the result, not the time (no timing in tests).
TEST(SequenceSet, LongListCollapses) {
  std::string text;
  for (int i = 1; i <= 100000; ++i) text += (i > 1 ? "," : "") + std::to_string(i);
  auto s = SequenceSet::Parse(text, 100000);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->ranges().size(), 100000u);
  EXPECT_EQ(SequenceSet::Of(s->Normalize(4000000)).ToString(), "1:100000");
  EXPECT_FALSE(SequenceSet::Parse(text, 16384).ok());
}

TEST(DateTime, ParsesAndFormats) {
  EXPECT_EQ(FormatDate(ParseDate("1-Feb-1994").value()), "1-Feb-1994");
  EXPECT_EQ(FormatDate(ParseDate("29-feb-2024").value()), "29-Feb-2024");
  EXPECT_FALSE(ParseDate("29-Feb-2023").ok());
  EXPECT_FALSE(ParseDate("31-Apr-2024").ok());
  EXPECT_FALSE(ParseDate("001-Feb-1994").ok());
  EXPECT_FALSE(ParseDate("1-Feb-94").ok());
  auto t = ParseDateTime("17-Jul-1996 02:44:25 -0700");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->zone_minutes, -420);
  EXPECT_EQ(FormatDateTime(*t), "17-Jul-1996 02:44:25 -0700");
  EXPECT_EQ(FormatDateTime(ParseDateTime(" 7-Feb-1994 21:52:25 +0530").value()),
            " 7-Feb-1994 21:52:25 +0530");
  EXPECT_TRUE(ParseDateTime("7-Feb-1994 21:52:25 +0000").ok());
  for (const char* bad :
       {"17-Jul-1996 24:00:00 +0000", "17-Jul-1996 02:44:25", "17-Jul-1996",
        "17-Jul-1996 02:44:25 0700", "17-Jul-1996  2:44:25 +0000", "17-Jul-1996 02:44:25 +0760"}) {
    EXPECT_FALSE(ParseDateTime(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace mailgrid::imap
