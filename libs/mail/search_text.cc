// The text of a message for the search index, and the simple HTML stripper
// it uses.
#include <string>
#include <utility>

#include "libs/mail/ascii.h"
#include "libs/mail/charset.h"
#include "libs/mail/decode.h"

namespace mailgrid::mail {
namespace {

using ascii::Lower;

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (Lower(s[i]) != prefix[i]) return false;
  }
  return true;
}

bool IsBlockTag(std::string_view name) {
  static constexpr std::string_view kBlocks[] = {
      "p",  "br", "div", "tr",    "li", "h1", "h2", "h3",         "h4",  "h5",
      "h6", "td", "th",  "table", "ul", "ol", "hr", "blockquote", "pre", "title"};
  for (std::string_view b : kBlocks) {
    if (name == b) return true;
  }
  return false;
}

// Decodes the entity at html[i] ('&'); returns the bytes consumed (0: none).
size_t DecodeEntity(std::string_view html, size_t i, std::string* out) {
  size_t semi = html.find(';', i);
  if (semi == std::string_view::npos || semi - i > 10) return 0;
  std::string_view name = html.substr(i + 1, semi - i - 1);
  if (name.size() > 1 && name[0] == '#') {
    bool hex = name[1] == 'x' || name[1] == 'X';
    char32_t cp = 0;
    bool too_big = false;
    std::string_view digits = name.substr(hex ? 2 : 1);
    if (digits.empty()) return 0;
    for (char c : digits) {
      int v = (c >= '0' && c <= '9')        ? c - '0'
              : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
              : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10
                                            : -1;
      if (v < 0) return 0;
      cp = cp * (hex ? 16 : 10) + v;
      if (cp > 0x10FFFF) {
        too_big = true;
        cp = 0;
      }
    }
    if (cp == 0 || too_big) cp = 0xFFFD;
    AppendUtf8(cp, out);
    return semi - i + 1;
  }
  static constexpr std::pair<std::string_view, std::string_view> kNamed[] = {
      {"amp", "&"}, {"lt", "<"}, {"gt", ">"}, {"quot", "\""}, {"apos", "'"}, {"nbsp", " "}};
  for (const auto& [n, v] : kNamed) {
    if (name == n) {
      out->append(v);
      return semi - i + 1;
    }
  }
  return 0;
}

class Collector {
 public:
  Collector(std::string_view raw, const Message& msg, const SearchTextOptions& options,
            SearchText* out)
      : raw_(raw), msg_(msg), options_(options), out_(out) {}

  void Collect(uint32_t index) {
    const Part& p = msg_.parts[index];
    switch (p.kind) {
      case PartKind::kMultipart:
        if (p.children.empty()) return;  // no delimiter was found (kNoParts)
        if (p.content.subtype == "alternative") {
          Collect(ChooseAlternative(p));
        } else {
          for (uint32_t c : p.children) Collect(c);
        }
        return;
      case PartKind::kMessage: {
        const Part& inner = msg_.parts[p.children.front()];
        if (inner.envelope != nullptr && inner.envelope->subject) {
          Append(DecodeHeaderText(*inner.envelope->subject, Decode()).text);
        }
        Collect(p.children.front());
        return;
      }
      case PartKind::kLeaf:
        Leaf(p);
        return;
    }
  }

 private:
  DecodeOptions Decode() const { return DecodeOptions{options_.fallback_charset}; }

  uint32_t ChooseAlternative(const Part& p) const {
    for (std::string_view want : {"plain", "html"}) {
      for (uint32_t c : p.children) {
        const Part& child = msg_.parts[c];
        if (child.kind == PartKind::kLeaf && child.content.Is("text", want)) return c;
      }
    }
    return p.children.front();
  }

  void Leaf(const Part& p) {
    if (out_->truncated) return;  // nothing more will be kept: decode nothing more
    std::string name = p.content.filename();
    if (!name.empty()) Append(name);
    bool text = p.content.Is("text", "plain") || p.content.Is("text", "html");
    if (!text || p.content.disposition == "attachment" || (p.problems & kPartLimit) != 0) return;
    PartText t = DecodeTextPart(raw_, p, options_.fallback_charset);
    Append(p.content.subtype == "html" ? HtmlToText(t.text) : t.text);
  }

  void Append(std::string_view text) {
    if (out_->truncated || text.empty()) return;
    if (!out_->body.empty()) out_->body.push_back('\n');
    size_t room = options_.max_body_bytes > out_->body.size()
                      ? options_.max_body_bytes - out_->body.size()
                      : 0;
    if (text.size() > room) {
      size_t cut = room;
      while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
      text = text.substr(0, cut);
      out_->truncated = true;
    }
    out_->body.append(text);
  }

  std::string_view raw_;
  const Message& msg_;
  const SearchTextOptions& options_;
  SearchText* out_;
};

std::string AddressText(const std::optional<AddressList>& list) {
  std::string out;
  if (!list) return out;
  for (const Address* a : list->Mailboxes()) {
    if (!out.empty()) out.push_back(' ');
    if (!a->name.empty()) out += a->name + " ";
    out += SanitizeUtf8(a->AddrSpec());
  }
  return out;
}

}  // namespace

std::string HtmlToText(std::string_view html) {
  std::string out;
  out.reserve(html.size() / 2);
  size_t i = 0;
  while (i < html.size()) {
    char c = html[i];
    if (c == '&') {
      size_t used = DecodeEntity(html, i, &out);
      if (used == 0) {
        out.push_back('&');
        used = 1;
      }
      i += used;
      continue;
    }
    if (c != '<') {
      out.push_back(c);
      ++i;
      continue;
    }
    if (html.compare(i, 4, "<!--") == 0) {
      size_t end = html.find("-->", i + 4);
      i = end == std::string_view::npos ? html.size() : end + 3;
      continue;
    }
    size_t end = html.find('>', i);
    if (end == std::string_view::npos) break;
    std::string_view tag = html.substr(i + 1, end - i - 1);
    bool closing = !tag.empty() && tag[0] == '/';
    if (closing) tag.remove_prefix(1);
    size_t n = 0;
    while (n < tag.size() &&
           ((tag[n] >= 'a' && tag[n] <= 'z') || (tag[n] >= 'A' && tag[n] <= 'Z') ||
            (tag[n] >= '0' && tag[n] <= '9'))) {
      ++n;
    }
    std::string name;
    for (char ch : tag.substr(0, n)) name.push_back(Lower(ch));
    i = end + 1;
    if (!closing && (name == "script" || name == "style")) {
      // Skip to the matching close tag; its content is not text.
      std::string close = "</" + name;
      size_t at = i;
      while (at < html.size() && !StartsWithIgnoreCase(html.substr(at), close)) {
        at = html.find('<', at + 1);
        if (at == std::string_view::npos) at = html.size();
      }
      size_t gt = html.find('>', at);
      i = gt == std::string_view::npos ? html.size() : gt + 1;
      continue;
    }
    if (IsBlockTag(name)) out.push_back('\n');
  }
  return out;
}

SearchText ExtractSearchText(std::string_view raw, const Message& message,
                             const SearchTextOptions& options) {
  SearchText out;
  const Envelope& env = message.envelope();
  DecodeOptions decode{options.fallback_charset};
  if (env.subject) out.subject = DecodeHeaderText(*env.subject, decode).text;
  out.from = AddressText(env.from);
  out.to = AddressText(env.to);
  out.cc = AddressText(env.cc);
  Collector(raw, message, options, &out).Collect(0);
  return out;
}

}  // namespace mailgrid::mail
