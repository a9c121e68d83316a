#include "libs/mail/tokenize.h"

#include <iterator>

#include "libs/mail/charset.h"

namespace mailgrid::mail {
namespace {

struct Range {
  char32_t lo, hi;
};

bool InRanges(char32_t cp, const Range* ranges, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (cp >= ranges[i].lo && cp <= ranges[i].hi) return true;
  }
  return false;
}

constexpr Range kCjk[] = {
    {0x1100, 0x11FF},    // Hangul Jamo
    {0x2E80, 0x2FDF},    // CJK radicals, Kangxi radicals
    {0x3005, 0x3007},    // 々 〆 〇
    {0x3040, 0x30FF},    // Hiragana, Katakana
    {0x3100, 0x318F},    // Bopomofo, Hangul compatibility Jamo
    {0x31A0, 0x31BF},    // Bopomofo extended
    {0x31F0, 0x31FF},    // Katakana phonetic extensions
    {0x3400, 0x4DBF},    // CJK extension A
    {0x4E00, 0x9FFF},    // CJK unified ideographs
    {0xA960, 0xA97F},    // Hangul Jamo extended-A
    {0xAC00, 0xD7FF},    // Hangul syllables, Jamo extended-B
    {0xF900, 0xFAFF},    // CJK compatibility ideographs
    {0xFF66, 0xFF9F},    // halfwidth Katakana
    {0x20000, 0x3134F},  // CJK extensions B-G, compatibility supplement
};

// Punctuation, symbols, spaces and other non-word code points above ASCII.
constexpr Range kSeparators[] = {
    {0x0080, 0x00A9}, {0x00AB, 0x00B4},   {0x00B6, 0x00B9}, {0x00BB, 0x00BF}, {0x00D7, 0x00D7},
    {0x00F7, 0x00F7}, {0x02B0, 0x02FF},   {0x037E, 0x037E}, {0x0387, 0x0387}, {0x055A, 0x055F},
    {0x0589, 0x058A}, {0x05BE, 0x05BE},   {0x05C0, 0x05C0}, {0x05C3, 0x05C3}, {0x05F3, 0x05F4},
    {0x060C, 0x060D}, {0x061B, 0x061F},   {0x066A, 0x066D}, {0x06D4, 0x06D4}, {0x0964, 0x0965},
    {0x0E3F, 0x0E3F}, {0x0E4F, 0x0E4F},   {0x0E5A, 0x0E5B}, {0x2000, 0x2BFF}, {0x2E00, 0x2E7F},
    {0x3000, 0x3004}, {0x3008, 0x303F},   {0xD800, 0xF8FF}, {0xFE10, 0xFE1F}, {0xFE30, 0xFE6F},
    {0xFEFF, 0xFEFF}, {0xFF00, 0xFF0F},   {0xFF1A, 0xFF20}, {0xFF3B, 0xFF40}, {0xFF5B, 0xFF65},
    {0xFFE0, 0xFFFF}, {0x1F000, 0x1FAFF},
};

// Decodes one code point at text[*i] and advances; invalid bytes give
// U+FFFD (a separator) and advance by one.
char32_t NextCodePoint(std::string_view text, size_t* i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(text[*i + k]); };
  unsigned char c = b(0);
  if (c < 0x80) {
    ++*i;
    return c;
  }
  size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
  if (len == 0 || *i + len > text.size() || !IsValidUtf8(text.substr(*i, len))) {
    ++*i;
    return 0xFFFD;
  }
  char32_t cp = c & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (b(k) & 0x3F);
  *i += len;
  return cp;
}

bool EvenToNext(char32_t cp, char32_t lo, char32_t hi, char32_t* out) {
  if (cp < lo || cp > hi) return false;
  *out = ((cp - lo) % 2 == 0) ? cp + 1 : cp;
  return true;
}

// Emits bigrams of a CJK run (or the run itself when it is one character).
class CjkRun {
 public:
  void Add(char32_t cp) {
    starts_.push_back(utf8_.size());
    AppendUtf8(cp, &utf8_);
  }
  bool empty() const { return starts_.empty(); }
  template <typename Emit>
  void Flush(Emit&& emit) {
    if (starts_.size() == 1) {
      emit(std::string_view(utf8_));
    } else {
      for (size_t k = 0; k + 1 < starts_.size(); ++k) {
        size_t end = k + 2 < starts_.size() ? starts_[k + 2] : utf8_.size();
        emit(std::string_view(utf8_).substr(starts_[k], end - starts_[k]));
      }
    }
    utf8_.clear();
    starts_.clear();
  }

 private:
  std::string utf8_;
  std::vector<size_t> starts_;
};

}  // namespace

