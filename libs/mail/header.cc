#include "libs/mail/header.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "libs/mail/ascii.h"

namespace mailgrid::mail {
namespace {

using ascii::IsWsp;

// One physical line: [begin, content_end) is the text without its line
// ending, [begin, next) includes it.
struct Line {
  size_t begin = 0;
  size_t content_end = 0;
  size_t next = 0;
};

Line NextLine(std::string_view raw, size_t pos) {
  Line line;
  line.begin = pos;
  const void* nl = std::memchr(raw.data() + pos, '\n', raw.size() - pos);
  if (nl == nullptr) {
    line.content_end = raw.size();
    line.next = raw.size();
    return line;
  }
  size_t at = static_cast<const char*>(nl) - raw.data();
  line.next = at + 1;
  line.content_end = (at > pos && raw[at - 1] == '\r') ? at - 1 : at;
  return line;
}

// Collects fields line by line; a field is closed when the next non-
// continuation line (or the end of the header) arrives.
class Builder {
 public:
  Builder(std::string_view raw, size_t base, Header* out) : raw_(raw), base_(base), out_(out) {}

  void StartField(const Line& line, size_t colon) {
    Close();
    size_t name_end = colon;
    while (name_end > line.begin && IsWsp(raw_[name_end - 1])) --name_end;
    std::string_view name = raw_.substr(line.begin, name_end - line.begin);
    if (!IsValidFieldName(name)) {
      Malformed(line);
      return;
    }
    open_ = true;
    field_ = HeaderField{};
    field_.name = std::string(name);
    field_.line.offset = line.begin;
    field_.raw_value.offset = colon + 1;
    Extend(line);
  }

  // A continuation line: part of the open field, or of the malformed line
  // before it.
  void Continue(const Line& line) {
    if (open_) {
      Extend(line);
    } else {
      Malformed(line);
    }
  }

  void Malformed(const Line& line) {
    Close();
    if (!out_->malformed.empty() && out_->malformed.back().end() == base_ + line.begin &&
        line.begin < line.content_end && IsWsp(raw_[line.begin])) {
      out_->malformed.back().size += line.next - line.begin;  // its continuation
      return;
    }
    out_->malformed.push_back({base_ + line.begin, line.next - line.begin});
  }

  void Close() {
    if (!open_) return;
    open_ = false;
    std::string_view value =
        raw_.substr(field_.raw_value.offset, value_end_ - field_.raw_value.offset);
    field_.value = Unfold(value);
    field_.raw_value.size = value.size();
    field_.raw_value.offset += base_;
    field_.line.size = line_next_ - field_.line.offset;
    field_.line.offset += base_;
    out_->fields.push_back(std::move(field_));
  }

  // Drops the open field without recording it (a limit was hit inside it).
  void Abandon() { open_ = false; }

  size_t field_count() const { return out_->fields.size() + (open_ ? 1 : 0); }

 private:
  void Extend(const Line& line) {
    value_end_ = line.content_end;
    line_next_ = line.next;
  }

  std::string_view raw_;
  size_t base_;
  Header* out_;
  bool open_ = false;
  HeaderField field_;
  size_t value_end_ = 0;
  size_t line_next_ = 0;
};

}  // namespace

bool HeaderNameEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii::Lower(a[i]) != ascii::Lower(b[i])) return false;
  }
  return true;
}

bool IsValidFieldName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (u < 33 || u > 126 || c == ':') return false;
  }
  return true;
}

std::string Unfold(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '\n') continue;
    if (c == '\r' && i + 1 < raw.size() && raw[i + 1] == '\n') continue;
    out.push_back(c);
  }
  size_t b = 0;
  while (b < out.size() && IsWsp(out[b])) ++b;
  size_t e = out.size();
  while (e > b && IsWsp(out[e - 1])) --e;
  return out.substr(b, e - b);
}

