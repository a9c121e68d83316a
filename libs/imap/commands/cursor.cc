#include "libs/imap/commands/cursor.h"

#include "libs/base/status.h"
#include "libs/imap/chars.h"
#include "libs/imap/mutf7.h"
#include "libs/imap/types.h"
#include "libs/imap/utf8.h"

namespace mailgrid::imap {
namespace {

absl::Status Expected(std::string_view what) {
  return BadArgument(std::string("Expected ").append(what));
}

bool AllOf(std::string_view s, bool (*pred)(unsigned char)) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!pred(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool AtomPred(unsigned char c) { return chars::IsAtomChar(c); }
bool AstringPred(unsigned char c) { return chars::IsAstringChar(c); }
bool ListPred(unsigned char c) { return chars::IsListChar(c); }

constexpr std::string_view kSystemFlags[] = {"\\Answered", "\\Flagged", "\\Deleted", "\\Seen",
                                             "\\Draft"};

}  // namespace

std::string UpperCase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = chars::ToUpper(c);
  return out;
}

absl::StatusOr<uint64_t> ParseUnsigned(std::string_view s, uint64_t max, bool nz,
                                       std::string_view what) {
  if (s.empty() || s.size() > 20 || (nz && s[0] == '0')) return Expected(what);
  uint64_t v = 0;
  for (char c : s) {
    if (!chars::IsDigit(static_cast<unsigned char>(c))) return Expected(what);
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (max - d) / 10) return BadArgument(std::string(what).append(" out of range"));
    v = v * 10 + d;
  }
  if (nz && v == 0) return Expected(what);
  return v;
}

absl::StatusOr<std::string> TakeString(Token& t, std::string_view what) {
  if (!t.is_string() || t.literal8) return Expected(what);
  return std::move(t.value);
}

absl::StatusOr<std::string> TakeAstring(Token& t, std::string_view what) {
  if (t.type == Token::Type::kAtom) {
    if (!AllOf(t.value, AstringPred)) return Expected(what);
    return std::move(t.value);
  }
  return TakeString(t, what);
}

absl::StatusOr<std::string> TakeHeaderFieldName(Token& t) {
  ASSIGN_OR_RETURN(std::string name, TakeAstring(t, "header field name"));
  if (name.empty()) return Expected("header field name");
  for (char c : name) {
    if (c <= 0x20 || c >= 0x7f || c == ':') return BadArgument("Invalid header field name");
  }
  return name;
}

absl::StatusOr<std::string> DecodeMailboxName(std::string_view raw, const CommandContext& ctx) {
  if (UpperCase(raw) == "INBOX") return std::string("INBOX");
  std::string name;
  if (ctx.utf8_accept) {
    if (!IsValidUtf8(raw)) return BadArgument("Mailbox name is not valid UTF-8");
    name = std::string(raw);
  } else {
    auto decoded = DecodeMutf7(raw);
    if (!decoded.ok()) {
      // The codec's reason ("unterminated shift", ...) helps a client
      // author and reveals nothing about the store.
      const auto why = decoded.status().message();
      return BadArgument("Invalid mailbox name: " + std::string(why.data(), why.size()));
    }
    name = std::move(*decoded);
  }
  for (char c : name) {
    if (chars::IsCtl(static_cast<unsigned char>(c))) {
      return BadArgument("Mailbox name contains a control character");
    }
  }
  return name;
}

absl::StatusOr<std::string> TakeMailbox(Token& t, const CommandContext& ctx,
                                        std::string_view what) {
  ASSIGN_OR_RETURN(std::string raw, TakeAstring(t, what));
  return DecodeMailboxName(raw, ctx);
}

absl::StatusOr<std::string> TakeListMailbox(Token& t, const CommandContext& ctx,
                                            std::string_view what) {
  std::string raw;
  if (t.type == Token::Type::kAtom) {
    if (!AllOf(t.value, ListPred)) return Expected(what);
    raw = std::move(t.value);
  } else {
    ASSIGN_OR_RETURN(raw, TakeString(t, what));
  }
  return DecodeMailboxName(raw, ctx);
}

absl::StatusOr<std::string> TakeFlag(Token& t) {
  if (t.type != Token::Type::kAtom) return Expected("flag");
  const std::string_view v = t.value;
  if (v.empty() || v[0] != '\\') {
    if (!AllOf(v, AtomPred)) return Expected("flag");
    return std::move(t.value);
  }
  const std::string upper = UpperCase(v);
  for (std::string_view f : kSystemFlags) {
    if (upper == UpperCase(f)) return std::string(f);
  }
  if (upper == "\\RECENT" || upper == "\\*") {
    return BadArgument(std::string(v).append(" cannot be set by a client"));
  }
  if (!AllOf(v.substr(1), AtomPred)) return Expected("flag");
  return std::move(t.value);
}

