#include "libs/mail/rfc2047.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "libs/mail/ascii.h"
#include "libs/mail/charset.h"
#include "libs/mail/decode.h"
#include "libs/mail/header.h"
#include "libs/mail/lexer.h"

namespace mailgrid::mail {
namespace {

constexpr size_t kMaxCharsetLabel = 64;
constexpr size_t kMaxEncodedWordPayload = 45;  // bytes: 60 base64 chars, a 72-char word

bool AllLwsp(std::string_view s) { return std::all_of(s.begin(), s.end(), ascii::IsLwsp); }

struct EncodedWord {
  std::string charset;  // canonical
  std::string label;    // as written, RFC 2231 language removed
  std::string bytes;    // decoded payload
  size_t end = 0;       // just past "?="
};

std::string DecodeQ(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '_') {
      out.push_back(' ');
    } else if (int byte = c == '=' ? ascii::HexPair(text, i) : -1; byte >= 0) {
      out.push_back(static_cast<char>(byte));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Parses "=?charset[*lang]?B|Q?text?=" at value[at].
std::optional<EncodedWord> ParseEncodedWord(std::string_view value, size_t at) {
  size_t p = at + 2;
  size_t q = value.find('?', p);
  if (q == std::string_view::npos || q == p || q - p > kMaxCharsetLabel) return std::nullopt;
  std::string_view label = value.substr(p, q - p);
  for (char c : label) {
    // ASCII only: a word kept as written when its charset is unknown must
    // still be valid UTF-8.
    if (!IsMimeTokenChar(c) || static_cast<unsigned char>(c) >= 0x80) return std::nullopt;
  }
  if (size_t star = label.find('*'); star != std::string_view::npos) label = label.substr(0, star);
  if (q + 2 >= value.size() || value[q + 2] != '?') return std::nullopt;
  char enc = value[q + 1];
  if (enc != 'B' && enc != 'b' && enc != 'Q' && enc != 'q') return std::nullopt;
  size_t t = q + 3;
  size_t e = t;
  while (e < value.size() && value[e] != '?') {
    auto u = static_cast<unsigned char>(value[e]);
    if (u <= 32 || u >= 127) return std::nullopt;
    ++e;
  }
  if (e + 1 >= value.size() || value[e + 1] != '=') return std::nullopt;
  EncodedWord word;
  word.label = std::string(label);
  word.charset = CanonicalCharset(label);
  std::string_view text = value.substr(t, e - t);
  word.bytes = (enc == 'B' || enc == 'b') ? DecodeBase64(text) : DecodeQ(text);
  word.end = e + 2;
  return word;
}

class TextDecoder {
 public:
  TextDecoder(std::string_view value, const DecodeOptions& options)
      : value_(value), options_(options) {}

  DecodedText Run() {
    size_t literal_start = 0;
    size_t i = 0;
    while ((i = value_.find("=?", i)) != std::string_view::npos) {
      std::optional<EncodedWord> word = ParseEncodedWord(value_, i);
      if (!word) {
        ++i;
        continue;
      }
      std::string_view literal = value_.substr(literal_start, i - literal_start);
      if (!(pending_ && AllLwsp(literal))) {
        Flush();
        Literal(literal);
      }
      if (pending_ && word->charset != pending_charset_) Flush();
      if (!pending_) {
        pending_ = true;
        pending_charset_ = word->charset;
        pending_raw_start_ = i;
        pending_bytes_.clear();
      }
      pending_bytes_ += word->bytes;
      pending_raw_end_ = word->end;
      literal_start = i = word->end;
    }
    Flush();
    Literal(value_.substr(literal_start));
    ascii::ReplaceControls(&out_.text);
    return std::move(out_);
  }

 private:
  void Literal(std::string_view text) {
    if (text.empty()) return;
    out_.text += BytesToUtf8(text, options_.fallback_charset, &out_.lossy);
  }

  void Flush() {
    if (!pending_) return;
    pending_ = false;
    std::optional<std::string> utf8;
    if (!pending_charset_.empty())
      utf8 = ConvertToUtf8(pending_bytes_, pending_charset_, &out_.lossy);
    if (utf8) {
      out_.text += *utf8;
    } else {
      // Unknown charset: the words as written are ASCII and honest.
      out_.unknown_charset = true;
      out_.text.append(value_.substr(pending_raw_start_, pending_raw_end_ - pending_raw_start_));
    }
  }

  std::string_view value_;
  const DecodeOptions& options_;
  DecodedText out_;
  bool pending_ = false;
  std::string pending_charset_;
  std::string pending_bytes_;
  size_t pending_raw_start_ = 0;
  size_t pending_raw_end_ = 0;
};

}  // namespace

DecodedText DecodeHeaderText(std::string_view value, const DecodeOptions& options) {
  return TextDecoder(value, options).Run();
}

std::string DecodeHeader(std::string_view value) { return DecodeHeaderText(value).text; }

// ---- encoding ----
namespace {

std::string CleanInput(std::string_view utf8) {
  std::string s = SanitizeUtf8(utf8);
  for (char& c : s) {
    if (c == '\r' || c == '\n' || c == '\0' || c == '\t') c = ' ';
  }
  return s;
}

bool IsPrintableAscii(std::string_view word) {
  return std::all_of(word.begin(), word.end(), [](char c) { return c > 32 && c < 127; });
}

// Cuts UTF-8 into pieces of at most kMaxEncodedWordPayload bytes on code
// point boundaries and B-encodes each as one encoded-word.
std::string EncodeWords(std::string_view utf8) {
  std::string out;
  size_t i = 0;
  while (i < utf8.size()) {
    size_t n = std::min(kMaxEncodedWordPayload, utf8.size() - i);
    while (i + n < utf8.size() && n > 1 &&
           (static_cast<unsigned char>(utf8[i + n]) & 0xC0) == 0x80) {
      --n;
    }
    if (!out.empty()) out.push_back(' ');
    out += "=?UTF-8?B?" + EncodeBase64(utf8.substr(i, n)) + "?=";
    i += n;
  }
  return out;
}

std::vector<std::string_view> SplitSpaces(std::string_view s) {
  std::vector<std::string_view> words;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == ' ') {
      words.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return words;
}

}  // namespace

std::string EncodeHeaderText(std::string_view utf8) {
  std::string s = CleanInput(utf8);
  std::vector<std::string_view> words = SplitSpaces(s);
  auto needs = [](std::string_view w) {
    return !IsPrintableAscii(w) || w.find("=?") != std::string_view::npos;
  };
  std::string out;
  for (size_t i = 0; i < words.size();) {
    if (i > 0) out.push_back(' ');
    if (words[i].empty() || !needs(words[i])) {
      out.append(words[i]);
      ++i;
      continue;
    }
    // A run of words needing encoding, the spaces between (and after) them
    // inside it: white space between two encoded-words is lost in decoding.
    size_t j = i + 1;
    while (j < words.size() && (words[j].empty() || needs(words[j]))) ++j;
    std::string_view run(words[i].data(),
                         words[j - 1].data() + words[j - 1].size() - words[i].data());
    out += EncodeWords(run);
    i = j;
  }
  return out;
}

std::string EncodePhrase(std::string_view utf8) {
  std::string s = CleanInput(utf8);
  if (s.empty()) return s;
  bool ascii = std::all_of(s.begin(), s.end(), [](char c) { return c >= 32 && c < 127; });
  if (!ascii || s.find("=?") != std::string::npos) return EncodeWords(s);
  bool atoms = std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || IsAtext(c); });
  if (atoms && !s.empty() && s.front() != ' ' && s.back() != ' ') return s;
  std::string quoted = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') quoted.push_back('\\');
    quoted.push_back(c);
  }
  quoted.push_back('"');
  return quoted;
}

std::string FoldHeaderField(std::string_view name, std::string_view value) {
  constexpr size_t kWidth = 78;
  std::string clean(value);
  for (char& c : clean) {
    if (c == '\r' || c == '\n' || c == '\0') c = ' ';
  }
  std::string out(name);
  out += ":";
  size_t line_len = out.size();
  size_t words_on_line = 0;
  for (std::string_view word : SplitSpaces(clean)) {
    if (words_on_line > 0 && !word.empty() && line_len + 1 + word.size() > kWidth) {
      out += "\r\n";
      line_len = 0;
      words_on_line = 0;
    }
    out.push_back(' ');
    out.append(word);
    line_len += 1 + word.size();
    ++words_on_line;
  }
  out += "\r\n";
  return out;
}

}  // namespace mailgrid::mail
