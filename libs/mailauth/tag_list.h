// RFC 6376 §3.2 tag=value lists, shared by DKIM-Signature, DKIM key records
// and DMARC records (RFC 7489 §6.3 uses the same syntax).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace mailgrid::mailauth {

struct TagList {
  // In order; names as written (case-sensitive per RFC 6376), values with
  // surrounding folding white space removed (inner white space kept).
  std::vector<std::pair<std::string, std::string>> tags;

  std::optional<std::string_view> Get(std::string_view name) const;
  bool Has(std::string_view name) const { return Get(name).has_value(); }
};

// INVALID_ARGUMENT for a syntax error or a duplicated tag (§3.2: "Tags with
// duplicate names MUST NOT occur ... the entire tag-list is invalid").
// An empty list or a trailing ';' is valid.
absl::StatusOr<TagList> ParseTagList(std::string_view text);

// `text` with every space, tab, CR and LF removed (base64 tag values).
std::string StripFws(std::string_view text);

}  // namespace mailgrid::mailauth
