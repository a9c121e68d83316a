// Sieve mail filtering (RFC 5228) for per-user inbox rules, with the
// extensions fileinto, envelope, imap4flags (RFC 5232), vacation (RFC 5230),
// body (RFC 5173), subaddress (RFC 5233), copy (RFC 3894), reject and
// ereject (RFC 5429), and the comparators i;octet and i;ascii-casemap.
//
// Pure functions over bytes: no I/O, no clocks, no globals. Compile() turns
// user-written source into an immutable Script (cheap to copy, safe to share
// between threads); Evaluate() runs it against one message and returns what
// should happen to it. The caller performs the actions.
//
// SECURITY: the script source and the message are both hostile. Compile is
// linear in the source, bounded by CompileOptions (64 KiB, nesting depth);
// Evaluate does no recursion deeper than that depth, its matching is
// O(key × value) per comparison, and every action list is bounded. Nothing
// here throws; a runtime error in a script always ends in a plain keep, so
// a broken rule never loses mail (RFC 5228 §2.10.6).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mailgrid::sieve {

namespace internal {
struct Program;
}  // namespace internal

// ---------------------------------------------------------------------------
// Compiling

struct CompileOptions {
  size_t max_source_bytes = 64 * 1024;
  // Blocks and tests nested inside each other (if { if { ... } },
  // anyof(not(...))) count together.
  int max_nesting = 32;
};

// A compiled script. Default-constructed: the empty script (implicit keep).
class Script {
 public:
  Script();
  // The extensions named by `require`, lower-cased, in order of appearance.
  const std::vector<std::string>& extensions() const;

 private:
  friend absl::StatusOr<Script> Compile(std::string_view, const CompileOptions&);
  friend struct EvaluateAccess;
  std::shared_ptr<const internal::Program> program_;
};

// Errors are INVALID_ARGUMENT with the message "line:column: what is wrong"
// (1-based; the column counts bytes), e.g.
//   "3:5: fileinto is used without require \"fileinto\"".
// A source over max_source_bytes is INVALID_ARGUMENT "script is larger than
// 65536 bytes" (no position). CompileErrorReason tells the three kinds apart.
absl::StatusOr<Script> Compile(std::string_view source, const CompileOptions& options = {});

// For a status returned by Compile: "SYNTAX" (grammar, arguments, nesting,
// bad UTF-8, unknown command or test), "UNSUPPORTED_EXTENSION" (require of
// an extension we do not have) or "TOO_LARGE"; "" for any other status.
std::string_view CompileErrorReason(const absl::Status& status);

// ---------------------------------------------------------------------------
// The message a script runs against

struct HeaderField {
  std::string name;
  // Unfolded, as in the message: RFC 2047 encoded-words still encoded (the
  // header and address tests decode them).
  std::string value;
};

struct MessageContext {
  // Envelope MAIL FROM without angle brackets; "" for the null sender <>.
  std::string envelope_from;
  // The RCPT TO address this copy is being delivered for.
  std::string envelope_to;
  std::vector<HeaderField> headers;
  // RFC 5228 §5.9: the message size in octets.
  uint64_t size = 0;
  // The body as text (RFC 5173 :text — text parts decoded to UTF-8, HTML
  // stripped) and as raw bytes (:raw). Called lazily at most once per
  // Evaluate; unset means an empty body.
  std::function<std::string()> body_text;
  std::function<std::string()> body_raw;
};

// Builds a MessageContext from a whole RFC 5322 message with libs/mail (the
// accessors keep a reference-counted copy of `raw`).
MessageContext MessageContextFromRaw(std::string_view raw, std::string_view envelope_from,
                                     std::string_view envelope_to);

// ---------------------------------------------------------------------------
// Evaluating

