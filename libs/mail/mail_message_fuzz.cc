// Fuzz target: ParseMessage and everything served from its result
// (BODYSTRUCTURE, ENVELOPE, every section of every part, BINARY bodies,
// search text and tokens). Traps when a part's ranges leave the input or
// break nesting, or when text meant to be UTF-8 is not.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "libs/mail/charset.h"
#include "libs/mail/decode.h"
#include "libs/mail/fuzz_checks.h"
#include "libs/mail/imap_format.h"
#include "libs/mail/mime.h"
#include "libs/mail/tokenize.h"

namespace {

using namespace mailgrid::mail;
using fuzz::Check;

bool Within(const ByteRange& inner, const ByteRange& outer) {
  return inner.offset >= outer.offset && inner.end() <= outer.end();
}

void CheckStructure(std::string_view raw, const Message& m) {
  Check(!m.parts.empty());
  for (size_t i = 0; i < m.parts.size(); ++i) {
    const Part& p = m.parts[i];
    Check(p.header.end() <= raw.size() && p.body.end() <= raw.size());
    Check(p.header.end() <= p.body.offset);
    for (uint32_t c : p.children) {
      Check(c > i && c < m.parts.size() && m.parts[c].parent == i);
      Check(Within(m.parts[c].whole(), p.body));
    }
    Check(p.kind != PartKind::kMessage || p.children.size() == 1);
    Check(p.message_root == (p.envelope != nullptr));
  }
}

std::vector<uint32_t> PathOf(const std::string& number) {
  std::vector<uint32_t> path;
  uint32_t n = 0;
  for (char c : number) {
    if (c == '.') {
      path.push_back(n);
      n = 0;
    } else {
      n = n * 10 + static_cast<uint32_t>(c - '0');
    }
  }
  if (!number.empty()) path.push_back(n);
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view raw(reinterpret_cast<const char*>(data), size);
  Limits limits;
  limits.max_parts = 200;
  limits.max_depth = 12;
  absl::StatusOr<Message> parsed = ParseMessage(raw, limits);
  if (!parsed.ok()) return 0;
  const Message& m = *parsed;
  CheckStructure(raw, m);
  FormatBodyStructure(m, true);
  FormatBodyStructure(m, false);
  ImapFormatOptions utf8;
  utf8.utf8 = true;
  FormatEnvelope(m.envelope(), utf8);
  using Text = SectionSpec::Text;
  for (const Part& p : m.parts) {
    std::vector<uint32_t> path = PathOf(p.number);
    for (Text t : {Text::kNone, Text::kHeader, Text::kHeaderFields, Text::kHeaderFieldsNot,
                   Text::kText, Text::kMime}) {
      SectionSpec spec{path, t, {"From", "Subject", "Content-Type"}};
      absl::StatusOr<SectionData> d = ResolveSection(raw, m, spec);
      if (d.ok() && !d->built) Check(d->range.end() <= raw.size());
    }
    DecodedBody(raw, p);
  }
  SearchText text = ExtractSearchText(raw, m);
  Check(IsValidUtf8(text.subject) && IsValidUtf8(text.from) && IsValidUtf8(text.body));
  ForEachToken(text.body, [](std::string_view t) { Check(!t.empty() && IsValidUtf8(t)); });
  return 0;
}
