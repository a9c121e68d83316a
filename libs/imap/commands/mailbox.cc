#include "libs/imap/commands/mailbox.h"

#include "libs/base/status.h"
#include "libs/imap/chars.h"
#include "libs/imap/types.h"

namespace mailgrid::imap {
namespace {

constexpr std::string_view kUseAttributes[] = {"\\All",  "\\Archive", "\\Drafts", "\\Flagged",
                                               "\\Junk", "\\Sent",    "\\Trash",  "\\Important"};

}  // namespace

absl::StatusOr<std::string> TakeUseAttribute(Token& t) {
  bool ok = t.type == Token::Type::kAtom && t.value.size() > 1 && t.value[0] == '\\';
  for (size_t i = 1; ok && i < t.value.size(); ++i) {
    ok = chars::IsAtomChar(static_cast<unsigned char>(t.value[i]));
  }
  if (!ok) return BadArgument("Expected special-use attribute");
  const std::string upper = UpperCase(t.value);
  for (std::string_view a : kUseAttributes) {
    if (upper == UpperCase(a)) return std::string(a);
  }
  return std::move(t.value);
}

absl::StatusOr<MailboxArgs> ParseMailboxOnly(ArgCursor& in, bool uid) {
  MailboxArgs a;
  ASSIGN_OR_RETURN(a.mailbox, in.Mailbox("mailbox name"));
  RETURN_IF_ERROR(in.ExpectEnd());
  return a;
}

absl::StatusOr<CreateArgs> ParseCreate(ArgCursor& in, bool uid) {
  CreateArgs a;
  ASSIGN_OR_RETURN(a.mailbox, in.Mailbox("mailbox name"));
  if (!in.AtEnd()) {
    // create-params = SP "(" create-param *(SP create-param) ")"
    ASSIGN_OR_RETURN(std::vector<Token> * params, in.List("CREATE parameters"));
    ArgCursor p(params, in.ctx());
    if (p.AtEnd()) return BadArgument("Empty CREATE parameters");
    while (!p.AtEnd()) {
      ASSIGN_OR_RETURN(std::string name, p.Keyword("CREATE parameter"));
      if (name != "USE") return BadArgument("Unknown CREATE parameter " + name);
      ASSIGN_OR_RETURN(std::vector<Token> * attrs, p.List("USE attributes"));
      for (Token& t : *attrs) {
        ASSIGN_OR_RETURN(std::string attr, TakeUseAttribute(t));
        a.use.push_back(std::move(attr));
      }
    }
  }
  RETURN_IF_ERROR(in.ExpectEnd());
  return a;
}

absl::StatusOr<RenameArgs> ParseRename(ArgCursor& in, bool uid) {
  RenameArgs a;
  ASSIGN_OR_RETURN(a.from, in.Mailbox("existing mailbox name"));
  ASSIGN_OR_RETURN(a.to, in.Mailbox("new mailbox name"));
  RETURN_IF_ERROR(in.ExpectEnd());
  return a;
}

void AppendDebug(const MailboxArgs& a, std::string* out) {
  *out += " mailbox=";
  AppendQuoted(a.mailbox, out);
}

void AppendDebug(const CreateArgs& a, std::string* out) {
  *out += " mailbox=";
  AppendQuoted(a.mailbox, out);
  if (!a.use.empty()) {
    *out += " use=(";
    for (size_t i = 0; i < a.use.size(); ++i) *out += (i ? " " : "") + a.use[i];
    *out += ")";
  }
}

void AppendDebug(const RenameArgs& a, std::string* out) {
  *out += " from=";
  AppendQuoted(a.from, out);
  *out += " to=";
  AppendQuoted(a.to, out);
}

}  // namespace mailgrid::imap
