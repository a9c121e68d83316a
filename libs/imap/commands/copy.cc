#include "libs/imap/commands/copy.h"

#include "libs/base/status.h"

namespace mailgrid::imap {

absl::StatusOr<CopyArgs> ParseCopy(ArgCursor& in, bool uid) {
  CopyArgs a;
  ASSIGN_OR_RETURN(a.set, in.Sequence("sequence set"));
  ASSIGN_OR_RETURN(a.mailbox, in.Mailbox("mailbox name"));
  RETURN_IF_ERROR(in.ExpectEnd());
  return a;
}

absl::StatusOr<ExpungeArgs> ParseExpunge(ArgCursor& in, bool uid) {
  ExpungeArgs a;
  if (uid) {
    ASSIGN_OR_RETURN(a.uids, in.Sequence("UID set"));
  }
  RETURN_IF_ERROR(in.ExpectEnd());
  return a;
}

void AppendDebug(const CopyArgs& a, std::string* out) {
  *out += " set=" + a.set.ToString() + " mailbox=";
  AppendQuoted(a.mailbox, out);
}

void AppendDebug(const ExpungeArgs& a, std::string* out) {
  if (a.uids) *out += " uids=" + a.uids->ToString();
}

}  // namespace mailgrid::imap
