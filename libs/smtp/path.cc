#include "libs/smtp/path.h"

#include <arpa/inet.h>

#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "libs/base/status.h"
#include "libs/smtp/ascii.h"

namespace mailgrid::smtp {
namespace {

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool IsNonAscii(char c) { return static_cast<unsigned char>(c) >= 0x80; }

// RFC 5322 atext (RFC 5321 Atom), plus UTF8-non-ascii (RFC 6531 §3.3).
bool IsAtext(char c) {
  // (c != '\0': strchr would find the terminator.)
  return IsAlnum(c) || IsNonAscii(c) ||
         (c != '\0' && std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr);
}

// RFC 5321 qtextSMTP: %d32-33 / %d35-91 / %d93-126, plus UTF8-non-ascii.
bool IsQtext(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return (u >= 32 && u <= 126 && c != '"' && c != '\\') || u >= 0x80;
}

absl::Status Invalid(const char* why) { return absl::InvalidArgumentError(why); }

bool HasNonAscii(std::string_view s) {
  for (char c : s) {
    if (IsNonAscii(c)) return true;
  }
  return false;
}

bool IsValidIPv4(std::string_view s) {
  int parts = 0;
  size_t i = 0;
  while (true) {
    size_t start = i;
    int value = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && i - start < 3) {
      value = value * 10 + (s[i] - '0');
      ++i;
    }
    if (i == start || value > 255) return false;
    ++parts;
    if (i == s.size()) return parts == 4;
    if (s[i] != '.' || parts == 4) return false;
    ++i;
  }
}

bool IsValidIPv6(std::string_view s) {
  if (s.empty() || s.size() > 45) return false;
  for (char c : s) {
    if (!((internal::IsAlnumAscii(c) && internal::ToLowerAscii(c) <= 'f') || c == ':' ||
          c == '.')) {
      return false;
    }
  }
  std::string copy(s);
  unsigned char buf[16];
  return inet_pton(AF_INET6, copy.c_str(), buf) == 1;
}

// Cursor over the input of one path.
class PathParser {
 public:
  explicit PathParser(std::string_view text) : s_(text) {}

  size_t pos() const { return pos_; }
  bool AtEnd() const { return pos_ >= s_.size(); }
  char Peek() const { return AtEnd() ? '\0' : s_[pos_]; }
  bool Eat(char c) {
    if (Peek() != c || AtEnd()) return false;
    ++pos_;
    return true;
  }

  // A-d-l = At-domain *( "," At-domain ), At-domain = "@" Domain.
  absl::Status ParseRoute(std::vector<std::string>* route) {
    while (true) {
      if (!Eat('@')) return Invalid("bad source route");
      size_t start = pos_;
      while (!AtEnd() && Peek() != ',' && Peek() != ':' && Peek() != '>') ++pos_;
      std::string_view domain = s_.substr(start, pos_ - start);
      if (!IsValidDomain(domain)) return Invalid("bad domain in source route");
      route->emplace_back(domain);
      if (Eat(':')) return absl::OkStatus();
      if (!Eat(',')) return Invalid("bad source route");
    }
  }

  // Mailbox = Local-part "@" ( Domain / address-literal ). Stops before any
  // character that cannot continue the domain.
  absl::Status ParseMailbox(Path* path) {
    size_t local_start = pos_;
    if (Peek() == '"') {
      RETURN_IF_ERROR(ParseQuoted(&path->local_part));
      path->quoted = true;
    } else {
      while (!AtEnd() && (IsAtext(Peek()) || Peek() == '.')) ++pos_;
      path->local_part = std::string(s_.substr(local_start, pos_ - local_start));
      if (!IsDotString(path->local_part)) return Invalid("bad local part");
    }
    std::string_view local_wire = s_.substr(local_start, pos_ - local_start);
    if (path->local_part.empty()) return Invalid("empty local part");
    if (local_wire.size() > kMaxLocalPartLength) return Invalid("local part too long");
    if (!IsValidUtf8(local_wire)) return Invalid("local part is not valid UTF-8");
    if (!Eat('@')) return Invalid("missing @ in address");

    size_t domain_start = pos_;
    if (Peek() == '[') {
      while (!AtEnd() && Peek() != ']') ++pos_;
      if (!Eat(']')) return Invalid("unterminated address literal");
      path->domain = std::string(s_.substr(domain_start, pos_ - domain_start));
      if (!IsValidAddressLiteral(path->domain)) return Invalid("bad address literal");
      path->domain_kind = internal::StartsWithIgnoreCase(path->domain, "[IPv6:")
                              ? DomainKind::kIPv6
                              : DomainKind::kIPv4;
    } else {
      while (!AtEnd() &&
             (IsAlnum(Peek()) || Peek() == '-' || Peek() == '.' || IsNonAscii(Peek()))) {
        ++pos_;
      }
      path->domain = std::string(s_.substr(domain_start, pos_ - domain_start));
      if (!IsValidDomain(path->domain)) return Invalid("bad domain");
      path->domain_kind = DomainKind::kName;
    }
    path->utf8 = HasNonAscii(local_wire) || HasNonAscii(path->domain);
    return absl::OkStatus();
  }

