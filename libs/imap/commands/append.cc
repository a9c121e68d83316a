#include "libs/imap/commands/append.h"

#include "libs/base/status.h"
#include "libs/imap/types.h"

namespace mailgrid::imap {

absl::StatusOr<AppendArgs> ParseAppend(ArgCursor& in, bool uid) {
  AppendArgs a;
  ASSIGN_OR_RETURN(a.mailbox, in.Mailbox("mailbox name"));
  do {
    AppendMessage m;
    ASSIGN_OR_RETURN(Token * t, in.Next("message literal"));
    if (t->type == Token::Type::kList) {
      ASSIGN_OR_RETURN(m.flags, TakeFlagList(*t));
      ASSIGN_OR_RETURN(t, in.Next("message literal"));
    }
    // date-time is DQUOTE ... DQUOTE in the grammar: a quoted string only.
    if (t->type == Token::Type::kQuoted) {
      ASSIGN_OR_RETURN(m.internal_date, ParseDateTime(t->value));
      ASSIGN_OR_RETURN(t, in.Next("message literal"));
    }
    if (t->type != Token::Type::kLiteral) return BadArgument("Expected message literal");
    m.binary = t->literal8;
    m.data = std::move(t->value);
    a.messages.push_back(std::move(m));
  } while (!in.AtEnd());
  return a;
}

void AppendDebug(const AppendArgs& a, std::string* out) {
  *out += " mailbox=";
  AppendQuoted(a.mailbox, out);
  for (const AppendMessage& m : a.messages) {
    *out += " message=(flags=(";
    for (size_t i = 0; i < m.flags.size(); ++i) *out += (i ? " " : "") + m.flags[i];
    *out += ")";
    if (m.internal_date) *out += " date=\"" + FormatDateTime(*m.internal_date) + "\"";
    *out += m.binary ? " literal8=" : " literal=";
    *out += std::to_string(m.data.size()) + ":";
    AppendQuoted(m.data.size() <= 64 ? m.data : m.data.substr(0, 64) + "...", out);
    *out += ")";
  }
}

}  // namespace mailgrid::imap
