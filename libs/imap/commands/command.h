// A typed IMAP command: what the server runs. Produced from a receiver
// Request by ParseCommand (registry.h); one args struct per command family,
// each defined in the family's header (fetch.h, search.h, ...).
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "libs/imap/commands/append.h"
#include "libs/imap/commands/auth.h"
#include "libs/imap/commands/copy.h"
#include "libs/imap/commands/extensions.h"
#include "libs/imap/commands/fetch.h"
#include "libs/imap/commands/list.h"
#include "libs/imap/commands/mailbox.h"
#include "libs/imap/commands/search.h"
#include "libs/imap/commands/select.h"
#include "libs/imap/commands/simple.h"
#include "libs/imap/commands/status.h"
#include "libs/imap/commands/store.h"

namespace mailgrid::imap {

enum class CommandId : unsigned char {
  kCapability,
  kNoop,
  kLogout,
  kStartTls,
  kAuthenticate,
  kLogin,
  kSelect,
  kExamine,
  kCreate,
  kDelete,
  kRename,
  kSubscribe,
  kUnsubscribe,
  kList,
  kLsub,
  kNamespace,
  kStatus,
  kAppend,
  kIdle,
  kEnable,
  kId,
  kGetQuota,
  kGetQuotaRoot,
  kSetQuota,
  kCompress,
  kCheck,
  kClose,
  kUnselect,
  kExpunge,
  kSearch,
  kThread,
  kSort,
  kFetch,
  kStore,
  kCopy,
  kMove,
};

using CommandArgs =
    std::variant<NoArgs, LoginArgs, AuthenticateArgs, SelectArgs, MailboxArgs, CreateArgs,
                 RenameArgs, ListArgs, StatusArgs, AppendArgs, SearchArgs, ThreadArgs, SortArgs,
                 FetchArgs, StoreArgs, CopyArgs, ExpungeArgs, EnableArgs, IdArgs, CompressArgs,
                 QuotaRootArgs, SetQuotaArgs>;

struct Command {
  std::string tag;
  CommandId id = CommandId::kNoop;
  bool uid = false;       // UID COPY / FETCH / MOVE / SEARCH / STORE / EXPUNGE
  std::string_view name;  // canonical, e.g. "UID FETCH" (static storage)
  CommandArgs args;

  template <typename T>
  const T& get() const {
    return std::get<T>(args);
  }
  template <typename T>
  T& get() {
    return std::get<T>(args);
  }
};

// "<tag> <NAME> <arguments>" in a canonical form, one line; secrets
// (LOGIN password, SASL initial response) appear only as their length.
std::string DebugString(const Command& c);

}  // namespace mailgrid::imap