struct Vacation {
  int days = 7;         // clamped to [1, 365] (RFC 5230 §4.1 lets sites bound it)
  std::string subject;  // "" → the caller uses "Auto: <original subject>"
  std::string from;     // "" → the caller uses the recipient's address
  std::string reason;   // the reply body (a MIME entity when `mime`)
  bool mime = false;
  // :handle, or when absent one derived from reason, subject, from and mime
  // (RFC 5230 §4.2): the caller keys its "already replied" memory on
  // hash(handle + sender).
  std::string handle;
  std::vector<std::string> addresses;  // :addresses, extra addresses of the user
};

enum class ActionKind : uint8_t {
  kKeep,      // deliver to INBOX (explicit keep, implicit keep, fileinto "INBOX")
  kFileInto,  // deliver to `folder`
  kDiscard,   // informational: the script discarded; no copy for this action
  kRedirect,  // send to `address` (`copy`: :copy was given)
  kReject,    // refuse with `reason` (`extended`: ereject)
  kVacation,  // auto-reply, subject to ShouldSendVacation
};

struct Action {
  ActionKind kind = ActionKind::kKeep;
  std::string folder;              // kFileInto: UTF-8 folder name, '/' hierarchy as written
  std::vector<std::string> flags;  // kKeep / kFileInto: IMAP flags ("\\Seen", "$Label")
  std::string address;             // kRedirect
  bool copy = false;               // kRedirect / kFileInto with :copy
  bool extended = false;           // kReject: ereject
  std::string reason;              // kReject
  Vacation vacation;               // kVacation
};

struct Actions {
  // In script order. An implicit keep is the last entry, a kKeep with
  // `implicit_keep` set. Never empty unless the message is discarded
  // (then it holds the kDiscard).
  std::vector<Action> actions;
  bool implicit_keep = false;
  // Non-empty when the script failed at run time (conflicting actions, too
  // many actions): `actions` is then a single implicit kKeep with no flags.
  std::string error;

  // Helpers for the delivery code.
  bool Delivers() const;  // some kKeep or kFileInto
  bool Rejected() const;  // a kReject is present
};

struct EvaluateOptions {
  size_t max_actions = 32;
  size_t max_redirects = 4;
};

Actions Evaluate(const Script& script, const MessageContext& message,
                 const EvaluateOptions& options = {});

// ---------------------------------------------------------------------------
// Vacation (RFC 5230 §4.5-4.6, RFC 3834 §2)

// True when an auto-reply may be sent for this message: never to the null
// sender, to Auto-Submitted other than "no", to mailing lists (List-Id and
// the other List-* fields, Precedence bulk/list/junk), to MAILER-DAEMON,
// LISTSERV, majordomo, owner-* or *-request senders, to the user's own
// addresses, or when none of the user's addresses (`own_addresses` plus the
// action's :addresses; +detail ignored, case-insensitive) is in To, Cc, Bcc,
// Resent-To, Resent-Cc or Resent-Bcc. The once-per-N-days memory is the
// caller's. When false and `why` is set, it names the rule.
bool ShouldSendVacation(const MessageContext& message, const Vacation& vacation,
                        const std::vector<std::string>& own_addresses, std::string* why = nullptr);

// The key of the caller's "already replied" memory: a hex digest of the
// handle and the (lower-cased) envelope sender. Stable across versions.
std::string VacationMemoryKey(const Vacation& vacation, std::string_view sender);

// The reply (RFC 5230 §5, RFC 3834 §3): header fields and body, CRLF line
// ends, ready to send with the null envelope sender to `message.envelope_from`.
// `from` is vacation.from or else `user_address`; Subject is vacation.subject
// or "Auto: " + the original subject; In-Reply-To/References from the
// original Message-ID; Auto-Submitted: auto-replied. `date` is an RFC 5322
// date-time and `message_id` the new Message-ID (with angle brackets), both
// from the caller (no clocks here).
std::string BuildVacationReply(const MessageContext& message, const Vacation& vacation,
                               std::string_view user_address, std::string_view date,
                               std::string_view message_id);

}  // namespace mailgrid::sieve
