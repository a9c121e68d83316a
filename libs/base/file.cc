#include "libs/base/file.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace mailgrid::file {

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace mailgrid::file
