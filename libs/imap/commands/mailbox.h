// Mailbox management: CREATE (with RFC 6154 USE), DELETE, RENAME,
// SUBSCRIBE, UNSUBSCRIBE (RFC 3501 §6.3.3-7). GETQUOTAROOT (RFC 9208) also
// takes just a mailbox and shares MailboxArgs.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/imap/commands/cursor.h"

namespace mailgrid::imap {

struct MailboxArgs {
  std::string mailbox;  // UTF-8
};

struct CreateArgs {
  std::string mailbox;
  // CREATE foo (USE (\Drafts)): special-use attributes, known ones spelled
  // as in RFC 6154 (\All \Archive \Drafts \Flagged \Junk \Sent \Trash),
  // \Important (RFC 8457), others as sent.
  std::vector<std::string> use;
};

struct RenameArgs {
  std::string from;
  std::string to;
};

absl::StatusOr<MailboxArgs> ParseMailboxOnly(ArgCursor& in, bool uid);
absl::StatusOr<CreateArgs> ParseCreate(ArgCursor& in, bool uid);
absl::StatusOr<RenameArgs> ParseRename(ArgCursor& in, bool uid);
void AppendDebug(const MailboxArgs& a, std::string* out);
void AppendDebug(const CreateArgs& a, std::string* out);
void AppendDebug(const RenameArgs& a, std::string* out);

// A special-use attribute token ("\" atom), normalized (shared with LIST).
absl::StatusOr<std::string> TakeUseAttribute(Token& t);

}  // namespace mailgrid::imap