 private:
  // Quoted-string = DQUOTE *QcontentSMTP DQUOTE.
  absl::Status ParseQuoted(std::string* out) {
    Eat('"');
    while (true) {
      if (AtEnd()) return Invalid("unterminated quoted string");
      char c = s_[pos_++];
      if (c == '"') return absl::OkStatus();
      if (c == '\\') {
        // quoted-pairSMTP = %d92 %d32-126
        if (AtEnd()) return Invalid("unterminated quoted pair");
        unsigned char q = static_cast<unsigned char>(s_[pos_++]);
        if (q < 32 || q > 126) return Invalid("bad quoted pair");
        out->push_back(static_cast<char>(q));
      } else if (IsQtext(c)) {
        out->push_back(c);
      } else {
        return Invalid("bad character in quoted string");
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    unsigned int cp;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;  // continuation byte, 0xc0/0xc1 (overlong) or > 0xf4
    }
    if (i + len > text.size()) return false;
    for (int k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;  // overlong
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

bool IsDotString(std::string_view local) {
  if (local.empty() || local.front() == '.' || local.back() == '.') return false;
  char prev = '\0';
  for (char c : local) {
    if (c == '.' && prev == '.') return false;
    if (c != '.' && !IsAtext(c)) return false;
    prev = c;
  }
  return true;
}

bool IsValidDomain(std::string_view domain, bool allow_utf8) {
  if (domain.empty() || domain.size() > kMaxDomainLength) return false;
  if (!IsValidUtf8(domain)) return false;
  size_t start = 0;
  while (start <= domain.size()) {
    size_t dot = domain.find('.', start);
    std::string_view label =
        domain.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty()) return false;
    bool utf8 = HasNonAscii(label);
    if (utf8 && !allow_utf8) return false;
    // A-labels and LDH labels: 63 octets (RFC 1035). U-labels are bounded
    // only by the domain's 255 octets; their A-label form is checked when
    // (if) the relay converts them.
    if (!utf8 && label.size() > 63) return false;
    for (char c : label) {
      if (!IsAlnum(c) && c != '-' && !IsNonAscii(c)) return false;
    }
    // sub-domain = Let-dig [Ldh-str]: no hyphen first or last.
    if (label.front() == '-' || label.back() == '-') return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

bool IsValidAddressLiteral(std::string_view literal) {
  if (literal.size() < 3 || literal.front() != '[' || literal.back() != ']') return false;
  std::string_view inner = literal.substr(1, literal.size() - 2);
  if (internal::StartsWithIgnoreCase(inner, "IPv6:")) return IsValidIPv6(inner.substr(5));
  // General-address-literal ("tag:content") has no registered tags; refuse.
  return IsValidIPv4(inner);
}

std::string NormalizeDomain(std::string_view domain) { return internal::ToLower(domain); }

std::string Path::Mailbox() const {
  if (null) return "";
  if (postmaster) return "Postmaster";
  std::string out;
  if (IsDotString(local_part)) {
    out = local_part;
  } else {
    out.push_back('"');
    for (char c : local_part) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('@');
  out.append(domain);
  return out;
}

std::string Path::NormalizedDomain() const { return NormalizeDomain(domain); }

bool Path::HasRoutingCharacters() const {
  return !source_route.empty() || local_part.find_first_of("@%!") != std::string::npos;
}

absl::StatusOr<Path> ParsePathPrefix(std::string_view text, PathKind kind, size_t* consumed) {
  Path path;
  if (text.empty() || text.front() != '<') return Invalid("path must start with <");
  if (kind == PathKind::kReverse && text.substr(0, 2) == "<>") {
    path.null = true;
    *consumed = 2;
    return path;
  }
  if (kind == PathKind::kForward && internal::StartsWithIgnoreCase(text, "<postmaster>")) {
    path.postmaster = true;
    path.local_part = "Postmaster";
    *consumed = 12;
    return path;
  }
  PathParser p(text);
  p.Eat('<');
  if (p.Peek() == '@') {
    absl::Status s = p.ParseRoute(&path.source_route);
    if (!s.ok()) return s;
  }
  absl::Status s = p.ParseMailbox(&path);
  if (!s.ok()) return s;
  // ParseMailbox stops at the first byte that cannot continue the domain.
  if (!p.Eat('>')) return Invalid("unexpected character in address");
  if (p.pos() > kMaxPathLength) return Invalid("path too long");
  for (const std::string& hop : path.source_route) {
    if (HasNonAscii(hop)) path.utf8 = true;
  }
  *consumed = p.pos();
  return path;
}

absl::StatusOr<Path> ParsePath(std::string_view text, PathKind kind) {
  size_t consumed = 0;
  absl::StatusOr<Path> path = ParsePathPrefix(text, kind, &consumed);
  if (path.ok() && consumed != text.size()) return Invalid("trailing characters after path");
  return path;
}

absl::StatusOr<Path> ParseMailbox(std::string_view text) {
  Path path;
  PathParser p(text);
  absl::Status s = p.ParseMailbox(&path);
  if (!s.ok()) return s;
  if (!p.AtEnd()) return Invalid("trailing characters after address");
  if (text.size() > kMaxPathLength - 2) return Invalid("address too long");
  return path;
}

}  // namespace mailgrid::smtp
