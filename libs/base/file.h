// Reading a small file whole (keys, certificates, config): one helper so
// every daemon words a missing file the same way.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace mailgrid::file {

// The file's bytes, or INVALID_ARGUMENT "cannot read <path>".
absl::StatusOr<std::string> ReadAll(const std::string& path);

}  // namespace mailgrid::file
