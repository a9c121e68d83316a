#include "libs/mail/charset.h"

#include <iconv.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace mailgrid::mail {
namespace {

constexpr size_t kMaxLabel = 40;
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

struct Alias {
  std::string_view label;
  std::string_view name;
};

// Labels whose real-world meaning is a superset charset, and common
// misspellings. Anything else is upper-cased and handed to iconv as is.
constexpr Alias kAliases[] = {
    {"UTF8", "UTF-8"},
    {"UNICODE-1-1-UTF-8", "UTF-8"},
    {"ASCII", "US-ASCII"},
    {"ANSI_X3.4-1968", "US-ASCII"},
    {"ISO-8859-1", "WINDOWS-1252"},
    {"ISO8859-1", "WINDOWS-1252"},
    {"ISO_8859-1", "WINDOWS-1252"},
    {"LATIN1", "WINDOWS-1252"},
    {"L1", "WINDOWS-1252"},
    {"CP1252", "WINDOWS-1252"},
    {"GB2312", "GB18030"},
    {"GB_2312-80", "GB18030"},
    {"CSGB2312", "GB18030"},
    {"EUC-CN", "GB18030"},
    {"GBK", "GB18030"},
    {"X-GBK", "GB18030"},
    {"CP936", "GB18030"},
    {"CHINESE", "GB18030"},
    {"BIG5", "BIG5-HKSCS"},
    {"X-X-BIG5", "BIG5-HKSCS"},
    {"CN-BIG5", "BIG5-HKSCS"},
    {"SHIFT_JIS", "CP932"},
    {"SHIFT-JIS", "CP932"},
    {"SJIS", "CP932"},
    {"X-SJIS", "CP932"},
    {"MS_KANJI", "CP932"},
    {"WINDOWS-31J", "CP932"},
    {"EUC-KR", "CP949"},
    {"KS_C_5601-1987", "CP949"},
    {"WINDOWS-949", "CP949"},
    {"ISO-8859-9", "WINDOWS-1254"},
    {"ISO-8859-11", "TIS-620"},
};

bool LabelChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == ':' || c == '+';
}

// iconv descriptors are costly to open and not shareable across threads:
// keep a few per thread, keyed by name.
class IconvCache {
 public:
  ~IconvCache() {
    for (auto& [name, cd] : entries_) iconv_close(cd);
  }
  // nullptr when iconv does not know the name.
  iconv_t Get(const std::string& name) {
    for (auto& [n, cd] : entries_) {
      if (n == name) {
        iconv(cd, nullptr, nullptr, nullptr, nullptr);  // reset shift state
        return cd;
      }
    }
    iconv_t cd = iconv_open("UTF-8", name.c_str());
    if (cd == reinterpret_cast<iconv_t>(-1)) return nullptr;
    if (entries_.size() >= 8) {
      iconv_close(entries_.front().second);
      entries_.erase(entries_.begin());
    }
    entries_.emplace_back(name, cd);
    return cd;
  }

 private:
  std::vector<std::pair<std::string, iconv_t>> entries_;
};

thread_local IconvCache cache;

std::string IconvConvert(iconv_t cd, std::string_view bytes, bool* lossy) {
  std::string out;
  out.resize(bytes.size() * 2 + 16);
  char* in = const_cast<char*>(bytes.data());
  size_t in_left = bytes.size();
  size_t used = 0;
  auto convert = [&](char** inp, size_t* inl) {
    for (;;) {
      char* outp = out.data() + used;
      size_t out_left = out.size() - used;
      size_t r = iconv(cd, inp, inl, &outp, &out_left);
      used = out.size() - out_left;
      if (r != static_cast<size_t>(-1)) return true;
      if (errno == E2BIG) {
        out.resize(out.size() * 2);
        continue;
      }
      if (inp == nullptr) return false;
      if (lossy != nullptr) *lossy = true;
      if (out.size() - used < 16) out.resize(out.size() * 2);
      out.replace(used, kReplacement.size(), kReplacement);
      used += kReplacement.size();
      if (errno == EILSEQ && *inl > 0) {  // skip one byte and go on
        ++*inp;
        --*inl;
        continue;
      }
      *inl = 0;  // EINVAL: truncated sequence at the end
      return true;
    }
  };
  convert(&in, &in_left);
  convert(nullptr, nullptr);  // flush a stateful encoding (ISO-2022-JP)
  out.resize(used);
  return out;
}

