#include "services/tenant/csv.h"

#include "absl/strings/str_cat.h"

namespace mailgrid::tenant {

absl::StatusOr<std::vector<CsvRow>> ParseCsv(std::string_view data) {
  if (data.size() >= 3 && data.substr(0, 3) == "\xEF\xBB\xBF") data.remove_prefix(3);
  std::vector<CsvRow> rows;
  CsvRow row;
  std::string field;
  int64_t line = 1;
  row.line = 1;
  bool in_quotes = false, after_quote = false, row_has_content = false;
  auto end_field = [&]() {
    row.fields.push_back(std::move(field));
    field.clear();
    after_quote = false;
  };
  auto end_row = [&]() {
    end_field();
    // A blank line is one empty field: skipped.
    if (row_has_content || row.fields.size() > 1) rows.push_back(std::move(row));
    row = CsvRow();
    row_has_content = false;
  };
  for (size_t i = 0; i < data.size(); ++i) {
    char c = data[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < data.size() && data[i + 1] == '"') {
          field.push_back('"');
          ++i;
        } else {
          in_quotes = false;
          after_quote = true;
        }
      } else {
        if (c == '\n') ++line;
        field.push_back(c);
      }
      continue;
    }
    if (c == ',') {
      end_field();
      row_has_content = true;
    } else if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < data.size() && data[i + 1] == '\n') ++i;
      end_row();
      ++line;
      row.line = line;
    } else if (c == '"') {
      if (!field.empty() || after_quote)
        return absl::InvalidArgumentError(
            absl::StrCat("line ", line, ": a quote inside an unquoted field"));
      in_quotes = true;
      row_has_content = true;
    } else {
      if (after_quote)
        return absl::InvalidArgumentError(
            absl::StrCat("line ", line, ": text after a closing quote"));
      field.push_back(c);
      row_has_content = true;
    }
  }
  if (in_quotes)
    return absl::InvalidArgumentError(
        absl::StrCat("line ", row.line, ": a quoted field is never closed"));
  if (row_has_content || !field.empty() || !row.fields.empty()) end_row();
  return rows;
}

}  // namespace mailgrid::tenant
