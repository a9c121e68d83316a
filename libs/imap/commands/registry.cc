#include "libs/imap/commands/registry.h"

#include "libs/base/status.h"

namespace mailgrid::imap {
namespace {

// Adapts a family parser (returning its args struct) to the table's shape.
template <typename T, absl::StatusOr<T> (*Parse)(ArgCursor&, bool)>
absl::Status Typed(ArgCursor& in, Command& cmd) {
  absl::StatusOr<T> args = Parse(in, cmd.uid);
  if (!args.ok()) return args.status();
  cmd.args.template emplace<T>(std::move(*args));
  return absl::OkStatus();
}

constexpr StateMask kAny = kAnyState;
constexpr StateMask kNonAuth = kNotAuthenticatedOnly;
constexpr StateMask kAuth = kAuthenticatedOrSelected;
constexpr StateMask kSel = kSelectedOnly;
using Id = CommandId;

// name, id, uid, states, large literals, uses sequence numbers, parser.
constexpr CommandSpec kCommands[] = {
    // Any state (RFC 3501 §6.1, RFC 2971).
    {"CAPABILITY", Id::kCapability, false, kAny, false, false, Typed<NoArgs, ParseNoArgs>},
    {"NOOP", Id::kNoop, false, kAny, false, false, Typed<NoArgs, ParseNoArgs>},
    {"LOGOUT", Id::kLogout, false, kAny, false, false, Typed<NoArgs, ParseNoArgs>},
    {"ID", Id::kId, false, kAny, false, false, Typed<IdArgs, ParseId>},
    // Not authenticated (§6.2).
    {"STARTTLS", Id::kStartTls, false, kNonAuth, false, false, Typed<NoArgs, ParseNoArgs>},
    {"AUTHENTICATE", Id::kAuthenticate, false, kNonAuth, false, false,
     Typed<AuthenticateArgs, ParseAuthenticate>},
    {"LOGIN", Id::kLogin, false, kNonAuth, false, false, Typed<LoginArgs, ParseLogin>},
    // Authenticated or selected (§6.3 and extensions).
    {"SELECT", Id::kSelect, false, kAuth, false, false, Typed<SelectArgs, ParseSelect>},
    {"EXAMINE", Id::kExamine, false, kAuth, false, false, Typed<SelectArgs, ParseSelect>},
    {"CREATE", Id::kCreate, false, kAuth, false, false, Typed<CreateArgs, ParseCreate>},
    {"DELETE", Id::kDelete, false, kAuth, false, false, Typed<MailboxArgs, ParseMailboxOnly>},
    {"RENAME", Id::kRename, false, kAuth, false, false, Typed<RenameArgs, ParseRename>},
    {"SUBSCRIBE", Id::kSubscribe, false, kAuth, false, false, Typed<MailboxArgs, ParseMailboxOnly>},
    {"UNSUBSCRIBE", Id::kUnsubscribe, false, kAuth, false, false,
     Typed<MailboxArgs, ParseMailboxOnly>},
    {"LIST", Id::kList, false, kAuth, false, false, Typed<ListArgs, ParseList>},
    {"LSUB", Id::kLsub, false, kAuth, false, false, Typed<ListArgs, ParseLsub>},
    {"NAMESPACE", Id::kNamespace, false, kAuth, false, false, Typed<NoArgs, ParseNoArgs>},
    {"STATUS", Id::kStatus, false, kAuth, false, false, Typed<StatusArgs, ParseStatus>},
    {"APPEND", Id::kAppend, false, kAuth, true, false, Typed<AppendArgs, ParseAppend>},
    {"IDLE", Id::kIdle, false, kAuth, false, false, Typed<NoArgs, ParseNoArgs>},
    {"GETQUOTA", Id::kGetQuota, false, kAuth, false, false, Typed<QuotaRootArgs, ParseGetQuota>},
    {"GETQUOTAROOT", Id::kGetQuotaRoot, false, kAuth, false, false,
     Typed<MailboxArgs, ParseMailboxOnly>},
    {"SETQUOTA", Id::kSetQuota, false, kAuth, false, false, Typed<SetQuotaArgs, ParseSetQuota>},
    {"COMPRESS", Id::kCompress, false, kAuth, false, false, Typed<CompressArgs, ParseCompress>},
    // RFC 5161 §3.1: ENABLE only in the authenticated state.
    {"ENABLE", Id::kEnable, false, kAuthenticatedOnly, false, false,
     Typed<EnableArgs, ParseEnable>},
    // Selected (§6.4, RFC 3691 UNSELECT, RFC 6851 MOVE, RFC 4315 UID EXPUNGE).
    {"CHECK", Id::kCheck, false, kSel, false, false, Typed<NoArgs, ParseNoArgs>},
    {"CLOSE", Id::kClose, false, kSel, false, false, Typed<NoArgs, ParseNoArgs>},
    {"UNSELECT", Id::kUnselect, false, kSel, false, false, Typed<NoArgs, ParseNoArgs>},
    {"EXPUNGE", Id::kExpunge, false, kSel, false, false, Typed<ExpungeArgs, ParseExpunge>},
    {"SEARCH", Id::kSearch, false, kSel, false, true, Typed<SearchArgs, ParseSearch>},
    {"THREAD", Id::kThread, false, kSel, false, true, Typed<ThreadArgs, ParseThread>},
    {"SORT", Id::kSort, false, kSel, false, true, Typed<SortArgs, ParseSort>},
    {"FETCH", Id::kFetch, false, kSel, false, true, Typed<FetchArgs, ParseFetch>},
    {"STORE", Id::kStore, false, kSel, false, true, Typed<StoreArgs, ParseStore>},
    {"COPY", Id::kCopy, false, kSel, false, true, Typed<CopyArgs, ParseCopy>},
    {"MOVE", Id::kMove, false, kSel, false, true, Typed<CopyArgs, ParseCopy>},
    {"UID SEARCH", Id::kSearch, true, kSel, false, false, Typed<SearchArgs, ParseSearch>},
    {"UID THREAD", Id::kThread, true, kSel, false, false, Typed<ThreadArgs, ParseThread>},
    {"UID SORT", Id::kSort, true, kSel, false, false, Typed<SortArgs, ParseSort>},
    {"UID FETCH", Id::kFetch, true, kSel, false, false, Typed<FetchArgs, ParseFetch>},
    {"UID STORE", Id::kStore, true, kSel, false, false, Typed<StoreArgs, ParseStore>},
    {"UID COPY", Id::kCopy, true, kSel, false, false, Typed<CopyArgs, ParseCopy>},
    {"UID MOVE", Id::kMove, true, kSel, false, false, Typed<CopyArgs, ParseCopy>},
    {"UID EXPUNGE", Id::kExpunge, true, kSel, false, false, Typed<ExpungeArgs, ParseExpunge>},
};

}  // namespace

std::span<const CommandSpec> AllCommands() { return kCommands; }

const CommandSpec* FindCommand(std::string_view upper_name) {
  for (const CommandSpec& spec : kCommands) {
    if (spec.name == upper_name) return &spec;
  }
  return nullptr;
}

CommandCheck CheckCommand(std::string_view upper_name, SessionState state) {
  CommandCheck check;
  const CommandSpec* spec = FindCommand(upper_name);
  if (spec == nullptr) {
    check.verdict = CommandCheck::Verdict::kUnknown;
  } else if ((spec->states & StateBit(state)) == 0) {
    check.verdict = CommandCheck::Verdict::kNotAllowed;
  } else {
    check.large_literals = spec->large_literals;
  }
  return check;
}

absl::StatusOr<Command> ParseCommand(Request&& request, const CommandContext& ctx) {
  const CommandSpec* spec = FindCommand(request.command);
  if (spec == nullptr) return BadArgument("Unknown command " + request.command);
  if ((spec->states & StateBit(ctx.state)) == 0) {
    return BadArgument(request.command + " is not allowed in the " +
                       std::string(SessionStateName(ctx.state)) + " state");
  }
  Command cmd;
  cmd.tag = std::move(request.tag);
  cmd.id = spec->id;
  cmd.uid = spec->uid;
  cmd.name = spec->name;
  ArgCursor in(&request.args, ctx);
  RETURN_IF_ERROR(spec->parse(in, cmd));
  return cmd;
}

}  // namespace mailgrid::imap
