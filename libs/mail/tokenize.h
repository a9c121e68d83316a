// Search tokenisation, the same for indexed text and for queries.
//
// Text is UTF-8 (invalid bytes are separators). Letters and digits form
// words, lower-cased (ASCII, Latin-1, Latin Extended-A, Latin Extended
// Additional (Vietnamese), Greek, Cyrillic); fullwidth ASCII is read as
// ASCII. Everything else that is not a letter or digit separates words.
// Han, Hiragana, Katakana and Hangul have no spaces between words, so a run
// of them is indexed as overlapping character bigrams, and a run of one
// character as that character: "签订合同书" gives 签订 订合 合同 同书, and the
// query "合同" gives 合同, which is among them. A one-character query ("合")
// matches only one-character runs; a caller wanting more can look it up as
// a prefix of bigrams.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace mailgrid::mail {

struct TokenizeOptions {
  size_t max_token_bytes = 64;  // longer words are cut (on a character boundary)
  size_t max_tokens = 0;        // 0: no limit
};

void ForEachToken(std::string_view utf8, const std::function<void(std::string_view)>& emit,
                  const TokenizeOptions& options = {});

std::vector<std::string> Tokenize(std::string_view utf8, const TokenizeOptions& options = {});

enum class CharClass : unsigned char { kSeparator, kWord, kCjk };
CharClass Classify(char32_t cp);

// Simple case folding of one code point (identity outside the scripts above).
char32_t FoldCase(char32_t cp);

}  // namespace mailgrid::mail
