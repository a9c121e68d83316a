#include "libs/mailauth/tag_list.h"

#include "absl/strings/str_cat.h"
#include "libs/base/strings.h"

namespace mailgrid::mailauth {
namespace {

bool IsFws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsFws(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsFws(s.back())) s.remove_suffix(1);
  return s;
}

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// tag-name = ALPHA *ALNUMPUNC (ALNUMPUNC = ALPHA / DIGIT / "_").
bool ValidName(std::string_view n) {
  if (n.empty() || !IsAlpha(n[0])) return false;
  for (char c : n) {
    if (!IsAlpha(c) && !IsDigit(c) && c != '_') return false;
  }
  return true;
}

// tval = 1*VALCHAR (%x21-3A / %x3C-7E) separated by FWS: no controls,
// no ';', no 8-bit bytes.
bool ValidValue(std::string_view v) {
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if (IsFws(c)) continue;
    if (u < 0x21 || u > 0x7e || c == ';') return false;
  }
  return true;
}

}  // namespace

std::optional<std::string_view> TagList::Get(std::string_view name) const {
  for (const auto& [n, v] : tags) {
    if (n == name) return std::string_view(v);
  }
  return std::nullopt;
}

absl::StatusOr<TagList> ParseTagList(std::string_view text) {
  TagList out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t semi = text.find(';', pos);
    std::string_view spec = text.substr(pos, semi == std::string_view::npos ? semi : semi - pos);
    pos = semi == std::string_view::npos ? text.size() + 1 : semi + 1;
    spec = Trim(spec);
    if (spec.empty()) {
      if (pos > text.size()) break;  // trailing ';'
      return absl::InvalidArgumentError("empty tag-spec (';;')");
    }
    size_t eq = spec.find('=');
    if (eq == std::string_view::npos)
      return absl::InvalidArgumentError(
          absl::StrCat("tag without '=': ", ToAbsl(spec.substr(0, 40))));
    std::string_view name = Trim(spec.substr(0, eq));
    std::string_view value = Trim(spec.substr(eq + 1));
    if (!ValidName(name))
      return absl::InvalidArgumentError(absl::StrCat("bad tag name: ", ToAbsl(name.substr(0, 40))));
    if (!ValidValue(value))
      return absl::InvalidArgumentError(absl::StrCat("bad characters in tag ", ToAbsl(name)));
    if (out.Has(name))
      return absl::InvalidArgumentError(absl::StrCat("duplicate tag ", ToAbsl(name)));
    out.tags.emplace_back(std::string(name), std::string(value));
  }
  return out;
}

std::string StripFws(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (!IsFws(c)) out.push_back(c);
  }
  return out;
}

}  // namespace mailgrid::mailauth
