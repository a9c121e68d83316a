// Section specifiers of BODY[...] and BINARY[...] (RFC 3501 §9 section-spec,
// RFC 3516 section-binary) and partial ranges, and their canonical names.
#include <string_view>

#include "libs/base/status.h"
#include "libs/imap/commands/fetch.h"
#include "libs/imap/types.h"

namespace mailgrid::imap {
namespace {

// MIME nesting deeper than this is not a real message.
constexpr size_t kMaxPartDepth = 64;

std::string_view TextName(FetchSection::Text t) {
  switch (t) {
    case FetchSection::Text::kNone:
      return "";
    case FetchSection::Text::kHeader:
      return "HEADER";
    case FetchSection::Text::kHeaderFields:
      return "HEADER.FIELDS";
    case FetchSection::Text::kHeaderFieldsNot:
      return "HEADER.FIELDS.NOT";
    case FetchSection::Text::kText:
      return "TEXT";
    case FetchSection::Text::kMime:
      return "MIME";
  }
  return "";
}

std::string SectionText(const FetchSection& s) {
  std::string out;
  for (uint32_t p : s.part) {
    if (!out.empty()) out.push_back('.');
    out += std::to_string(p);
  }
  if (s.text != FetchSection::Text::kNone) {
    if (!out.empty()) out.push_back('.');
    out.append(TextName(s.text));
  }
  if (!s.fields.empty()) {
    out += " (";
    for (size_t i = 0; i < s.fields.size(); ++i) {
      if (i > 0) out.push_back(' ');
      out += s.fields[i];
    }
    out += ")";
  }
  return out;
}

std::string_view AttrName(const FetchItem& item, bool response) {
  switch (item.attr) {
    case FetchAttr::kEnvelope:
      return "ENVELOPE";
    case FetchAttr::kFlags:
      return "FLAGS";
    case FetchAttr::kInternalDate:
      return "INTERNALDATE";
    case FetchAttr::kRfc822:
      return "RFC822";
    case FetchAttr::kRfc822Header:
      return "RFC822.HEADER";
    case FetchAttr::kRfc822Size:
      return "RFC822.SIZE";
    case FetchAttr::kRfc822Text:
      return "RFC822.TEXT";
    case FetchAttr::kBody:
      return "BODY";
    case FetchAttr::kBodyStructure:
      return "BODYSTRUCTURE";
    case FetchAttr::kUid:
      return "UID";
    case FetchAttr::kModSeq:
      return "MODSEQ";
    case FetchAttr::kBodySection:
      return item.peek && !response ? "BODY.PEEK" : "BODY";
    case FetchAttr::kBinary:
      return item.peek && !response ? "BINARY.PEEK" : "BINARY";
    case FetchAttr::kBinarySize:
      return "BINARY.SIZE";
  }
  return "?";
}

std::string ItemName(const FetchItem& item, bool response) {
  std::string out(AttrName(item, response));
  const bool sectioned = item.attr == FetchAttr::kBodySection || item.attr == FetchAttr::kBinary ||
                         item.attr == FetchAttr::kBinarySize;
  if (!sectioned) return out;
  out += "[" + SectionText(item.section) + "]";
  if (item.partial) {
    out += "<" + std::to_string(item.partial->offset);
    if (!response) out += "." + std::to_string(item.partial->length);
    out += ">";
  }
  return out;
}

}  // namespace

absl::StatusOr<FetchSection> ParseSectionSpec(std::string_view spec, bool binary) {
  FetchSection s;
  // section-part = nz-number *("." nz-number), then "." section-text.
  while (!spec.empty() && spec[0] >= '0' && spec[0] <= '9') {
    const size_t dot = spec.find('.');
    const std::string_view num = spec.substr(0, dot);
    ASSIGN_OR_RETURN(uint64_t p, ParseUnsigned(num, 0xFFFFFFFFull, true, "section part number"));
    if (s.part.size() >= kMaxPartDepth) return BadArgument("Section part nested too deeply");
    s.part.push_back(static_cast<uint32_t>(p));
    if (dot == std::string_view::npos) {
      spec = {};
      break;
    }
    spec.remove_prefix(dot + 1);
    if (spec.empty()) return BadArgument("Invalid section");
  }
  if (spec.empty()) return s;
  if (binary) return BadArgument("BINARY sections take part numbers only");
  const std::string text = UpperCase(spec);
  if (text == "HEADER") {
    s.text = FetchSection::Text::kHeader;
  } else if (text == "HEADER.FIELDS") {
    s.text = FetchSection::Text::kHeaderFields;
  } else if (text == "HEADER.FIELDS.NOT") {
    s.text = FetchSection::Text::kHeaderFieldsNot;
  } else if (text == "TEXT") {
    s.text = FetchSection::Text::kText;
  } else if (text == "MIME" && !s.part.empty()) {
    s.text = FetchSection::Text::kMime;  // MIME only of a numbered part
  } else {
    return BadArgument("Invalid section");
  }
  return s;
}

absl::StatusOr<std::optional<FetchPartial>> ParsePartial(std::string_view text) {
  if (text.empty()) return std::optional<FetchPartial>();
  const size_t dot = text.find('.');
  if (text.size() < 5 || text.front() != '<' || text.back() != '>' ||
      dot == std::string_view::npos) {
    return BadArgument("Invalid partial range");
  }
  FetchPartial p;
  constexpr uint64_t kMax = 0x7FFFFFFFFFFFFFFFull;
  ASSIGN_OR_RETURN(p.offset, ParseUnsigned(text.substr(1, dot - 1), kMax, false, "partial offset"));
  ASSIGN_OR_RETURN(p.length, ParseUnsigned(text.substr(dot + 1, text.size() - dot - 2), kMax, true,
                                           "partial length"));
  return std::optional<FetchPartial>(p);
}

std::string FetchItemName(const FetchItem& item) { return ItemName(item, false); }
std::string FetchResponseName(const FetchItem& item) { return ItemName(item, true); }

}  // namespace mailgrid::imap
