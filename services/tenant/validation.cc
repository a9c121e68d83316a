#include "services/tenant/validation.h"

#include <idn2.h>
#include <unicase.h>
#include <uninorm.h>
#include <unistr.h>

#include <cstdlib>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/base/status.h"
#include "libs/base/strings.h"
#include "services/tenant/errors.h"

namespace mailgrid::tenant {
namespace {

const uint8_t* U8(std::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()); }

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

absl::StatusOr<std::string> ToNfc(std::string_view s, std::string_view field) {
  if (u8_check(U8(s), s.size()) != nullptr)
    return InvalidField(field, "BAD_UTF8", "not valid UTF-8");
  size_t len = 0;
  std::unique_ptr<uint8_t, FreeDeleter> out(
      u8_normalize(UNINORM_NFC, U8(s), s.size(), nullptr, &len));
  if (out == nullptr) return InvalidField(field, "BAD_UTF8", "cannot be normalised (NFC)");
  return std::string(reinterpret_cast<const char*>(out.get()), len);
}

bool IsControl(ucs4_t c) {
  return c < 0x20 || (c >= 0x7F && c <= 0x9F) || c == 0x2028 || c == 0x2029;
}

bool IsSpace(ucs4_t c) { return c == ' ' || c == 0x3000 || c == 0xA0; }

// Trims white space (ASCII, NBSP, ideographic space) at both ends.
std::string_view TrimSpace(std::string_view s) {
  while (!s.empty()) {
    ucs4_t c;
    int n = u8_mbtouc(&c, U8(s), s.size());
    if (!IsSpace(c) && !(c == '\t' || c == '\n' || c == '\r')) break;
    s.remove_prefix(n);
  }
  while (!s.empty()) {
    // Step back over one UTF-8 sequence.
    size_t i = s.size() - 1;
    while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) --i;
    ucs4_t c;
    u8_mbtouc(&c, U8(s.substr(i)), s.size() - i);
    if (!IsSpace(c) && !(c == '\t' || c == '\n' || c == '\r')) break;
    s.remove_suffix(s.size() - i);
  }
  return s;
}

absl::StatusOr<std::string> CheckText(std::string_view input, std::string_view field,
                                      size_t max_chars, bool required) {
  if (u8_check(U8(input), input.size()) != nullptr)
    return InvalidField(field, "BAD_UTF8", "not valid UTF-8");
  std::string_view trimmed = TrimSpace(input);
  if (trimmed.empty()) {
    if (required) return InvalidField(field, "EMPTY", "must not be empty");
    return std::string();
  }
  ASSIGN_OR_RETURN(std::string nfc, ToNfc(trimmed, field));
  size_t chars = 0;
  for (size_t i = 0; i < nfc.size();) {
    ucs4_t c;
    int n = u8_mbtouc(&c, U8(nfc) + i, nfc.size() - i);
    if (IsControl(c)) return InvalidField(field, "BAD_CHARACTER", "contains a control character");
    i += n;
    ++chars;
  }
  if (chars > max_chars) {
    return InvalidField(field, "TOO_LONG",
                        absl::StrCat(chars, " characters; at most ", max_chars, " allowed"));
  }
  return nfc;
}

bool IsAtext(unsigned char c) {
  if (c >= 0x80) return true;  // RFC 6531 UTF-8 (checked as a whole beforehand)
  if (absl::ascii_isalnum(c)) return true;
  return std::string_view("!#$%&'*+-/=?^_`{|}~").find(static_cast<char>(c)) !=
         std::string_view::npos;
}

// RFC 5322 dot-atom-text: atoms of atext separated by single dots.
bool IsDotAtom(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  char prev = 0;
  for (char ch : s) {
    if (ch == '.') {
      if (prev == '.') return false;
    } else if (!IsAtext(static_cast<unsigned char>(ch))) {
      return false;
    }
    prev = ch;
  }
  return true;
}

// RFC 5322 quoted-string without folding white space: qtext or quoted-pair.
bool IsQuotedString(std::string_view s) {
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') return false;
  for (size_t i = 1; i + 1 < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      if (i + 2 >= s.size()) return false;  // the escaped char cannot be the closing quote
      unsigned char e = static_cast<unsigned char>(s[++i]);
      if (e < 0x20 && e != '\t') return false;
      continue;
    }
    if (c == '"' || c < 0x20 || c == 0x7F) return false;
  }
  return true;
}

