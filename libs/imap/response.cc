#include "libs/imap/response.h"

#include <cstring>

#include "libs/imap/chars.h"
#include "libs/imap/mutf7.h"
#include "libs/imap/utf8.h"

namespace mailgrid::imap {
namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view upper) {
  if (a.size() != upper.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (chars::ToUpper(a[i]) != upper[i]) return false;
  }
  return true;
}

bool IsAstring(std::string_view s) {
  if (s.empty() || EqualsIgnoreCase(s, "NIL")) return false;
  for (char c : s) {
    if (!chars::IsAstringChar(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool Quotable(std::string_view s, const WriterOptions& o) {
  if (s.size() > o.max_quoted_length) return false;
  bool eight_bit = false;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x80) {
      eight_bit = true;
    } else if (!chars::IsTextChar(c)) {
      return false;
    }
  }
  return !eight_bit || (o.utf8 && IsValidUtf8(s));
}

// resp-text-code = atom [SP 1*<any TEXT-CHAR except "]">].
bool IsValidCode(std::string_view code) {
  const size_t sp = code.find(' ');
  if (!IsAtom(code.substr(0, sp))) return false;
  if (sp == std::string_view::npos) return true;
  if (sp + 1 == code.size()) return false;
  for (char c : code.substr(sp + 1)) {
    if (!chars::IsTextChar(static_cast<unsigned char>(c)) || c == ']') return false;
  }
  return true;
}

}  // namespace

bool IsAtom(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!chars::IsAtomChar(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

namespace {

std::string RepairText(std::string_view text, bool utf8) {
  std::string out;
  out.reserve(text.size());
  const bool keep_8bit = utf8 && IsValidUtf8(text);
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      out.push_back(' ');  // CR and LF would end the line; other controls only confuse
    } else if (c >= 0x80 && !keep_8bit) {
      out.push_back('?');
    } else {
      out.push_back(ch);
    }
  }
  // A text starting with "[" would be read as a response code.
  if (!out.empty() && out[0] == '[') out.insert(out.begin(), ' ');
  // A line ending in "}" may be read as a literal announcement ("{5}") by a
  // client, which would then swallow the next response: never end on one
  // (the text can echo client bytes, e.g. an unknown SEARCH key).
  if (!out.empty() && out.back() == '}') out.push_back('.');
  return out;
}

}  // namespace

std::string SanitizeText(std::string_view text, bool utf8) {
  std::string out = RepairText(text, utf8);
  if (out.empty()) out = "Completed";  // RFC 3501 text = 1*TEXT-CHAR
  return out;
}

ResponseWriter::ResponseWriter(std::string prefix, WriterOptions options)
    : out_(std::move(prefix)), options_(options) {}

ResponseWriter ResponseWriter::Untagged(WriterOptions options) {
  return ResponseWriter("* ", options);
}
ResponseWriter ResponseWriter::Continuation(WriterOptions options) {
  return ResponseWriter("+ ", options);
}

bool IsValidTag(std::string_view tag) {
  bool ok = !tag.empty();
  for (char c : tag) ok = ok && chars::IsTagChar(static_cast<unsigned char>(c));
  return ok;
}

ResponseWriter ResponseWriter::Tagged(std::string_view tag, WriterOptions options) {
  const bool ok = IsValidTag(tag);
  ResponseWriter w(ok ? std::string(tag) + " " : "* ", options);
  if (!ok) w.Fail("invalid tag");
  return w;
}

void ResponseWriter::Fail(std::string_view why) {
  if (error_.ok()) error_ = absl::InvalidArgumentError(std::string("bad response: ").append(why));
}

bool ResponseWriter::Usable() {
  if (ended_) Fail("element after the response text");
  return error_.ok();
}

void ResponseWriter::Separate() {
  if (need_space_) out_.push_back(' ');
  need_space_ = true;
}

ResponseWriter& ResponseWriter::Atom(std::string_view atom) {
  if (!Usable()) return *this;
  if (!IsAtom(atom)) {
    Fail("invalid atom");
    return *this;
  }
  Separate();
  out_.append(atom);
  return *this;
}

ResponseWriter& ResponseWriter::Number(uint64_t n) {
  if (!Usable()) return *this;
  Separate();
  out_ += std::to_string(n);
  return *this;
}

ResponseWriter& ResponseWriter::Nil() {
  if (!Usable()) return *this;
  Separate();
  out_ += "NIL";
  return *this;
}

ResponseWriter& ResponseWriter::String(std::string_view s) {
  if (!Usable()) return *this;
  if (!Quotable(s, options_)) return Literal(s);
  Separate();
  out_.push_back('"');
  for (char c : s) {
    if (c == '"' || c == '\\') out_.push_back('\\');
    out_.push_back(c);
  }
  out_.push_back('"');
  return *this;
}

ResponseWriter& ResponseWriter::AString(std::string_view s) {
  if (!Usable()) return *this;
  if (!IsAstring(s)) return String(s);
  Separate();
  out_.append(s);
  return *this;
}

ResponseWriter& ResponseWriter::NString(std::optional<std::string_view> s) {
  return s ? String(*s) : Nil();
}

ResponseWriter& ResponseWriter::Literal(std::string_view s) {
  if (!Usable()) return *this;
  if (std::memchr(s.data(), '\0', s.size()) != nullptr) {
    Fail("NUL in a literal (only literal8 may carry it)");
    return *this;
  }
  Separate();
  out_ += "{" + std::to_string(s.size()) + "}\r\n";
  out_.append(s);
  return *this;
}

ResponseWriter& ResponseWriter::Literal8(std::string_view s) {
  if (!Usable()) return *this;
  Separate();
  out_ += "~{" + std::to_string(s.size()) + "}\r\n";
  out_.append(s);
  return *this;
}

ResponseWriter& ResponseWriter::Mailbox(std::string_view name) {
  if (!Usable()) return *this;
  if (EqualsIgnoreCase(name, "INBOX")) return Atom("INBOX");
  if (options_.utf8) {
    if (!IsValidUtf8(name)) Fail("mailbox name is not UTF-8");
    return AString(name);
  }
  auto encoded = EncodeMutf7(name);
  if (!encoded.ok()) {
    Fail("mailbox name is not UTF-8");
    return *this;
  }
  return AString(*encoded);
}

ResponseWriter& ResponseWriter::Flag(std::string_view flag) {
  if (!Usable()) return *this;
  const bool system = !flag.empty() && flag[0] == '\\';
  const std::string_view name = system ? flag.substr(1) : flag;
  if (!(IsAtom(name) || (system && name == "*"))) {
    Fail("invalid flag");
    return *this;
  }
  Separate();
  out_.append(flag);
  return *this;
}

ResponseWriter& ResponseWriter::Open() {
  if (!Usable()) return *this;
  Separate();
  out_.push_back('(');
  need_space_ = false;
  ++depth_;
  return *this;
}

ResponseWriter& ResponseWriter::Close() {
  if (!Usable()) return *this;
  if (depth_ == 0) {
    Fail("unbalanced list");
    return *this;
  }
  out_.push_back(')');
  --depth_;
  need_space_ = true;
  return *this;
}

ResponseWriter& ResponseWriter::Raw(std::string_view element) {
  if (!Usable()) return *this;
  bool ok = !element.empty();
  for (char c : element) ok = ok && c >= 0x20 && c < 0x7f;
  if (!ok) {
    Fail("raw element must be printable ASCII");
    return *this;
  }
  Separate();
  out_.append(element);
  return *this;
}

ResponseWriter& ResponseWriter::Status(imap::Condition c, std::string_view code,
                                       std::string_view text) {
  if (!Usable()) return *this;
  if (depth_ != 0) {
    Fail("status inside a list");
    return *this;
  }
  Separate();
  out_.append(ConditionName(c));
  out_.push_back(' ');
  if (!code.empty()) {
    if (!IsValidCode(code)) {
      Fail("invalid response code");
      return *this;
    }
    out_.append("[").append(code).append("] ");
  }
  out_ += SanitizeText(text, options_.utf8);
  ended_ = true;
  return *this;
}

ResponseWriter& ResponseWriter::Text(std::string_view text) {
  if (!Usable()) return *this;
  Separate();
  out_ += SanitizeText(text, options_.utf8);
  ended_ = true;
  return *this;
}

absl::StatusOr<std::string> ResponseWriter::Finish() {
  if (!error_.ok()) return error_;
  if (depth_ != 0) return absl::InvalidArgumentError("bad response: unbalanced list");
  out_ += "\r\n";
  return std::move(out_);
}

std::string StatusLine(std::string_view tag, imap::Condition c, std::string_view code,
                       std::string_view text, WriterOptions options) {
  // BYE is always untagged (resp-cond-bye appears only in untagged data).
  const bool tagged = IsValidTag(tag) && c != Condition::kBye;
  ResponseWriter w =
      tagged ? ResponseWriter::Tagged(tag, options) : ResponseWriter::Untagged(options);
  w.Status(c, IsValidCode(code) ? code : "", text);
  auto line = w.Finish();
  return line.ok() ? *line : "* BAD Internal error\r\n";
}

std::string FormatError(const ProtocolError& e, WriterOptions options) {
  return StatusLine(e.tag, e.condition, e.code, e.text, options);
}

std::string ContinuationLine(std::string_view text) {
  // May be empty: an empty SASL challenge is "+ " and nothing else.
  return "+ " + RepairText(text, false) + "\r\n";
}

}  // namespace mailgrid::imap
