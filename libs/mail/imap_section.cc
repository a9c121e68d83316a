// BODY[section] resolution (RFC 3501 §6.4.5) over the parsed structure.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "libs/mail/imap_format.h"

namespace mailgrid::mail {
namespace {

using Text = SectionSpec::Text;

bool EndsWithLineEnd(std::string_view s) { return !s.empty() && s.back() == '\n'; }

// A header as IMAP sends it: always ending with its blank line.
SectionData HeaderData(std::string_view raw, const Part& part) {
  SectionData d;
  if ((part.problems & kMissingBlankLine) == 0) {
    d.range = part.header;
    return d;
  }
  d.built = true;
  d.text = std::string(part.header.In(raw));
  if (!d.text.empty() && !EndsWithLineEnd(d.text)) d.text += "\r\n";
  d.text += "\r\n";
  return d;
}

SectionData HeaderFields(std::string_view raw, const Message& message, const Part& part,
                         const SectionSpec& spec) {
  // The top-level header is kept parsed; an encapsulated message's header
  // (small, bounded by the header limits) is parsed again here.
  Header reparsed;
  const Header* header = &message.header;
  if (&part != &message.parts.front()) {
    reparsed = ParseHeaderLenient(part.header.In(raw), HeaderLimits{}, part.header.offset);
    header = &reparsed;
  }
  bool want = spec.text == Text::kHeaderFields;
  SectionData d;
  d.built = true;
  for (const HeaderField& f : header->fields) {
    bool listed = std::any_of(spec.fields.begin(), spec.fields.end(),
                              [&](const std::string& n) { return HeaderNameEquals(n, f.name); });
    if (listed != want) continue;
    std::string_view line = f.line.In(raw);
    d.text.append(line);
    if (!EndsWithLineEnd(line)) d.text += "\r\n";
  }
  d.text += "\r\n";
  return d;
}

}  // namespace

absl::StatusOr<SectionData> ResolveSection(std::string_view raw, const Message& message,
                                           const SectionSpec& spec) {
  if (message.parts.empty() || message.size != raw.size()) {
    return absl::InvalidArgumentError("message does not match its structure");
  }
  uint32_t index = 0;
  if (!spec.part.empty()) {
    absl::StatusOr<uint32_t> found = ResolvePart(message, spec.part);
    if (!found.ok()) return found.status();
    index = *found;
  }
  const Part& part = message.parts[index];
  SectionData d;
  switch (spec.text) {
    case Text::kNone:
      d.range = spec.part.empty() ? ByteRange{0, raw.size()} : part.body;
      return d;
    case Text::kMime:
      if (spec.part.empty()) return absl::InvalidArgumentError("MIME needs a part number");
      return HeaderData(raw, part);
    case Text::kHeader:
    case Text::kHeaderFields:
    case Text::kHeaderFieldsNot:
    case Text::kText:
      break;
  }
  // HEADER and TEXT address a message: the top level, or a message/rfc822 part.
  const Part* msg = &part;
  if (!spec.part.empty()) {
    if (part.kind != PartKind::kMessage) {
      return absl::InvalidArgumentError("HEADER and TEXT need a message/rfc822 part");
    }
    msg = &message.parts[part.children.front()];
  }
  if (spec.text == Text::kText) {
    d.range = msg->body;
    return d;
  }
  if (spec.text == Text::kHeader) return HeaderData(raw, *msg);
  return HeaderFields(raw, message, *msg, spec);
}

std::string_view ApplyPartial(std::string_view bytes, uint64_t origin,
                              std::optional<uint64_t> length) {
  if (origin >= bytes.size()) return {};
  bytes.remove_prefix(origin);
  if (length && *length < bytes.size()) bytes = bytes.substr(0, *length);
  return bytes;
}

}  // namespace mailgrid::mail