bool IsLdhLabel(std::string_view label) {
  if (label.empty() || label.size() > 63) return false;
  if (label.front() == '-' || label.back() == '-') return false;
  for (char c : label) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
  }
  return true;
}

absl::Status NotADomain(std::string_view field, std::string_view why) {
  return InvalidField(field, "NOT_A_DOMAIN", absl::StrCat("not a domain name (", ToAbsl(why), ")"));
}

}  // namespace

absl::StatusOr<std::string> ValidateName(std::string_view input, std::string_view field,
                                         size_t max_chars) {
  return CheckText(input, field, max_chars, /*required=*/true);
}

absl::StatusOr<std::string> ValidateOptionalText(std::string_view input, std::string_view field,
                                                 size_t max_chars) {
  return CheckText(input, field, max_chars, /*required=*/false);
}

std::string NameKey(std::string_view name) {
  size_t len = 0;
  std::unique_ptr<uint8_t, FreeDeleter> folded(
      u8_casefold(U8(name), name.size(), /*iso639_language=*/nullptr, UNINORM_NFC, nullptr, &len));
  std::string s =
      folded ? std::string(reinterpret_cast<const char*>(folded.get()), len) : std::string(name);
  std::string out;
  bool space = false;
  for (size_t i = 0; i < s.size();) {
    ucs4_t c;
    int n = u8_mbtouc(&c, U8(s) + i, s.size() - i);
    if (IsSpace(c) || c == '\t') {
      space = true;
    } else {
      if (space && !out.empty()) out.push_back(' ');
      space = false;
      out.append(s, i, n);
    }
    i += n;
  }
  return out;
}

absl::StatusOr<std::string> NormalizePhone(std::string_view input, std::string_view field) {
  std::string_view s = ToStd(absl::StripAsciiWhitespace(ToAbsl(input)));
  if (s.empty()) return InvalidField(field, "EMPTY", "must not be empty");
  std::string digits;
  bool plus = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '+') {
      // One '+', before any digit (it may follow an opening parenthesis).
      if (plus || !digits.empty())
        return InvalidField(field, "NOT_E164", "not a phone number ('+' misplaced)");
      plus = true;
    } else if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      digits.push_back(c);
    } else if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '/') {
      continue;  // common grouping characters
    } else {
      return InvalidField(
          field, "NOT_E164",
          absl::StrCat("not a phone number (unexpected '", std::string(1, c), "')"));
    }
  }
  if (!plus) {
    // "00" is the international call prefix in most of the world.
    if (digits.size() > 2 && digits.compare(0, 2, "00") == 0) {
      digits.erase(0, 2);
    } else {
      return InvalidField(field, "NOT_E164",
                          "not an international phone number: write it as +<country code><number>");
    }
  }
  if (digits.empty() || digits[0] == '0')
    return InvalidField(field, "NOT_E164",
                        "not a phone number (a country code never starts with 0)");
  // E.164: at most 15 digits; fewer than 8 is no real subscriber number.
  if (digits.size() < 8 || digits.size() > 15) {
    return InvalidField(
        field, "NOT_E164",
        absl::StrCat("not a phone number (", digits.size(), " digits; E.164 has 8 to 15)"));
  }
  return "+" + digits;
}

absl::StatusOr<std::string> NormalizeEmail(std::string_view input, std::string_view field) {
  std::string_view s = ToStd(absl::StripAsciiWhitespace(ToAbsl(input)));
  if (s.empty()) return InvalidField(field, "EMPTY", "must not be empty");
  if (u8_check(U8(s), s.size()) != nullptr)
    return InvalidField(field, "BAD_UTF8", "not valid UTF-8");
  size_t at = s.rfind('@');
  if (at == std::string_view::npos)
    return InvalidField(field, "BAD_ADDRESS", "not an email address (no '@')");
  std::string_view local = s.substr(0, at);
  std::string_view domain = s.substr(at + 1);
  if (local.empty())
    return InvalidField(field, "BAD_ADDRESS", "not an email address (empty local part)");
  if (local.size() > 64)
    return InvalidField(field, "BAD_ADDRESS", "local part longer than 64 octets");
  if (!IsDotAtom(local) && !IsQuotedString(local)) {
    return InvalidField(
        field, "BAD_ADDRESS",
        absl::StrCat("not an email address (local part \"", ToAbsl(local), "\" is not RFC 5322)"));
  }
  if (!domain.empty() && domain.front() == '[')
    return InvalidField(field, "BAD_ADDRESS", "address literals ([...]) are not accepted");
  auto d = NormalizeDomain(domain, field);
  if (!d.ok()) {
    return InvalidField(field, "BAD_ADDRESS",
                        absl::StrCat("not an email address (domain \"", ToAbsl(domain),
                                     "\" is not a domain name)"));
  }
  std::string out = absl::StrCat(ToAbsl(local), "@", d->ascii);
  if (out.size() > 254) return InvalidField(field, "BAD_ADDRESS", "longer than 254 octets");
  return out;
}

