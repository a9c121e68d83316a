// A small writer for server responses, so the server never emits a
// malformed one (RFC 3501 §7, §9). Each element picks a legal wire form:
//
//   AString("Drafts")      → Drafts              (atom when every byte may be)
//   AString("My Mail")     → "My Mail"           (quoted when it can be)
//   String("a\r\nb")       → {4}\r\na\r\nb      (literal otherwise: CR, LF,
//                                                 8-bit, or long)
//   AString("nil")         → "nil"               (never mistaken for NIL)
//   Mailbox("收件箱")       → &ZTZO9nux-          (modified UTF-7)
//
// Spaces between elements and around lists are inserted by the writer.
// Misuse that cannot be repaired (NUL in a non-binary string, CR/LF in a
// raw element, an unbalanced list, an invalid atom or tag) makes Finish()
// return an error instead of bytes: the caller answers something generic
// rather than sending garbage. Free-form text (resp-text) is repaired:
// control characters (CR, LF, NUL, ...) become spaces, and 8-bit bytes "?"
// unless UTF-8 is allowed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/imap/types.h"

namespace mailgrid::imap {

struct WriterOptions {
  // The client enabled UTF8=ACCEPT (RFC 6855): quoted strings and mailbox
  // names may carry UTF-8, and mailbox names are not modified UTF-7.
  bool utf8 = false;
  // Longer strings are sent as literals even if they could be quoted.
  size_t max_quoted_length = 1024;
};

class ResponseWriter {
 public:
  static ResponseWriter Untagged(WriterOptions options = {});                      // "* "
  static ResponseWriter Tagged(std::string_view tag, WriterOptions options = {});  // "a1 "
  static ResponseWriter Continuation(WriterOptions options = {});                  // "+ "

  ResponseWriter& Atom(std::string_view atom);  // e.g. EXISTS, AUTH=PLAIN
  ResponseWriter& Number(uint64_t n);
  ResponseWriter& Nil();
  ResponseWriter& String(std::string_view s);                  // quoted or literal
  ResponseWriter& AString(std::string_view s);                 // atom, quoted or literal
  ResponseWriter& NString(std::optional<std::string_view> s);  // NIL when absent
  ResponseWriter& Literal(std::string_view s);
  ResponseWriter& Literal8(std::string_view s);  // ~{N}: BINARY fetch data only
  ResponseWriter& Mailbox(std::string_view utf8_name);
  ResponseWriter& Flag(std::string_view flag);  // \Seen, \*, or a keyword
  ResponseWriter& Open();                       // "("
  ResponseWriter& Close();                      // ")"
  // A pre-formatted element such as BODY[1.2]<0> or a date-time in quotes;
  // must be printable ASCII.
  ResponseWriter& Raw(std::string_view element);
  // "OK [code] text": resp-cond-state etc. Ends the response (nothing may
  // follow it but Finish).
  ResponseWriter& Status(Condition c, std::string_view code, std::string_view text);
  // resp-text without a condition word (continuation requests).
  ResponseWriter& Text(std::string_view text);

  // The response with its CRLF, or why it could not be written.
  absl::StatusOr<std::string> Finish();

 private:
  ResponseWriter(std::string prefix, WriterOptions options);
  void Separate();
  void Fail(std::string_view why);
  bool Usable();

  std::string out_;
  WriterOptions options_;
  int depth_ = 0;
  bool need_space_ = false;
  bool ended_ = false;
  absl::Status error_;
};

// Never-failing helpers for status lines: a bad tag becomes "*", the code
// is dropped if it is not a valid resp-text-code, text is repaired.
std::string StatusLine(std::string_view tag, Condition c, std::string_view code,
                       std::string_view text, WriterOptions options = {});
std::string FormatError(const ProtocolError& e, WriterOptions options = {});
// "+ text\r\n": a continuation request. The text may be BASE64 for a SASL
// challenge, and may be empty ("+ \r\n", the empty challenge).
std::string ContinuationLine(std::string_view text);

// Repairs free text for resp-text (see above); never empty.
std::string SanitizeText(std::string_view text, bool utf8);
// True if `s` may be sent as an atom (every byte ATOM-CHAR).
bool IsAtom(std::string_view s);
// tag = 1*<any ASTRING-CHAR except "+">.
bool IsValidTag(std::string_view tag);

}  // namespace mailgrid::imap
