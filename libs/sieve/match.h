// Match types (RFC 5228 §2.7.1) under the comparators i;octet and
// i;ascii-casemap (RFC 4790 §9.2-9.3). Internal to libs/sieve.
#pragma once

#include <string_view>

#include "libs/sieve/program.h"

namespace mailgrid::sieve::internal {

// One key against one value. :matches understands '*' (any sequence), '?'
// (one character: one octet under i;octet, one UTF-8 character under
// i;ascii-casemap) and '\' escaping the next character. Worst case
// O(key × value), never exponential.
bool MatchOne(Comparator comparator, MatchType type, std::string_view key, std::string_view value);

// True when any key of `match` matches `value`.
bool MatchAny(const Match& match, std::string_view value);

}  // namespace mailgrid::sieve::internal