absl::StatusOr<std::vector<std::string>> TakeFlagList(Token& t) {
  if (t.type != Token::Type::kList) return Expected("flag list");
  std::vector<std::string> flags;
  flags.reserve(t.items.size());
  for (Token& item : t.items) {
    ASSIGN_OR_RETURN(std::string f, TakeFlag(item));
    flags.push_back(std::move(f));
  }
  return flags;
}

absl::StatusOr<Token*> ArgCursor::Next(std::string_view what) {
  if (AtEnd()) return BadArgument(std::string("Missing ").append(what));
  return &(*tokens_)[next_++];
}

absl::Status ArgCursor::ExpectEnd() const {
  if (!AtEnd()) return BadArgument("Unexpected extra arguments");
  return absl::OkStatus();
}

absl::StatusOr<std::string> ArgCursor::Astring(std::string_view what) {
  ASSIGN_OR_RETURN(Token * t, Next(what));
  return TakeAstring(*t, what);
}

absl::StatusOr<std::string> ArgCursor::Atom(std::string_view what) {
  ASSIGN_OR_RETURN(Token * t, Next(what));
  if (t->type != Token::Type::kAtom || !AllOf(t->value, AtomPred)) return Expected(what);
  return std::move(t->value);
}

absl::StatusOr<std::string> ArgCursor::Keyword(std::string_view what) {
  ASSIGN_OR_RETURN(Token * t, Next(what));
  if (t->type != Token::Type::kAtom) return Expected(what);
  return UpperCase(t->value);
}

absl::StatusOr<std::vector<Token>*> ArgCursor::List(std::string_view what) {
  ASSIGN_OR_RETURN(Token * t, Next(what));
  if (t->type != Token::Type::kList) return Expected(what);
  return &t->items;
}

absl::StatusOr<uint32_t> ArgCursor::Number(std::string_view what) {
  ASSIGN_OR_RETURN(Token * t, Next(what));
  if (t->type != Token::Type::kAtom) return Expected(what);
  ASSIGN_OR_RETURN(uint64_t v, ParseUnsigned(t->value, 0xFFFFFFFFull, false, what));
  return static_cast<uint32_t>(v);
}

absl::StatusOr<uint32_t> ArgCursor::NzNumber(std::string_view what) {
  ASSIGN_OR_RETURN(Token * t, Next(what));
  if (t->type != Token::Type::kAtom) return Expected(what);
  ASSIGN_OR_RETURN(uint64_t v, ParseUnsigned(t->value, 0xFFFFFFFFull, true, what));
  return static_cast<uint32_t>(v);
}

absl::StatusOr<uint64_t> ArgCursor::Number64(std::string_view what) {
  ASSIGN_OR_RETURN(Token * t, Next(what));
  if (t->type != Token::Type::kAtom) return Expected(what);
  return ParseUnsigned(t->value, 0x7FFFFFFFFFFFFFFFull, false, what);
}

absl::StatusOr<uint64_t> ArgCursor::ModSeq(std::string_view what) {
  ASSIGN_OR_RETURN(Token * t, Next(what));
  if (t->type != Token::Type::kAtom) return Expected(what);
  return ParseUnsigned(t->value, 0x7FFFFFFFFFFFFFFFull, true, what);
}

absl::StatusOr<std::string> ArgCursor::Mailbox(std::string_view what) {
  ASSIGN_OR_RETURN(Token * t, Next(what));
  return TakeMailbox(*t, ctx_, what);
}

absl::StatusOr<std::string> ArgCursor::ListMailbox(std::string_view what) {
  ASSIGN_OR_RETURN(Token * t, Next(what));
  return TakeListMailbox(*t, ctx_, what);
}

absl::StatusOr<SequenceSet> ArgCursor::Sequence(std::string_view what) {
  ASSIGN_OR_RETURN(Token * t, Next(what));
  if (t->type != Token::Type::kAtom) return Expected(what);
  return SequenceSet::Parse(t->value, ctx_.limits.max_sequence_ranges);
}

void AppendQuoted(std::string_view s, std::string* out) { *out += QuoteForDebug(s); }

void AppendStrings(const std::vector<std::string>& v, std::string* out) {
  out->push_back('(');
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out->push_back(' ');
    AppendQuoted(v[i], out);
  }
  out->push_back(')');
}

}  // namespace mailgrid::imap
