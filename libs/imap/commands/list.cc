#include "libs/imap/commands/list.h"

#include "libs/base/status.h"
#include "libs/imap/types.h"

namespace mailgrid::imap {
namespace {

absl::Status ParseSelectOptions(std::vector<Token>& opts, const CommandContext& ctx, ListArgs* a) {
  ArgCursor in(&opts, ctx);
  while (!in.AtEnd()) {
    ASSIGN_OR_RETURN(std::string opt, in.Keyword("LIST selection option"));
    if (opt == "SUBSCRIBED") {
      a->select_subscribed = true;
    } else if (opt == "REMOTE") {
      a->select_remote = true;
    } else if (opt == "RECURSIVEMATCH") {
      a->select_recursive_match = true;
    } else if (opt == "SPECIAL-USE") {
      a->select_special_use = true;
    } else {
      // RFC 5258 §3: an unrecognized selection option is a BAD.
      return BadArgument("Unknown LIST selection option " + opt);
    }
  }
  // RECURSIVEMATCH modifies a base option and means nothing alone.
  if (a->select_recursive_match && !a->select_subscribed && !a->select_special_use) {
    return BadArgument("RECURSIVEMATCH needs another selection option");
  }
  return absl::OkStatus();
}

absl::Status ParseReturnOptions(std::vector<Token>& opts, const CommandContext& ctx, ListArgs* a) {
  ArgCursor in(&opts, ctx);
  while (!in.AtEnd()) {
    ASSIGN_OR_RETURN(std::string opt, in.Keyword("LIST return option"));
    if (opt == "SUBSCRIBED") {
      a->return_subscribed = true;
    } else if (opt == "CHILDREN") {
      a->return_children = true;
    } else if (opt == "SPECIAL-USE") {
      a->return_special_use = true;
    } else if (opt == "STATUS") {
      if (a->return_status) return BadArgument("STATUS return option given twice");
      ASSIGN_OR_RETURN(std::vector<Token> * items, in.List("status items"));
      ASSIGN_OR_RETURN(a->return_status, ParseStatusItems(*items, ctx));
    } else {
      return BadArgument("Unknown LIST return option " + opt);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ListArgs> ParseList(ArgCursor& in, bool uid) {
  ListArgs a;
  if (Token* t = in.Peek(); t != nullptr && t->type == Token::Type::kList) {
    a.extended = true;
    ASSIGN_OR_RETURN(std::vector<Token> * opts, in.List("selection options"));
    RETURN_IF_ERROR(ParseSelectOptions(*opts, in.ctx(), &a));
  }
  ASSIGN_OR_RETURN(a.reference, in.Mailbox("reference name"));
  ASSIGN_OR_RETURN(Token * pat, in.Next("mailbox pattern"));
  if (pat->type == Token::Type::kList) {
    a.extended = true;
    if (pat->items.empty()) return BadArgument("Expected at least one mailbox pattern");
    for (Token& p : pat->items) {
      ASSIGN_OR_RETURN(std::string pattern, TakeListMailbox(p, in.ctx(), "mailbox pattern"));
      a.patterns.push_back(std::move(pattern));
    }
  } else {
    ASSIGN_OR_RETURN(std::string pattern, TakeListMailbox(*pat, in.ctx(), "mailbox pattern"));
    a.patterns.push_back(std::move(pattern));
  }
  if (!in.AtEnd()) {
    ASSIGN_OR_RETURN(std::string ret, in.Keyword("RETURN"));
    if (ret != "RETURN") return BadArgument("Expected RETURN");
    a.extended = true;
    ASSIGN_OR_RETURN(std::vector<Token> * opts, in.List("return options"));
    RETURN_IF_ERROR(ParseReturnOptions(*opts, in.ctx(), &a));
  }
  RETURN_IF_ERROR(in.ExpectEnd());
  return a;
}

absl::StatusOr<ListArgs> ParseLsub(ArgCursor& in, bool uid) {
  ListArgs a;
  ASSIGN_OR_RETURN(a.reference, in.Mailbox("reference name"));
  ASSIGN_OR_RETURN(std::string pattern, in.ListMailbox("mailbox pattern"));
  a.patterns.push_back(std::move(pattern));
  RETURN_IF_ERROR(in.ExpectEnd());
  return a;
}

void AppendDebug(const ListArgs& a, std::string* out) {
  if (a.extended) {
    *out += " select=(";
    std::string opts;
    if (a.select_subscribed) opts += " SUBSCRIBED";
    if (a.select_remote) opts += " REMOTE";
    if (a.select_recursive_match) opts += " RECURSIVEMATCH";
    if (a.select_special_use) opts += " SPECIAL-USE";
    *out += (opts.empty() ? "" : opts.substr(1)) + ")";
  }
  *out += " reference=";
  AppendQuoted(a.reference, out);
  *out += " patterns=";
  AppendStrings(a.patterns, out);
  if (a.extended) {
    std::string opts;
    if (a.return_subscribed) opts += " SUBSCRIBED";
    if (a.return_children) opts += " CHILDREN";
    if (a.return_special_use) opts += " SPECIAL-USE";
    if (a.return_status) {
      opts += " STATUS ";
      AppendStatusItems(*a.return_status, &opts);
    }
    *out += " return=(" + (opts.empty() ? "" : opts.substr(1)) + ")";
  }
}

}  // namespace mailgrid::imap