std::string ToCrlf(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() + raw.size() / 32);
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r')) out.push_back('\r');
    out.push_back(raw[i]);
  }
  return out;
}

Header ParseHeaderLenient(std::string_view raw, const HeaderLimits& limits, size_t base) {
  Header out;
  Builder builder(raw, base, &out);
  size_t pos = 0;
  size_t line_no = 0;
  size_t end = raw.size();
  out.missing_blank_line = true;
  while (pos < raw.size()) {
    Line line = NextLine(raw, pos);
    ++line_no;
    pos = line.next;
    if (line.content_end == line.begin) {  // the blank line
      end = line.next;
      out.missing_blank_line = false;
      break;
    }
    if (out.overflow != HeaderOverflow::kNone) continue;  // only looking for the end
    HeaderOverflow hit = HeaderOverflow::kNone;
    if (line.next - line.begin > limits.max_line_bytes) {
      hit = HeaderOverflow::kLineBytes;
    } else if (line.next > limits.max_header_bytes) {
      hit = HeaderOverflow::kHeaderBytes;
    }
    bool continuation = IsWsp(raw[line.begin]);
    if (hit == HeaderOverflow::kNone && !continuation &&
        builder.field_count() >= limits.max_fields) {
      builder.Close();
      if (out.fields.size() >= limits.max_fields) hit = HeaderOverflow::kFields;
    }
    if (hit != HeaderOverflow::kNone) {
      // A field cut by the limit is dropped whole: half a field could change
      // its meaning (an address list missing its end). A field that ended
      // before this line is complete and kept.
      if (continuation) {
        builder.Abandon();
      } else {
        builder.Close();
      }
      out.overflow = hit;
      out.overflow_line = line_no;
      continue;
    }
    if (continuation) {
      builder.Continue(line);
      continue;
    }
    const void* colon = std::memchr(raw.data() + line.begin, ':', line.content_end - line.begin);
    if (colon == nullptr) {
      builder.Malformed(line);
    } else {
      builder.StartField(line, static_cast<const char*>(colon) - raw.data());
    }
  }
  builder.Close();
  out.block = {base, end};
  out.has_nul = std::memchr(raw.data(), '\0', end) != nullptr;
  return out;
}

std::string DescribeOverflow(const Header& header, const HeaderLimits& limits) {
  switch (header.overflow) {
    case HeaderOverflow::kNone:
      return "";
    case HeaderOverflow::kHeaderBytes:
      return absl::StrCat("header is longer than ", limits.max_header_bytes, " bytes (at line ",
                          header.overflow_line, ")");
    case HeaderOverflow::kLineBytes:
      return absl::StrCat("header line ", header.overflow_line, " is longer than ",
                          limits.max_line_bytes, " bytes");
    case HeaderOverflow::kFields:
      return absl::StrCat("header has more than ", limits.max_fields, " fields (at line ",
                          header.overflow_line, ")");
  }
  return "header limit exceeded";
}

absl::StatusOr<Header> ParseHeader(std::string_view raw, const HeaderLimits& limits) {
  Header header = ParseHeaderLenient(raw, limits);
  if (header.overflow != HeaderOverflow::kNone) {
    return absl::InvalidArgumentError(DescribeOverflow(header, limits));
  }
  return header;
}

const HeaderField* Header::First(std::string_view name) const {
  for (const HeaderField& f : fields) {
    if (HeaderNameEquals(f.name, name)) return &f;
  }
  return nullptr;
}

std::vector<const HeaderField*> Header::All(std::string_view name) const {
  std::vector<const HeaderField*> out;
  for (const HeaderField& f : fields) {
    if (HeaderNameEquals(f.name, name)) out.push_back(&f);
  }
  return out;
}

std::optional<std::string_view> Header::Value(std::string_view name) const {
  const HeaderField* f = First(name);
  if (f == nullptr) return std::nullopt;
  return std::string_view(f->value);
}

}  // namespace mailgrid::mail
