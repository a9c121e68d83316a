// ArgCursor: walks a command's argument tokens for the parsers in this
// folder, with one function per grammar element of RFC 3501 §9. Values are
// moved out of the tokens (an APPEND literal is never copied). Every
// refusal is a BadArgument status naming what was expected.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/imap/commands/context.h"
#include "libs/imap/sequence_set.h"
#include "libs/imap/token.h"

namespace mailgrid::imap {

class ArgCursor {
 public:
  ArgCursor(std::vector<Token>* tokens, const CommandContext& ctx) : tokens_(tokens), ctx_(ctx) {}

  const CommandContext& ctx() const { return ctx_; }
  bool AtEnd() const { return next_ >= tokens_->size(); }
  Token* Peek() { return AtEnd() ? nullptr : &(*tokens_)[next_]; }
  absl::StatusOr<Token*> Next(std::string_view what);
  absl::Status ExpectEnd() const;

  absl::StatusOr<std::string> Astring(std::string_view what);
  absl::StatusOr<std::string> Atom(std::string_view what);
  // A bare token, upper-cased (command keywords, FETCH items, options).
  absl::StatusOr<std::string> Keyword(std::string_view what);
  absl::StatusOr<std::vector<Token>*> List(std::string_view what);
  absl::StatusOr<uint32_t> Number(std::string_view what);  // number (32-bit)
  absl::StatusOr<uint32_t> NzNumber(std::string_view what);
  absl::StatusOr<uint64_t> Number64(std::string_view what);
  absl::StatusOr<uint64_t> ModSeq(std::string_view what);  // 1 .. 2^63-1
  absl::StatusOr<std::string> Mailbox(std::string_view what);
  absl::StatusOr<std::string> ListMailbox(std::string_view what);
  absl::StatusOr<SequenceSet> Sequence(std::string_view what);

 private:
  std::vector<Token>* tokens_;
  size_t next_ = 0;
  const CommandContext& ctx_;
};

// The same elements on a single token (a list item, a peeked token).
absl::StatusOr<std::string> TakeAstring(Token& t, std::string_view what);
absl::StatusOr<std::string> TakeString(Token& t, std::string_view what);  // quoted or literal
absl::StatusOr<std::string> TakeMailbox(Token& t, const CommandContext& ctx, std::string_view what);
absl::StatusOr<std::string> TakeListMailbox(Token& t, const CommandContext& ctx,
                                            std::string_view what);
// flag (RFC 3501): \Answered \Flagged \Deleted \Seen \Draft (normalized to
// that spelling), "\" atom, or a keyword atom. \Recent and \* are refused:
// clients cannot set them.
absl::StatusOr<std::string> TakeFlag(Token& t);
absl::StatusOr<std::vector<std::string>> TakeFlagList(Token& t);  // "(" [flag *(SP flag)] ")"
// header-fld-name = astring, restricted to RFC 5322 ftext (printable ASCII
// except ":"), so a name can never smuggle a colon or a line break.
absl::StatusOr<std::string> TakeHeaderFieldName(Token& t);
std::string UpperCase(std::string_view s);

// Decodes a mailbox name as the client sent it: INBOX in any case becomes
// "INBOX"; otherwise modified UTF-7 (or UTF-8 under UTF8=ACCEPT) to UTF-8.
absl::StatusOr<std::string> DecodeMailboxName(std::string_view raw, const CommandContext& ctx);

// Unsigned decimal with no sign, at most `max`; nz refuses 0 and leading
// zeros (nz-number).
absl::StatusOr<uint64_t> ParseUnsigned(std::string_view s, uint64_t max, bool nz,
                                       std::string_view what);

// Helpers for the debug dumps of the typed commands.
void AppendQuoted(std::string_view s, std::string* out);
void AppendStrings(const std::vector<std::string>& v, std::string* out);  // ("a" "b")

}  // namespace mailgrid::imap
