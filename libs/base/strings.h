// Debian 12's Abseil is built with ABSL_OPTION_USE_STD_STRING_VIEW=0, so
// absl::string_view is a distinct type that does not convert from
// std::string_view. Our APIs use std::string_view; these bridge the two.
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace mailgrid {

inline absl::string_view ToAbsl(std::string_view v) { return absl::string_view(v.data(), v.size()); }
inline std::string_view ToStd(absl::string_view v) { return std::string_view(v.data(), v.size()); }

}  // namespace mailgrid
