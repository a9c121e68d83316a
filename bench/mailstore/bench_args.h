// The mailstored benchmark binaries' "--name=value" arguments.
#pragma once

#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace mailgrid::bench {

// The value of `arg` when it is "--<name>=<value>", else nullptr.
inline const char* FlagValue(const char* arg, const char* name) {
  const std::string prefix = absl::StrCat("--", name, "=");
  return std::string_view(arg).substr(0, prefix.size()) == prefix ? arg + prefix.size() : nullptr;
}

}  // namespace mailgrid::bench
