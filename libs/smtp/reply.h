// SMTP replies: the value type both directions share, its wire encoding, and
// a pure incremental parser of server replies for our own SMTP client
// (outbound delivery). No I/O.
//
// SECURITY: reply text may come from the driver (e.g. a directory error) or
// from a remote server; Serialize() never lets a CR, LF, NUL or other control
// byte through, so reply text cannot inject a line into the dialogue.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mailgrid::smtp {

// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets including CRLF.
inline constexpr size_t kMaxReplyLineLength = 512;

struct Reply {
  int code = 0;                    // 200..599
  std::string enhanced;            // RFC 3463 "class.subject.detail" ("5.1.1"), or empty
  std::vector<std::string> lines;  // text of each line, without code or status

  // Reply{code, enhanced, {text}}; a convenience for one-line replies.
  static Reply Make(int code, std::string_view enhanced, std::string_view text);

  bool IsPositive() const { return code >= 200 && code < 400; }
  bool IsTransientFailure() const { return code >= 400 && code < 500; }
  bool IsPermanentFailure() const { return code >= 500 && code < 600; }

  // Wire form: "250-first\r\n250 last\r\n". The enhanced code is written on
  // every line when `with_enhanced` and the code is 2xx/4xx/5xx (RFC 2034 §4
  // puts it on every line of a multi-line reply). Control bytes in the text
  // become '?', lines are cut to kMaxReplyLineLength. An invalid code is
  // written as 451 so the wire stays well-formed.
  std::string Serialize(bool with_enhanced = true) const;

  bool operator==(const Reply&) const = default;
};

// True for RFC 3463 status codes: class 2/4/5, subject and detail 1-3 digits.
bool IsValidEnhancedCode(std::string_view code);

// Parses server replies incrementally (the client side of RFC 5321 §4.2):
//   Reply-line = *( Reply-code "-" [ textstring ] CRLF )
//                   Reply-code [ SP textstring ] CRLF
// A line may also end in a bare LF (we are lenient in what we read from
// remote servers; a bare LF cannot smuggle anything into a reply). The
// enhanced status code, when the first line carries one whose class matches
// the reply code, is split off every line that repeats it.
//
// Any malformed line poisons the parser: every later Next() returns the same
// error, and the caller must drop the connection.
class ReplyParser {
 public:
  struct Limits {
    size_t max_line_length = 4096;  // generous: some servers exceed 512
    size_t max_lines = 128;         // EHLO replies are ~20 lines
  };

  ReplyParser() = default;
  explicit ReplyParser(Limits limits) : limits_(limits) {}

  void Feed(std::string_view bytes);
  // A complete reply, std::nullopt when more input is needed, or an error
  // (InvalidArgument) for a malformed reply.
  absl::StatusOr<std::optional<Reply>> Next();
  size_t buffered() const { return buffer_.size() - pos_; }

 private:
  absl::Status ParseLine(std::string_view line, bool* last);

  Limits limits_;
  std::string buffer_;
  size_t pos_ = 0;
  absl::Status error_;
  int code_ = 0;                        // code of the reply being assembled
  std::vector<std::string> raw_lines_;  // its text lines so far
};

}  // namespace mailgrid::smtp
