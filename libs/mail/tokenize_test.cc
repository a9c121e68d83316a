#include "libs/mail/tokenize.h"

#include <algorithm>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace mailgrid::mail {
namespace {

using Tokens = std::vector<std::string>;

bool Contains(const Tokens& haystack, const Tokens& needles) {
  return std::all_of(needles.begin(), needles.end(), [&](const std::string& n) {
    return std::find(haystack.begin(), haystack.end(), n) != haystack.end();
  });
}

TEST(TokenizeTest, Words) {
  EXPECT_EQ(Tokenize("Hello, World! Q3-report v2.0 don't"),
            (Tokens{"hello", "world", "q3", "report", "v2", "0", "don", "t"}));
  EXPECT_EQ(Tokenize(""), Tokens{});
  EXPECT_EQ(Tokenize("  ,,, "), Tokens{});
}

TEST(TokenizeTest, CaseFolding) {
  EXPECT_EQ(Tokenize("ÉCOLE Straße ÅNGSTRÖM"), (Tokens{"école", "straße", "ångström"}));
  EXPECT_EQ(Tokenize("ŁÓDŹ İstanbul"), (Tokens{"łódź", "istanbul"}));
  EXPECT_EQ(Tokenize("ΟΔΥΣΣΕΥΣ ΑΘΗΝΑ"), (Tokens{"οδυσσευσ", "αθηνα"}));
  EXPECT_EQ(Tokenize("Άλφα όδυσσευς"), (Tokens{"άλφα", "όδυσσευσ"}));  // final sigma folded
  EXPECT_EQ(Tokenize("ПРИВЕТ Ёлка ЄҐ"), (Tokens{"привет", "ёлка", "єґ"}));
  EXPECT_EQ(Tokenize("TIẾNG VIỆT"), (Tokens{"tiếng", "việt"}));
  EXPECT_EQ(Tokenize("ＡＢＣ１２３"), (Tokens{"abc123"}));  // fullwidth ASCII
}

// ASCII runs take a faster path than other text: words that cross from
// ASCII to other letters and back, upper case, cuts and runs after a cut
// must come out as they would letter by letter.
TEST(TokenizeTest, AsciiRunsInsideOtherText) {
  EXPECT_EQ(Tokenize("caféBAR Ünïcode ÀbC naïve"), (Tokens{"cafébar", "ünïcode", "àbc", "naïve"}));
  EXPECT_EQ(Tokenize("abcＤＥＦghi ＸＹz"), (Tokens{"abcdefghi", "xyz"}));
  EXPECT_EQ(Tokenize("合同Email地址OK"), (Tokens{"合同", "email", "地址", "ok"}));
  EXPECT_EQ(Tokenize(std::string(80, 'Q') + " " + std::string(64, 'q')),
            (Tokens{std::string(64, 'q'), std::string(64, 'q')}));
  TokenizeOptions o;
  o.max_token_bytes = 3;
  EXPECT_EQ(Tokenize("abcdé xyé abé éab ΣΣx", o), (Tokens{"abc", "xy", "ab", "éa", "σ"}));
  o.max_token_bytes = 1;
  EXPECT_EQ(Tokenize("Σx İgg x", o), (Tokens{"i", "x"}));  // a cut word skips its ASCII rest
}

TEST(TokenizeTest, CjkBigrams) {
  EXPECT_EQ(Tokenize("签订合同书"), (Tokens{"签订", "订合", "合同", "同书"}));
  EXPECT_EQ(Tokenize("合"), (Tokens{"合"}));
  EXPECT_EQ(Tokenize("合同"), (Tokens{"合同"}));
  // Punctuation ends a run; Latin words stay words.
  EXPECT_EQ(Tokenize("合同已签订，请查收。Email地址"),
            (Tokens{"合同", "同已", "已签", "签订", "请查", "查收", "email", "地址"}));
  EXPECT_EQ(Tokenize("会議はカタカナ"), (Tokens{"会議", "議は", "はカ", "カタ", "タカ", "カナ"}));
  EXPECT_EQ(Tokenize("한국어 공부"), (Tokens{"한국", "국어", "공부"}));
}

TEST(TokenizeTest, QueryFindsTheBody) {
  Tokens body = Tokenize("合同已签订，请查收。\r\n签订合同书的原件在财务部。");
  EXPECT_TRUE(Contains(body, Tokenize("合同")));
  EXPECT_TRUE(Contains(body, Tokenize("财务部")));
  EXPECT_TRUE(Contains(body, Tokenize("合同书")));
  EXPECT_FALSE(Contains(body, Tokenize("同意")));
  Tokens latin = Tokenize("Quarterly CONTRACT review");
  EXPECT_TRUE(Contains(latin, Tokenize("contract")));
}

TEST(TokenizeTest, InvalidUtf8AndControls) {
  EXPECT_EQ(Tokenize("ab\xFF"
                     "cd\xC3"
                     "ef\0gh"),
            (Tokens{"ab", "cd", "ef"}));
  EXPECT_EQ(Tokenize(std::string("ab\0cd", 5)), (Tokens{"ab", "cd"}));
  EXPECT_EQ(Tokenize("a\xE5\x90"
                     "b"),
            (Tokens{"a", "b"}));  // truncated 合
  EXPECT_EQ(Tokenize("mail😀box"), (Tokens{"mail", "box"}));
}

TEST(TokenizeTest, Limits) {
  TokenizeOptions o;
  o.max_token_bytes = 4;
  EXPECT_EQ(Tokenize("abcdefgh xyz ééé", o), (Tokens{"abcd", "xyz", "éé"}));
  o.max_tokens = 2;
  EXPECT_EQ(Tokenize("one two three 合同书", o), (Tokens{"one", "two"}));
  std::vector<std::string> seen;
  ForEachToken("a b", [&](std::string_view t) { seen.emplace_back(t); });
  EXPECT_EQ(seen, (Tokens{"a", "b"}));
}

TEST(TokenizeTest, Classes) {
  EXPECT_EQ(Classify(U'a'), CharClass::kWord);
  EXPECT_EQ(Classify(U'-'), CharClass::kSeparator);
  EXPECT_EQ(Classify(U'合'), CharClass::kCjk);
  EXPECT_EQ(Classify(U'〇'), CharClass::kCjk);
  EXPECT_EQ(Classify(U'　'), CharClass::kSeparator);  // ideographic space
  EXPECT_EQ(Classify(U'，'), CharClass::kSeparator);
  EXPECT_EQ(Classify(0x20000), CharClass::kCjk);
  EXPECT_EQ(FoldCase(U'Ж'), U'ж');
  EXPECT_EQ(FoldCase(U'ж'), U'ж');
  EXPECT_EQ(FoldCase(U'Ÿ'), U'ÿ');
}

}  // namespace
}  // namespace mailgrid::mail
