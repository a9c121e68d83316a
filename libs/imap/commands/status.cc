#include "libs/imap/commands/status.h"

#include <algorithm>

#include "libs/base/status.h"
#include "libs/imap/types.h"

namespace mailgrid::imap {
namespace {

constexpr std::pair<std::string_view, StatusItem> kItems[] = {
    {"MESSAGES", StatusItem::kMessages},
    {"RECENT", StatusItem::kRecent},
    {"UIDNEXT", StatusItem::kUidNext},
    {"UIDVALIDITY", StatusItem::kUidValidity},
    {"UNSEEN", StatusItem::kUnseen},
    {"DELETED", StatusItem::kDeleted},
    {"SIZE", StatusItem::kSize},
    {"HIGHESTMODSEQ", StatusItem::kHighestModSeq},
    {"APPENDLIMIT", StatusItem::kAppendLimit},
};

}  // namespace

std::string_view StatusItemName(StatusItem item) {
  for (const auto& [name, value] : kItems) {
    if (value == item) return name;
  }
  return "?";
}

absl::StatusOr<std::vector<StatusItem>> ParseStatusItems(std::vector<Token>& list,
                                                         const CommandContext& ctx) {
  ArgCursor in(&list, ctx);
  if (in.AtEnd()) return BadArgument("Expected at least one status item");
  std::vector<StatusItem> items;
  while (!in.AtEnd()) {
    ASSIGN_OR_RETURN(std::string name, in.Keyword("status item"));
    const auto* it = std::find_if(std::begin(kItems), std::end(kItems),
                                  [&](const auto& p) { return p.first == name; });
    if (it == std::end(kItems)) return BadArgument("Unknown status item " + name);
    if (std::find(items.begin(), items.end(), it->second) == items.end()) {
      items.push_back(it->second);
    }
  }
  return items;
}

absl::StatusOr<StatusArgs> ParseStatus(ArgCursor& in, bool uid) {
  StatusArgs a;
  ASSIGN_OR_RETURN(a.mailbox, in.Mailbox("mailbox name"));
  ASSIGN_OR_RETURN(std::vector<Token> * list, in.List("status items"));
  ASSIGN_OR_RETURN(a.items, ParseStatusItems(*list, in.ctx()));
  RETURN_IF_ERROR(in.ExpectEnd());
  return a;
}

void AppendStatusItems(const std::vector<StatusItem>& items, std::string* out) {
  out->push_back('(');
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out->push_back(' ');
    out->append(StatusItemName(items[i]));
  }
  out->push_back(')');
}

void AppendDebug(const StatusArgs& a, std::string* out) {
  *out += " mailbox=";
  AppendQuoted(a.mailbox, out);
  *out += " items=";
  AppendStatusItems(a.items, out);
}

}  // namespace mailgrid::imap
