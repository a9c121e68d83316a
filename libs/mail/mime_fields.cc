// Content-* fields of one part (RFC 2045, 2183, 3282, 2557) into ContentInfo.
#include "libs/mail/mime_fields.h"

#include "libs/mail/ascii.h"
#include "libs/mail/lexer.h"

namespace mailgrid::mail {
namespace {

using ascii::Lower;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) { return HeaderNameEquals(a, b); }

void ParseContentType(std::string_view value, const DecodeOptions& decode, ContentInfo* info,
                      uint32_t* problems) {
  Lexer lx(value);
  std::string type, subtype;
  lx.SkipCfws();
  lx.Token(&type);
  lx.SkipCfws();
  bool slash = lx.Consume('/');
  lx.SkipCfws();
  lx.Token(&subtype);
  if (type.empty() || !slash || subtype.empty()) {
    // RFC 2045 §5.2: an unreadable Content-Type means text/plain; us-ascii.
    *problems |= kInvalidContentType;
    return;
  }
  info->type = Lower(type);
  info->subtype = Lower(subtype);
  info->params = ParseMimeParameters(lx.rest(), decode);
}

void ParseDisposition(std::string_view value, const DecodeOptions& decode, ContentInfo* info) {
  Lexer lx(value);
  std::string type;
  lx.SkipCfws();
  if (!lx.Token(&type)) return;
  info->disposition = Lower(type);
  info->disposition_params = ParseMimeParameters(lx.rest(), decode);
}

std::vector<std::string> ParseLanguages(std::string_view value) {
  std::vector<std::string> out;
  Lexer lx(value);
  while (out.size() < 64) {
    lx.SkipCfws();
    if (lx.AtEnd()) break;
    if (lx.Consume(',')) continue;
    std::string tag;
    if (!lx.Token(&tag)) {
      lx.Advance();
      continue;
    }
    out.push_back(std::move(tag));
  }
  return out;
}

std::string WithoutSpace(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') out.push_back(c);
  }
  return out;
}

}  // namespace

bool ContentInfo::Is(std::string_view t, std::string_view s) const {
  return EqualsIgnoreCase(type, t) && (s.empty() || EqualsIgnoreCase(subtype, s));
}

std::string ContentInfo::charset() const {
  const MimeParameter* p = FindParameter(params, "charset");
  return p == nullptr ? "" : p->decoded;
}

std::string ContentInfo::filename() const {
  const MimeParameter* p = FindParameter(disposition_params, "filename");
  if (p == nullptr) p = FindParameter(params, "name");
  return p == nullptr ? "" : p->decoded;
}

ContentInfo ParseContentInfo(const Header& header, bool digest_child, const DecodeOptions& decode,
                             uint32_t* problems) {
  ContentInfo info;
  if (digest_child) {
    info.type = "message";  // RFC 2046 §5.1.5
    info.subtype = "rfc822";
  }
  // The first occurrence of each field wins, as for the envelope.
  bool seen_type = false, seen_cte = false, seen_disp = false;
  for (const HeaderField& f : header.fields) {
    std::string_view name = f.name;
    if (name.size() < 8 || !EqualsIgnoreCase(name.substr(0, 8), "Content-")) continue;
    std::string_view rest = name.substr(8);
    if (EqualsIgnoreCase(rest, "Type") && !seen_type) {
      seen_type = true;
      ContentInfo fresh;
      uint32_t p = 0;
      ParseContentType(f.value, decode, &fresh, &p);
      *problems |= p;
      info.type = fresh.type;
      info.subtype = fresh.subtype;
      info.params = std::move(fresh.params);
    } else if (EqualsIgnoreCase(rest, "Transfer-Encoding") && !seen_cte) {
      seen_cte = true;
      Lexer lx(f.value);
      std::string token;
      lx.SkipCfws();
      lx.Token(&token);
      info.encoding = Lower(token);
    } else if (EqualsIgnoreCase(rest, "Disposition") && !seen_disp) {
      seen_disp = true;
      ParseDisposition(f.value, decode, &info);
    } else if (EqualsIgnoreCase(rest, "ID") && !info.id) {
      info.id = f.value;
    } else if (EqualsIgnoreCase(rest, "Description") && !info.description) {
      info.description = f.value;
    } else if (EqualsIgnoreCase(rest, "MD5") && !info.md5) {
      info.md5 = f.value;
    } else if (EqualsIgnoreCase(rest, "Location") && !info.location) {
      info.location = WithoutSpace(f.value);
    } else if (EqualsIgnoreCase(rest, "Language") && info.language.empty()) {
      info.language = ParseLanguages(f.value);
    }
  }
  return info;
}

}  // namespace mailgrid::mail
