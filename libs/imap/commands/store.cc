#include "libs/imap/commands/store.h"

#include "libs/base/status.h"
#include "libs/imap/types.h"

namespace mailgrid::imap {

absl::StatusOr<StoreArgs> ParseStore(ArgCursor& in, bool uid) {
  StoreArgs a;
  ASSIGN_OR_RETURN(a.set, in.Sequence("sequence set"));
  if (Token* t = in.Peek(); t != nullptr && t->type == Token::Type::kList) {
    ASSIGN_OR_RETURN(std::vector<Token> * mods, in.List("STORE modifiers"));
    ArgCursor m(mods, in.ctx());
    if (m.AtEnd()) return BadArgument("Empty STORE modifiers");
    while (!m.AtEnd()) {
      ASSIGN_OR_RETURN(std::string name, m.Keyword("STORE modifier"));
      if (name != "UNCHANGEDSINCE")
        return BadArgument("Unknown STORE modifier " + name.substr(0, 40));
      if (a.unchanged_since) return BadArgument("UNCHANGEDSINCE given twice");
      ASSIGN_OR_RETURN(a.unchanged_since, m.Number64("mod-sequence"));  // valzer: 0 allowed
    }
  }
  ASSIGN_OR_RETURN(std::string what, in.Keyword("+FLAGS, -FLAGS or FLAGS"));
  std::string_view w = what;
  if (!w.empty() && (w[0] == '+' || w[0] == '-')) {
    a.op = w[0] == '+' ? StoreArgs::Op::kAdd : StoreArgs::Op::kRemove;
    w.remove_prefix(1);
  }
  if (w == "FLAGS.SILENT") {
    a.silent = true;
  } else if (w != "FLAGS") {
    return BadArgument("Expected +FLAGS, -FLAGS or FLAGS");
  }
  ASSIGN_OR_RETURN(Token * t, in.Next("flags"));
  if (t->type == Token::Type::kList) {
    ASSIGN_OR_RETURN(a.flags, TakeFlagList(*t));
    RETURN_IF_ERROR(in.ExpectEnd());
    return a;
  }
  // flag *(SP flag) without parentheses.
  for (;;) {
    ASSIGN_OR_RETURN(std::string f, TakeFlag(*t));
    a.flags.push_back(std::move(f));
    if (in.AtEnd()) break;
    ASSIGN_OR_RETURN(t, in.Next("flag"));
  }
  return a;
}

void AppendDebug(const StoreArgs& a, std::string* out) {
  *out += " set=" + a.set.ToString();
  if (a.unchanged_since) *out += " unchangedsince=" + std::to_string(*a.unchanged_since);
  *out += a.op == StoreArgs::Op::kAdd      ? " +FLAGS"
          : a.op == StoreArgs::Op::kRemove ? " -FLAGS"
                                           : " FLAGS";
  if (a.silent) *out += ".SILENT";
  *out += " (";
  for (size_t i = 0; i < a.flags.size(); ++i) *out += (i ? " " : "") + a.flags[i];
  *out += ")";
}

}  // namespace mailgrid::imap
