#include "libs/imap/commands/extensions.h"

#include "libs/base/status.h"
#include "libs/imap/types.h"

namespace mailgrid::imap {
namespace {

constexpr size_t kMaxIdPairs = 30;
constexpr size_t kMaxIdName = 30;
constexpr size_t kMaxIdValue = 1024;

}  // namespace

absl::StatusOr<EnableArgs> ParseEnable(ArgCursor& in, bool uid) {
  EnableArgs a;
  if (in.AtEnd()) return BadArgument("Missing capability");
  while (!in.AtEnd()) {
    ASSIGN_OR_RETURN(std::string cap, in.Atom("capability"));
    a.capabilities.push_back(UpperCase(cap));
  }
  return a;
}

absl::StatusOr<IdArgs> ParseId(ArgCursor& in, bool uid) {
  IdArgs a;
  ASSIGN_OR_RETURN(Token * t, in.Next("ID parameters"));
  if (t->IsNil()) {
    RETURN_IF_ERROR(in.ExpectEnd());
    return a;
  }
  if (t->type != Token::Type::kList) return BadArgument("Expected ID parameter list or NIL");
  if (t->items.size() % 2 != 0) return BadArgument("ID parameters come in pairs");
  if (t->items.size() / 2 > kMaxIdPairs) return BadArgument("Too many ID parameters", "LIMIT");
  for (size_t i = 0; i < t->items.size(); i += 2) {
    ASSIGN_OR_RETURN(std::string name, TakeString(t->items[i], "ID field name"));
    if (name.size() > kMaxIdName) return BadArgument("ID field name too long", "LIMIT");
    std::optional<std::string> value;
    if (!t->items[i + 1].IsNil()) {
      ASSIGN_OR_RETURN(value, TakeString(t->items[i + 1], "ID field value"));
      if (value->size() > kMaxIdValue) return BadArgument("ID field value too long", "LIMIT");
    }
    a.fields.emplace_back(std::move(name), std::move(value));
  }
  RETURN_IF_ERROR(in.ExpectEnd());
  return a;
}

absl::StatusOr<CompressArgs> ParseCompress(ArgCursor& in, bool uid) {
  CompressArgs a;
  ASSIGN_OR_RETURN(std::string mech, in.Atom("compression mechanism"));
  a.mechanism = UpperCase(mech);
  // RFC 4978 §3: an unknown algorithm is a BAD.
  if (a.mechanism != "DEFLATE") return BadArgument("Unknown compression mechanism");
  RETURN_IF_ERROR(in.ExpectEnd());
  return a;
}

absl::StatusOr<QuotaRootArgs> ParseGetQuota(ArgCursor& in, bool uid) {
  QuotaRootArgs a;
  ASSIGN_OR_RETURN(a.root, in.Astring("quota root"));
  RETURN_IF_ERROR(in.ExpectEnd());
  return a;
}

absl::StatusOr<SetQuotaArgs> ParseSetQuota(ArgCursor& in, bool uid) {
  SetQuotaArgs a;
  ASSIGN_OR_RETURN(a.root, in.Astring("quota root"));
  ASSIGN_OR_RETURN(std::vector<Token> * list, in.List("quota limits"));
  ArgCursor l(list, in.ctx());
  while (!l.AtEnd()) {
    ASSIGN_OR_RETURN(std::string resource, l.Atom("resource name"));
    ASSIGN_OR_RETURN(uint64_t limit, l.Number64("resource limit"));
    a.limits.emplace_back(UpperCase(resource), limit);
  }
  RETURN_IF_ERROR(in.ExpectEnd());
  return a;
}

void AppendDebug(const EnableArgs& a, std::string* out) {
  *out += " capabilities=(";
  for (size_t i = 0; i < a.capabilities.size(); ++i) *out += (i ? " " : "") + a.capabilities[i];
  *out += ")";
}

void AppendDebug(const IdArgs& a, std::string* out) {
  if (a.fields.empty()) {
    *out += " NIL";
    return;
  }
  *out += " (";
  for (size_t i = 0; i < a.fields.size(); ++i) {
    if (i > 0) out->push_back(' ');
    AppendQuoted(a.fields[i].first, out);
    out->push_back(' ');
    if (a.fields[i].second) {
      AppendQuoted(*a.fields[i].second, out);
    } else {
      *out += "NIL";
    }
  }
  *out += ")";
}

void AppendDebug(const CompressArgs& a, std::string* out) { *out += " mechanism=" + a.mechanism; }

void AppendDebug(const QuotaRootArgs& a, std::string* out) {
  *out += " root=";
  AppendQuoted(a.root, out);
}

void AppendDebug(const SetQuotaArgs& a, std::string* out) {
  *out += " root=";
  AppendQuoted(a.root, out);
  *out += " limits=(";
  for (size_t i = 0; i < a.limits.size(); ++i) {
    *out += (i ? " " : "") + a.limits[i].first + " " + std::to_string(a.limits[i].second);
  }
  *out += ")";
}

}  // namespace mailgrid::imap
