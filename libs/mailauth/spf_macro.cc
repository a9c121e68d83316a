// SPF macro expansion (RFC 7208 §7).
#include <ctime>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "libs/base/strings.h"
#include "libs/mailauth/spf.h"

namespace mailgrid::mailauth {
namespace {

std::string LocalPart(std::string_view sender) {
  size_t at = sender.rfind('@');
  if (at == std::string_view::npos || at == 0) return "postmaster";
  return std::string(sender.substr(0, at));
}

std::string SenderDomain(std::string_view sender, std::string_view helo) {
  size_t at = sender.rfind('@');
  if (at == std::string_view::npos) return std::string(sender.empty() ? helo : sender);
  return std::string(sender.substr(at + 1));
}

// §7.3 URL escaping for upper-case macro letters: everything but
// unreserved characters (RFC 3986) as %XX.
std::string UrlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (absl::ascii_isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      absl::StrAppend(&out, "%", absl::Hex(u, absl::kZeroPad2));
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> ExpandSpfMacros(std::string_view text, const SpfRequest& req,
                                            std::string_view domain, bool exp, Resolver* /*dns*/) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c != '%') {
      auto u = static_cast<unsigned char>(c);
      // macro-literal = %x21-24 / %x26-7E (space allowed in explanations).
      if ((u < 0x21 || u > 0x7e) && !(exp && c == ' '))
        return absl::InvalidArgumentError("bad character in macro-string");
      out.push_back(c);
      continue;
    }
    if (++i >= text.size()) return absl::InvalidArgumentError("'%' at the end of a macro-string");
    char n = text[i];
    if (n == '%') {
      out.push_back('%');
      continue;
    }
    if (n == '_') {
      out.push_back(' ');
      continue;
    }
    if (n == '-') {
      out += "%20";
      continue;
    }
    if (n != '{')
      return absl::InvalidArgumentError(absl::StrCat("bad macro escape %", std::string(1, n)));
    size_t close = text.find('}', i);
    if (close == std::string_view::npos) return absl::InvalidArgumentError("unterminated macro");
    std::string_view body = text.substr(i + 1, close - i - 1);
    i = close;
    if (body.empty()) return absl::InvalidArgumentError("empty macro");
    char letter = body[0];
    bool upper = absl::ascii_isupper(static_cast<unsigned char>(letter));
    std::string value;
    switch (absl::ascii_tolower(static_cast<unsigned char>(letter))) {
      case 's':
        value = req.sender.empty() ? absl::StrCat("postmaster@", req.helo) : req.sender;
        break;
      case 'l':
        value = LocalPart(req.sender);
        break;
      case 'o':
        value = SenderDomain(req.sender, req.helo);
        break;
      case 'd':
        value = std::string(domain);
        break;
      case 'i':
        value = req.ip.AsV4().SpfMacroForm();
        break;
      // %{p} needs extra PTR lookups and RFC 7208 §7.3 says not to use it;
      // we answer "unknown" as the RFC allows when validation is not done.
      case 'p':
        value = "unknown";
        break;
      case 'v':
        value = req.ip.AsV4().v6 ? "ip6" : "in-addr";
        break;
      case 'h':
        value = req.helo;
        break;
      case 'c':
      case 'r':
      case 't':
        if (!exp) return absl::InvalidArgumentError("macros c, r and t are only for exp=");
        if (absl::ascii_tolower(static_cast<unsigned char>(letter)) == 'c')
          value = req.ip.AsV4().ToString();
        else if (absl::ascii_tolower(static_cast<unsigned char>(letter)) == 'r')
          value = req.receiver;
        else
          value = absl::StrCat(req.now != 0 ? req.now : static_cast<uint64_t>(std::time(nullptr)));
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("unknown macro letter ", std::string(1, letter)));
    }
    // transformers: *DIGIT [ "r" ], then delimiters.
    size_t p = 1;
    size_t keep = 0;
    bool has_digits = false;
    while (p < body.size() && absl::ascii_isdigit(static_cast<unsigned char>(body[p]))) {
      keep = keep * 10 + static_cast<size_t>(body[p] - '0');
      if (keep > 128) keep = 128;
      has_digits = true;
      ++p;
    }
    if (has_digits && keep == 0) return absl::InvalidArgumentError("macro keeps zero labels");
    bool reverse = false;
    if (p < body.size() && (body[p] == 'r' || body[p] == 'R')) {
      reverse = true;
      ++p;
    }
    std::string delimiters;
    for (; p < body.size(); ++p) {
      if (std::string_view(".-+,/_=").find(body[p]) == std::string_view::npos)
        return absl::InvalidArgumentError("bad macro delimiter");
      delimiters.push_back(body[p]);
    }
    if (delimiters.empty()) delimiters = ".";
    if (has_digits || reverse || delimiters != ".") {
      std::vector<std::string> parts = absl::StrSplit(value, absl::ByAnyChar(delimiters));
      if (reverse) std::reverse(parts.begin(), parts.end());
      if (has_digits && keep < parts.size())
        parts.erase(parts.begin(), parts.end() - static_cast<long>(keep));
      value = absl::StrJoin(parts, ".");
    }
    out += upper ? UrlEscape(value) : value;
    if (out.size() > 8192) return absl::InvalidArgumentError("macro expansion too long");
  }
  return out;
}

}  // namespace mailgrid::mailauth