absl::StatusOr<DomainName> NormalizeDomain(std::string_view input, std::string_view field) {
  std::string_view s = ToStd(absl::StripAsciiWhitespace(ToAbsl(input)));
  if (s.empty()) return InvalidField(field, "NOT_A_DOMAIN", "not a domain name (empty)");
  if (s.back() == '.') s.remove_suffix(1);
  if (s.empty() || s.size() > 1000) return NotADomain(field, "empty or too long");
  if (u8_check(U8(s), s.size()) != nullptr)
    return InvalidField(field, "BAD_UTF8", "not valid UTF-8");
  std::string in(s);
  char* ascii_raw = nullptr;
  int rc = idn2_to_ascii_8z(in.c_str(), &ascii_raw, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
  std::unique_ptr<char, FreeDeleter> ascii(ascii_raw);
  if (rc != IDN2_OK) return NotADomain(field, idn2_strerror(rc));
  DomainName out;
  out.ascii = absl::AsciiStrToLower(ascii.get());
  if (out.ascii.size() > 253) return NotADomain(field, "longer than 253 octets");
  std::vector<std::string> labels = absl::StrSplit(out.ascii, '.');
  if (labels.size() < 2)
    return NotADomain(field, "a bare top-level domain cannot receive mail for a tenant");
  for (const std::string& label : labels) {
    if (!IsLdhLabel(label)) return NotADomain(field, absl::StrCat("bad label \"", label, "\""));
  }
  // An all-numeric last label is an IPv4 literal (RFC 3696 §2).
  if (labels.back().find_first_not_of("0123456789") == std::string::npos)
    return NotADomain(field, "an IP address");
  char* uni_raw = nullptr;
  rc = idn2_to_unicode_8z8z(out.ascii.c_str(), &uni_raw, 0);
  std::unique_ptr<char, FreeDeleter> uni(uni_raw);
  if (rc != IDN2_OK) return NotADomain(field, idn2_strerror(rc));
  out.unicode = uni.get();
  // An A-label that does not decode to valid IDNA2008 input is refused: it
  // would not round-trip (e.g. "xn--a" garbage).
  if (out.unicode != out.ascii) {
    char* back_raw = nullptr;
    rc = idn2_to_ascii_8z(out.unicode.c_str(), &back_raw, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
    std::unique_ptr<char, FreeDeleter> back(back_raw);
    if (rc != IDN2_OK || absl::AsciiStrToLower(back.get()) != out.ascii)
      return NotADomain(field, "invalid A-label");
  }
  return out;
}

absl::StatusOr<std::string> NormalizeCountryCode(std::string_view input, std::string_view field) {
  std::string c = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(ToAbsl(input)));
  if (c.empty()) return InvalidField(field, "EMPTY", "must not be empty");
  if (c.size() != 2 || !absl::ascii_isalpha(static_cast<unsigned char>(c[0])) ||
      !absl::ascii_isalpha(static_cast<unsigned char>(c[1]))) {
    return InvalidField(field, "BAD_COUNTRY",
                        "not an ISO 3166-1 alpha-2 country code (like CN, DE, US)");
  }
  return c;
}

absl::StatusOr<std::string> ValidateFilename(std::string_view input, std::string_view field) {
  if (input.empty()) return std::string("document");
  if (input.size() > 255) return InvalidField(field, "TOO_LONG", "longer than 255 bytes");
  if (u8_check(U8(input), input.size()) != nullptr)
    return InvalidField(field, "BAD_UTF8", "not valid UTF-8");
  for (char c : input) {
    if (c == '/' || c == '\\')
      return InvalidField(field, "BAD_CHARACTER", "must not contain path separators");
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F)
      return InvalidField(field, "BAD_CHARACTER", "contains a control character");
  }
  if (input == "." || input == "..") return InvalidField(field, "BAD_CHARACTER", "not a file name");
  return std::string(input);
}

}  // namespace mailgrid::tenant
