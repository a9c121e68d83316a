#include "libs/imap/commands/fetch.h"

#include "libs/base/status.h"
#include "libs/imap/types.h"

namespace mailgrid::imap {
namespace {

constexpr std::pair<std::string_view, FetchAttr> kSimple[] = {
    {"ENVELOPE", FetchAttr::kEnvelope},
    {"FLAGS", FetchAttr::kFlags},
    {"INTERNALDATE", FetchAttr::kInternalDate},
    {"RFC822", FetchAttr::kRfc822},
    {"RFC822.HEADER", FetchAttr::kRfc822Header},
    {"RFC822.SIZE", FetchAttr::kRfc822Size},
    {"RFC822.TEXT", FetchAttr::kRfc822Text},
    {"BODY", FetchAttr::kBody},
    {"BODYSTRUCTURE", FetchAttr::kBodyStructure},
    {"UID", FetchAttr::kUid},
    {"MODSEQ", FetchAttr::kModSeq},
};

FetchItem Simple(FetchAttr attr) {
  FetchItem item;
  item.attr = attr;
  return item;
}

// ALL / FAST / FULL (RFC 3501 §6.4.5).
bool ExpandMacro(std::string_view name, std::vector<FetchItem>* items) {
  if (name != "ALL" && name != "FAST" && name != "FULL") return false;
  items->push_back(Simple(FetchAttr::kFlags));
  items->push_back(Simple(FetchAttr::kInternalDate));
  items->push_back(Simple(FetchAttr::kRfc822Size));
  if (name != "FAST") items->push_back(Simple(FetchAttr::kEnvelope));
  if (name == "FULL") items->push_back(Simple(FetchAttr::kBody));
  return true;
}

absl::Status ParseHeaderList(std::vector<Token>& list, FetchSection* s) {
  if (list.empty()) return BadArgument("Empty header field list");
  for (Token& t : list) {
    ASSIGN_OR_RETURN(std::string name, TakeHeaderFieldName(t));
    s->fields.push_back(std::move(name));
  }
  return absl::OkStatus();
}

// One fetch-att. A section with a header list spans three tokens:
// "BODY[HEADER.FIELDS" "(A B)" "]<0.10>".
absl::StatusOr<FetchItem> ParseItem(ArgCursor& in) {
  ASSIGN_OR_RETURN(Token * t, in.Next("fetch item"));
  if (t->type != Token::Type::kAtom) return BadArgument("Expected fetch item");
  const std::string_view v = t->value;
  const size_t open = v.find('[');
  const std::string name = UpperCase(v.substr(0, open));
  if (open == std::string_view::npos) {
    for (const auto& [n, attr] : kSimple) {
      if (n == name) return Simple(attr);
    }
    return BadArgument("Unknown fetch item " + name.substr(0, 40));
  }
  FetchItem item;
  if (name == "BODY" || name == "BODY.PEEK") {
    item.attr = FetchAttr::kBodySection;
  } else if (name == "BINARY" || name == "BINARY.PEEK") {
    item.attr = FetchAttr::kBinary;
  } else if (name == "BINARY.SIZE") {
    item.attr = FetchAttr::kBinarySize;
  } else {
    return BadArgument("Unknown fetch item " + name.substr(0, 40));
  }
  item.peek = name.size() > 5 && name.substr(name.size() - 5) == ".PEEK";
  const bool binary = item.attr != FetchAttr::kBodySection;
  std::string_view rest = v.substr(open + 1);
  const size_t close = rest.find(']');
  std::string_view after;
  if (close == std::string_view::npos) {
    // The section continues with a header list: the spec must want one.
    ASSIGN_OR_RETURN(item.section, ParseSectionSpec(rest, binary));
    if (item.section.text != FetchSection::Text::kHeaderFields &&
        item.section.text != FetchSection::Text::kHeaderFieldsNot) {
      return BadArgument("Missing \"]\" in fetch section");
    }
    ASSIGN_OR_RETURN(std::vector<Token> * list, in.List("header field list"));
    RETURN_IF_ERROR(ParseHeaderList(*list, &item.section));
    ASSIGN_OR_RETURN(Token * end, in.Next("\"]\""));
    if (end->type != Token::Type::kAtom || end->value.empty() || end->value[0] != ']') {
      return BadArgument("Expected \"]\" after header field list");
    }
    // `end` outlives this function (it is in the request), so `after` may view it.
    after = std::string_view(end->value).substr(1);
  } else {
    ASSIGN_OR_RETURN(item.section, ParseSectionSpec(rest.substr(0, close), binary));
    if (item.section.text == FetchSection::Text::kHeaderFields ||
        item.section.text == FetchSection::Text::kHeaderFieldsNot) {
      return BadArgument("HEADER.FIELDS needs a header field list");
    }
    after = rest.substr(close + 1);
  }
  ASSIGN_OR_RETURN(item.partial, ParsePartial(after));
  if (item.partial && item.attr == FetchAttr::kBinarySize) {
    return BadArgument("BINARY.SIZE takes no partial range");
  }
  return item;
}

absl::Status ParseModifiers(std::vector<Token>& mods, const CommandContext& ctx, bool uid,
                            FetchArgs* a) {
  ArgCursor in(&mods, ctx);
  if (in.AtEnd()) return BadArgument("Empty FETCH modifiers");
  while (!in.AtEnd()) {
    ASSIGN_OR_RETURN(std::string name, in.Keyword("FETCH modifier"));
    if (name == "CHANGEDSINCE") {
      if (a->changed_since) return BadArgument("CHANGEDSINCE given twice");
      ASSIGN_OR_RETURN(a->changed_since, in.ModSeq("mod-sequence"));
    } else if (name == "VANISHED") {
      a->vanished = true;
    } else {
      return BadArgument("Unknown FETCH modifier " + name.substr(0, 40));
    }
  }
  // RFC 7162 §3.2.6: VANISHED only in UID FETCH, with CHANGEDSINCE, after
  // ENABLE QRESYNC.
  if (a->vanished && (!uid || !a->changed_since || !ctx.qresync_enabled)) {
    return BadArgument("VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<FetchArgs> ParseFetch(ArgCursor& in, bool uid) {
  FetchArgs a;
  ASSIGN_OR_RETURN(a.set, in.Sequence("sequence set"));
  Token* t = in.Peek();
  if (t == nullptr) return BadArgument("Missing fetch items");
  if (t->type == Token::Type::kList) {
    ASSIGN_OR_RETURN(std::vector<Token> * list, in.List("fetch items"));
    ArgCursor items(list, in.ctx());
    if (items.AtEnd()) return BadArgument("Empty fetch item list");
    while (!items.AtEnd()) {
      ASSIGN_OR_RETURN(FetchItem item, ParseItem(items));
      a.items.push_back(std::move(item));
    }
  } else if (t->type == Token::Type::kAtom && ExpandMacro(UpperCase(t->value), &a.items)) {
    a.macro = UpperCase(t->value);
    RETURN_IF_ERROR(in.Next("fetch items").status());
  } else {
    ASSIGN_OR_RETURN(FetchItem item, ParseItem(in));
    a.items.push_back(std::move(item));
  }
  if (!in.AtEnd()) {
    ASSIGN_OR_RETURN(std::vector<Token> * mods, in.List("FETCH modifiers"));
    RETURN_IF_ERROR(ParseModifiers(*mods, in.ctx(), uid, &a));
  }
  RETURN_IF_ERROR(in.ExpectEnd());
  return a;
}

void AppendDebug(const FetchArgs& a, std::string* out) {
  *out += " set=" + a.set.ToString();
  if (!a.macro.empty()) *out += " macro=" + a.macro;
  *out += " items=(";
  for (size_t i = 0; i < a.items.size(); ++i) {
    if (i > 0) out->push_back(' ');
    *out += FetchItemName(a.items[i]);
  }
  *out += ")";
  if (a.changed_since) *out += " changedsince=" + std::to_string(*a.changed_since);
  if (a.vanished) *out += " vanished";
}

}  // namespace mailgrid::imap
