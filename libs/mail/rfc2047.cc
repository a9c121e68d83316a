#include "libs/mail/rfc2047.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "libs/mail/charset.h"
#include "libs/mail/decode.h"
#include "libs/mail/header.h"
#include "libs/mail/lexer.h"

namespace mailgrid::mail {
namespace {

constexpr size_t kMaxCharsetLabel = 64;
constexpr size_t kMaxSegments = 64;
constexpr size_t kMaxEncodedWordPayload = 45;  // bytes: 60 base64 chars, a 72-char word

bool IsLwsp(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

bool AllLwsp(std::string_view s) { return std::all_of(s.begin(), s.end(), IsLwsp); }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

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
    } else if (c == '=' && i + 2 < text.size() && HexValue(text[i + 1]) >= 0 &&
               HexValue(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2])));
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
    if (!IsMimeTokenChar(c)) return std::nullopt;
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

// Neutralizes bytes that must never reach a header line again.
void ReplaceControls(std::string* text) {
  for (char& c : *text) {
    if (c == '\r' || c == '\n' || c == '\0') c = ' ';
  }
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
    ReplaceControls(&out_.text);
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
    if (!pending_charset_.empty()) utf8 = ConvertToUtf8(pending_bytes_, pending_charset_, &out_.lossy);
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

// ---- RFC 2231 parameters ----

struct Segment {
  bool extended = false;
  std::string value;
};

struct ParamAccumulator {
  std::string name;  // base name as first written
  std::optional<Segment> single;
  std::map<int, Segment> parts;
};

// "name*3*" → base "name", index 3, extended.
void SplitParamName(std::string_view full, std::string_view* base, int* index, bool* extended) {
  *extended = !full.empty() && full.back() == '*';
  if (*extended) full.remove_suffix(1);
  *index = -1;
  size_t star = full.rfind('*');
  if (star != std::string_view::npos && star + 1 < full.size() && full.size() - star <= 4) {
    int n = 0;
    bool digits = true;
    for (char c : full.substr(star + 1)) {
      if (c < '0' || c > '9') digits = false;
      n = n * 10 + (c - '0');
    }
    if (digits) {
      *index = n;
      full = full.substr(0, star);
    }
  }
  *base = full;
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string PercentEncode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : bytes) {
    auto u = static_cast<unsigned char>(c);
    if (IsMimeTokenChar(c) && u < 0x80 && c != '*' && c != '\'' && c != '%') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

// Reads one value: a quoted string, or a token, or (tolerated) anything up
// to the next ';'.
std::string ReadParamValue(Lexer& lx) {
  std::string value;
  if (lx.Peek() == '"') {
    lx.QuotedString(&value);
    return value;
  }
  size_t start = lx.pos();
  lx.Token(&value);
  size_t after_token = lx.pos();
  lx.SkipCfws();
  if (lx.AtEnd() || lx.Peek() == ';') return value;
  lx.set_pos(after_token);
  while (!lx.AtEnd() && lx.Peek() != ';') lx.Advance();
  std::string_view raw = lx.text().substr(start, lx.pos() - start);
  while (!raw.empty() && IsLwsp(raw.back())) raw.remove_suffix(1);
  return std::string(raw);
}

MimeParameter Finish(const ParamAccumulator& acc, const DecodeOptions& options) {
  std::vector<const Segment*> segs;
  if (acc.single) {
    segs.push_back(&*acc.single);
  } else {
    for (const auto& [index, seg] : acc.parts) segs.push_back(&seg);
  }
  MimeParameter p;
  p.extended = std::any_of(segs.begin(), segs.end(), [](const Segment* s) { return s->extended; });
  if (!p.extended) {
    p.name = acc.name;
    for (const Segment* s : segs) p.value += s->value;
    DecodedText d = DecodeHeaderText(p.value, options);
    p.decoded = std::move(d.text);
    p.unknown_charset = d.unknown_charset;
    return p;
  }
  std::string charset, language, bytes;
  for (size_t i = 0; i < segs.size(); ++i) {
    std::string_view v = segs[i]->value;
    if (i == 0 && segs[i]->extended) {
      size_t q1 = v.find('\'');
      size_t q2 = q1 == std::string_view::npos ? q1 : v.find('\'', q1 + 1);
      if (q2 != std::string_view::npos) {
        charset = std::string(v.substr(0, q1));
        language = std::string(v.substr(q1 + 1, q2 - q1 - 1));
        v = v.substr(q2 + 1);
      }
    }
    bytes += segs[i]->extended ? PercentDecode(v) : std::string(v);
  }
  p.name = acc.name + "*";
  p.value = charset + "'" + language + "'" + PercentEncode(bytes);
  std::optional<std::string> utf8;
  if (!charset.empty()) utf8 = ConvertToUtf8(bytes, charset);
  if (charset.empty()) utf8 = BytesToUtf8(bytes, options.fallback_charset);
  p.unknown_charset = !utf8.has_value();
  p.decoded = utf8 ? *std::move(utf8) : SanitizeUtf8(bytes);
  ReplaceControls(&p.decoded);
  return p;
}

}  // namespace

DecodedText DecodeHeaderText(std::string_view value, const DecodeOptions& options) {
  return TextDecoder(value, options).Run();
}

std::string DecodeHeader(std::string_view value) { return DecodeHeaderText(value).text; }

std::string_view MimeParameter::base_name() const {
  std::string_view n = name;
  if (extended && !n.empty() && n.back() == '*') n.remove_suffix(1);
  return n;
}

std::vector<MimeParameter> ParseMimeParameters(std::string_view text, const DecodeOptions& options,
                                               size_t max_params) {
  std::vector<ParamAccumulator> accs;
  Lexer lx(text);
  for (;;) {
    lx.SkipCfws();
    if (lx.AtEnd()) break;
    if (lx.Consume(';')) continue;
    std::string full;
    if (!lx.Token(&full)) {
      lx.Advance();
      lx.SkipTo(";");
      continue;
    }
    lx.SkipCfws();
    if (!lx.Consume('=')) {
      lx.SkipTo(";");
      continue;
    }
    lx.SkipCfws();
    Segment seg;
    seg.value = ReadParamValue(lx);
    std::string_view base;
    int index;
    SplitParamName(full, &base, &index, &seg.extended);
    auto it = std::find_if(accs.begin(), accs.end(), [&](const ParamAccumulator& a) {
      return HeaderNameEquals(a.name, base);
    });
    if (it == accs.end()) {
      if (accs.size() >= max_params) continue;
      accs.push_back(ParamAccumulator{std::string(base), std::nullopt, {}});
      it = accs.end() - 1;
    }
    if (index < 0) {
      if (!it->single) it->single = std::move(seg);
    } else if (it->parts.size() < kMaxSegments) {
      it->parts.emplace(index, std::move(seg));
    }
  }
  std::vector<MimeParameter> out;
  out.reserve(accs.size());
  for (const ParamAccumulator& acc : accs) out.push_back(Finish(acc, options));
  return out;
}

const MimeParameter* FindParameter(const std::vector<MimeParameter>& params,
                                   std::string_view base_name) {
  for (const MimeParameter& p : params) {
    if (HeaderNameEquals(p.base_name(), base_name)) return &p;
  }
  return nullptr;
}

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
    while (i + n < utf8.size() && n > 1 && (static_cast<unsigned char>(utf8[i + n]) & 0xC0) == 0x80) {
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
    // A run of words needing encoding, the spaces between them inside it.
    size_t j = i + 1;
    while (j < words.size() && !words[j].empty() && needs(words[j])) ++j;
    std::string_view run(words[i].data(), words[j - 1].data() + words[j - 1].size() - words[i].data());
    out += EncodeWords(run);
    i = j;
  }
  return out;
}

std::string EncodePhrase(std::string_view utf8) {
  std::string s = CleanInput(utf8);
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
