#include "services/identity/policy.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/base/strings.h"
#include "services/identity/errors.h"

namespace mailgrid::identity {

extern const char kBuiltinCommonPasswords[];

CommonPasswords CommonPasswords::Builtin() {
  CommonPasswords list;
  list.AddText(kBuiltinCommonPasswords);
  return list;
}

void CommonPasswords::AddText(std::string_view text) {
  for (absl::string_view line : absl::StrSplit(ToAbsl(text), '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    words_.insert(absl::AsciiStrToLower(line));
  }
}

absl::Status CommonPasswords::LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  AddText(ss.str());
  return absl::OkStatus();
}

bool CommonPasswords::Contains(std::string_view password) const {
  std::string lower = absl::AsciiStrToLower(ToAbsl(password));
  if (words_.contains(lower)) return true;
  size_t end = lower.size();
  while (end > 0 && (absl::ascii_isdigit(lower[end - 1]) || absl::ascii_ispunct(lower[end - 1])))
    --end;
  if (end == 0) return true;  // digits and symbols only: "12345678901234"
  if (end < lower.size() && words_.contains(lower.substr(0, end))) return true;
  // One character repeated ("aaaaaaaaaaaa").
  return lower.find_first_not_of(lower[0]) == std::string::npos;
}

bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

size_t CodePoints(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

absl::Status CheckPresentedPassword(std::string_view password, std::string_view field) {
  if (password.size() > kMaxPasswordBytes)
    return InvalidField(field, "TOO_LONG", "at most 1024 bytes");
  if (!IsUtf8(password)) return InvalidField(field, "NOT_UTF8", "not UTF-8");
  return absl::OkStatus();
}

uint32_t EffectiveMinLength(const v1::PasswordPolicy& policy) {
  return policy.min_length() == 0 ? kDefaultMinLength : policy.min_length();
}

absl::Status CheckNewPassword(const v1::PasswordPolicy& policy, std::string_view password,
                              const CommonPasswords& common, std::string_view field) {
  if (!IsUtf8(password)) return InvalidField(field, "NOT_UTF8", "not UTF-8");
  if (password.size() > kMaxPasswordBytes)
    return InvalidField(field, "TOO_LONG", "at most 1024 bytes");
  uint32_t min = EffectiveMinLength(policy);
  if (CodePoints(password) < min)
    return InvalidField(field, "TOO_SHORT", absl::StrCat("at least ", min, " characters"));
  if (!policy.allow_common_passwords() && common.Contains(password))
    return InvalidField(field, "TOO_COMMON", "too common; choose another");
  return absl::OkStatus();
}

absl::Status ValidatePolicy(const v1::PasswordPolicy& p) {
  if (p.min_length() != 0 && (p.min_length() < 8 || p.min_length() > 128))
    return InvalidField("policy.min_length", "OUT_OF_RANGE", "between 8 and 128");
  if (p.history_count() > 24)
    return InvalidField("policy.history_count", "OUT_OF_RANGE", "at most 24");
  if (p.max_password_age_days() > 3650)
    return InvalidField("policy.max_password_age_days", "OUT_OF_RANGE", "at most 3650");
  return absl::OkStatus();
}

}  // namespace mailgrid::identity
