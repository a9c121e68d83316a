// RFC 4180 CSV, as ImportUsers reads it: comma separated, fields optionally
// in double quotes ("" inside a quoted field is one quote; quoted fields may
// span lines), CRLF or LF line ends, a UTF-8 BOM ignored, blank lines
// skipped. Pure function; unit-tested in csv_test.cc.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mailgrid::tenant {

struct CsvRow {
  int64_t line = 0;  // 1-based line where the row starts
  std::vector<std::string> fields;
};

// INVALID_ARGUMENT "line N: ..." for an unterminated quote or a stray
// character after a closing quote.
absl::StatusOr<std::vector<CsvRow>> ParseCsv(std::string_view data);

}  // namespace mailgrid::tenant
