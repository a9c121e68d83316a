#include "libs/sieve/match.h"

#include <cstdint>
#include <vector>

namespace mailgrid::sieve::internal {
namespace {

char Fold(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool Same(Comparator comparator, char a, char b) {
  return comparator == Comparator::kOctet ? a == b : Fold(a) == Fold(b);
}

bool Equal(Comparator comparator, std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!Same(comparator, a[i], b[i])) return false;
  }
  return true;
}

bool Contains(Comparator comparator, std::string_view key, std::string_view value) {
  if (key.empty()) return true;
  if (key.size() > value.size()) return false;
  for (size_t start = 0; start + key.size() <= value.size(); ++start) {
    if (Equal(comparator, key, value.substr(start, key.size()))) return true;
  }
  return false;
}

// Bytes of the character starting at value[i]: 1 under i;octet, the UTF-8
// sequence length (a stray continuation byte counts alone) otherwise.
size_t CharLength(Comparator comparator, std::string_view value, size_t i) {
  if (comparator == Comparator::kOctet) return 1;
  size_t n = 1;
  while (i + n < value.size() && (static_cast<unsigned char>(value[i + n]) & 0xC0) == 0x80) ++n;
  return n;
}

struct PatternItem {
  enum class Kind : uint8_t { kLiteral, kOne, kMany };
  Kind kind;
  char c;
};

std::vector<PatternItem> CompilePattern(std::string_view key) {
  std::vector<PatternItem> out;
  out.reserve(key.size());
  for (size_t i = 0; i < key.size(); ++i) {
    char c = key[i];
    if (c == '\\' && i + 1 < key.size()) {
      out.push_back({PatternItem::Kind::kLiteral, key[++i]});
    } else if (c == '*') {
      // Runs of '*' are one '*'.
      if (out.empty() || out.back().kind != PatternItem::Kind::kMany) {
        out.push_back({PatternItem::Kind::kMany, 0});
      }
    } else if (c == '?') {
      out.push_back({PatternItem::Kind::kOne, 0});
    } else {
      out.push_back({PatternItem::Kind::kLiteral, c});
    }
  }
  return out;
}

// The classic wildcard walk: on a mismatch, go back to the last '*' and let
// it swallow one more character. A single backtrack point suffices for '*'
// and '?' patterns, which keeps it O(pattern × value).
bool Wildcard(Comparator comparator, std::string_view key, std::string_view value) {
  std::vector<PatternItem> pattern = CompilePattern(key);
  size_t p = 0, v = 0;
  size_t star_p = SIZE_MAX, star_v = 0;
  while (v < value.size()) {
    if (p < pattern.size()) {
      const PatternItem& item = pattern[p];
      if (item.kind == PatternItem::Kind::kMany) {
        star_p = p++;
        star_v = v;
        continue;
      }
      if (item.kind == PatternItem::Kind::kOne) {
        v += CharLength(comparator, value, v);
        ++p;
        continue;
      }
      if (Same(comparator, item.c, value[v])) {
        ++v;
        ++p;
        continue;
      }
    }
    if (star_p == SIZE_MAX) return false;
    p = star_p + 1;
    star_v += CharLength(comparator, value, star_v);
    v = star_v;
  }
  while (p < pattern.size() && pattern[p].kind == PatternItem::Kind::kMany) ++p;
  return p == pattern.size();
}

}  // namespace

bool MatchOne(Comparator comparator, MatchType type, std::string_view key, std::string_view value) {
  switch (type) {
    case MatchType::kIs:
      return Equal(comparator, key, value);
    case MatchType::kContains:
      return Contains(comparator, key, value);
    case MatchType::kMatches:
      return Wildcard(comparator, key, value);
  }
  return false;
}

bool MatchAny(const Match& match, std::string_view value) {
  for (const std::string& key : match.keys) {
    if (MatchOne(match.comparator, match.type, key, value)) return true;
  }
  return false;
}

}  // namespace mailgrid::sieve::internal
