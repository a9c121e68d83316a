// RFC 2231 MIME parameters: continuations, charset and language, joined
// into the form IMAP shows and decoded to UTF-8.
#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "libs/mail/ascii.h"
#include "libs/mail/charset.h"
#include "libs/mail/header.h"
#include "libs/mail/lexer.h"
#include "libs/mail/rfc2047.h"

namespace mailgrid::mail {
namespace {

constexpr size_t kMaxSegments = 64;

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
    if (int byte = s[i] == '%' ? ascii::HexPair(s, i) : -1; byte >= 0) {
      out.push_back(static_cast<char>(byte));
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
  while (!raw.empty() && ascii::IsLwsp(raw.back())) raw.remove_suffix(1);
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
  ascii::ReplaceControls(&p.decoded);
  return p;
}

}  // namespace

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

}  // namespace mailgrid::mail