// Decodes one UTF-8 sequence at text[i]; returns its length, 0 if invalid.
size_t Utf8SequenceLength(std::string_view text, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(text[i + k]); };
  unsigned char c = b(0);
  if (c < 0x80) return 1;
  size_t len;
  char32_t min;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2, min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3, min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > text.size()) return 0;
  char32_t cp = c & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

bool IsAscii(std::string_view text) { return AsciiRunEnd(text, 0) == text.size(); }

}  // namespace

std::string CanonicalCharset(std::string_view label) {
  while (!label.empty() && (label.front() == ' ' || label.front() == '"')) label.remove_prefix(1);
  while (!label.empty() && (label.back() == ' ' || label.back() == '"')) label.remove_suffix(1);
  if (label.empty() || label.size() > kMaxLabel) return "";
  std::string upper;
  for (char c : label) {
    if (!LabelChar(c)) return "";
    upper.push_back((c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c);
  }
  for (const Alias& a : kAliases) {
    if (upper == a.label) return std::string(a.name);
  }
  return upper;
}

size_t AsciiRunEnd(std::string_view text, size_t from) {
  constexpr uint64_t kHighBits = 0x8080808080808080ull;
  size_t i = from;
  for (; i + 8 <= text.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, text.data() + i, 8);  // unaligned load, no aliasing trouble
    if ((word & kHighBits) != 0) break;
  }
  while (i < text.size() && static_cast<unsigned char>(text[i]) < 0x80) ++i;
  return i;
}

bool IsValidUtf8(std::string_view text) {
  for (size_t i = AsciiRunEnd(text, 0); i < text.size(); i = AsciiRunEnd(text, i)) {
    size_t n = Utf8SequenceLength(text, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string SanitizeUtf8(std::string_view text, bool* lossy) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (size_t end = AsciiRunEnd(text, i); end > i) {  // ASCII runs copied whole
      out.append(text.substr(i, end - i));
      i = end;
      continue;
    }
    size_t n = Utf8SequenceLength(text, i);
    if (n == 0) {
      out.append(kReplacement);
      if (lossy != nullptr) *lossy = true;
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::optional<std::string> ConvertToUtf8(std::string_view bytes, std::string_view charset,
                                         bool* lossy) {
  std::string name = CanonicalCharset(charset);
  if (name.empty()) return std::nullopt;
  if (name == "UTF-8") return SanitizeUtf8(bytes, lossy);
  if (IsAscii(bytes)) {
    // Every charset we accept is an ASCII superset except the 7-bit
    // stateful and UTF-16/32 families; those go through iconv.
    bool ascii_superset = name.rfind("ISO-2022", 0) != 0 && name.rfind("UTF-", 0) != 0 &&
                          name.rfind("UCS", 0) != 0 && name != "HZ" && name != "UNICODE";
    if (ascii_superset) {
      if (name == "US-ASCII" || cache.Get(name) != nullptr) return std::string(bytes);
      return std::nullopt;
    }
  }
  if (name == "US-ASCII") {
    if (IsValidUtf8(bytes)) return std::string(bytes);
    name = "WINDOWS-1252";
    if (lossy != nullptr) *lossy = true;
  }
  iconv_t cd = cache.Get(name);
  if (cd == nullptr) return std::nullopt;
  return IconvConvert(cd, bytes, lossy);
}

std::string BytesToUtf8(std::string_view bytes, std::string_view fallback_charset, bool* lossy) {
  if (IsValidUtf8(bytes)) return std::string(bytes);
  if (lossy != nullptr) *lossy = true;
  if (!fallback_charset.empty()) {
    if (std::optional<std::string> out = ConvertToUtf8(bytes, fallback_charset)) return *out;
  }
  return SanitizeUtf8(bytes);
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace mailgrid::mail