CharClass Classify(char32_t cp) {
  if (cp < 0x80) {
    bool alnum = (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9');
    return alnum ? CharClass::kWord : CharClass::kSeparator;
  }
  if (InRanges(cp, kCjk, std::size(kCjk))) return CharClass::kCjk;
  if (InRanges(cp, kSeparators, std::size(kSeparators))) return CharClass::kSeparator;
  return CharClass::kWord;
}

char32_t FoldCase(char32_t cp) {
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) return cp + 32;
  char32_t out;
  if (cp == 0x130) return 'i';
  if (cp == 0x178) return 0xFF;
  if (EvenToNext(cp, 0x100, 0x12F, &out) || EvenToNext(cp, 0x132, 0x137, &out) ||
      EvenToNext(cp, 0x14A, 0x177, &out)) {
    return out;
  }
  if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E))
    return (cp % 2 == 1) ? cp + 1 : cp;
  // Greek.
  if ((cp >= 0x391 && cp <= 0x3A1) || (cp >= 0x3A3 && cp <= 0x3AB)) return cp + 32;
  if (cp == 0x386) return 0x3AC;
  if (cp >= 0x388 && cp <= 0x38A) return cp + 37;
  if (cp == 0x38C) return 0x3CC;
  if (cp == 0x38E || cp == 0x38F) return cp + 63;
  if (cp == 0x3C2) return 0x3C3;  // final sigma folds to sigma
  // Cyrillic.
  if (cp >= 0x410 && cp <= 0x42F) return cp + 32;
  if (cp >= 0x400 && cp <= 0x40F) return cp + 80;
  if (cp == 0x4C0) return 0x4CF;
  if (cp >= 0x4C1 && cp <= 0x4CE) return (cp % 2 == 1) ? cp + 1 : cp;
  if (EvenToNext(cp, 0x460, 0x481, &out) || EvenToNext(cp, 0x48A, 0x4BF, &out) ||
      EvenToNext(cp, 0x4D0, 0x52F, &out)) {
    return out;
  }
  // Latin Extended Additional (Vietnamese).
  if (EvenToNext(cp, 0x1E00, 0x1E95, &out) || EvenToNext(cp, 0x1EA0, 0x1EFF, &out)) return out;
  return cp;
}

namespace {

bool IsAsciiAlnum(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool HasAsciiUpper(std::string_view s) {
  for (char c : s)
    if (c >= 'A' && c <= 'Z') return true;
  return false;
}

// Appends an ASCII word piece lower-cased, up to max_bytes in all; sets
// *full when some of it did not fit (the rest of the word is skipped, as
// for any other letter).
void AppendAsciiLower(std::string_view piece, size_t max_bytes, std::string* word, bool* full) {
  if (*full) return;
  size_t room = max_bytes > word->size() ? max_bytes - word->size() : 0;
  if (piece.size() > room) {
    piece = piece.substr(0, room);
    *full = true;
  }
  size_t at = word->size();
  word->append(piece);
  for (size_t k = at; k < word->size(); ++k) {
    char& c = (*word)[k];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
}

}  // namespace

void ForEachToken(std::string_view utf8, const std::function<void(std::string_view)>& emit,
                  const TokenizeOptions& options) {
  size_t count = 0;
  bool done = false;
  auto limited = [&](std::string_view token) {
    if (done) return;
    emit(token);
    if (options.max_tokens != 0 && ++count >= options.max_tokens) done = true;
  };
  std::string word;
  bool word_full = false;
  CjkRun cjk;
  auto flush_word = [&] {
    if (!word.empty()) limited(word);
    word.clear();
    word_full = false;
  };
  size_t i = 0;
  while (i < utf8.size() && !done) {
    if (static_cast<unsigned char>(utf8[i]) < 0x80) {
      // ASCII (most of any body): a whole run of letters and digits at a
      // time, without decoding, classifying and folding each character.
      if (!cjk.empty()) cjk.Flush(limited);
      size_t end = i;
      while (end < utf8.size() && IsAsciiAlnum(static_cast<unsigned char>(utf8[end]))) ++end;
      if (end == i) {  // an ASCII separator
        flush_word();
        ++i;
        continue;
      }
      std::string_view run = utf8.substr(i, end - i);
      i = end;
      bool word_ends = i == utf8.size() || static_cast<unsigned char>(utf8[i]) < 0x80;
      if (word.empty() && !word_full && word_ends && run.size() <= options.max_token_bytes &&
          !HasAsciiUpper(run)) {
        limited(run);  // already a token: no copy
        continue;
      }
      AppendAsciiLower(run, options.max_token_bytes, &word, &word_full);
      continue;
    }
    char32_t cp = NextCodePoint(utf8, &i);
    if (cp >= 0xFF01 && cp <= 0xFF5E) cp -= 0xFEE0;  // fullwidth ASCII
    CharClass cls = Classify(cp);
    if (cls != CharClass::kCjk && !cjk.empty()) cjk.Flush(limited);
    if (cls != CharClass::kWord) flush_word();
    if (cls == CharClass::kCjk) {
      cjk.Add(cp);
    } else if (cls == CharClass::kWord && !word_full) {
      size_t before = word.size();
      AppendUtf8(FoldCase(cp), &word);
      if (word.size() > options.max_token_bytes) {  // cut here, skip the rest of the word
        word.resize(before);
        word_full = true;
      }
    }
  }
  if (!cjk.empty()) cjk.Flush(limited);
  flush_word();
}

std::vector<std::string> Tokenize(std::string_view utf8, const TokenizeOptions& options) {
  std::vector<std::string> out;
  ForEachToken(
      utf8, [&](std::string_view t) { out.emplace_back(t); }, options);
  return out;
}

}  // namespace mailgrid::mail
