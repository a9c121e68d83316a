// Receiver: the IMAP client→server byte stream framed into commands, as a
// pure state machine (no I/O). The server feeds whatever the socket gave it
// and pulls results one at a time:
//
//   receiver.Feed(bytes);
//   for (;;) {
//     ReceiverResult r = receiver.Next();
//     NeedMoreData      → read more from the socket
//     NeedContinuation  → write "+ Ready for literal data\r\n", keep going
//     Request           → run the command (see commands/registry.h)
//     SaslResponse      → next AUTHENTICATE step (after ExpectSaslResponse)
//     IdleDone          → end the IDLE (after ExpectIdleDone)
//     ProtocolError     → write it; close the connection if it says so
//   }
//
// SECURITY: every byte is hostile. Nothing grows without a limit
// (ReceiverLimits): a line is at most max_line_length bytes, and the line is
// refused as soon as that many bytes arrive without a CRLF; a literal larger
// than its limit is refused from its announced size, before a single byte of
// it is stored (a synchronizing literal is never invited, a non-synchronizing
// one is skipped by counting, or the connection is closed if even that is
// too much); token count and list depth are bounded. After an error the
// receiver skips the rest of the command while keeping the literal framing,
// so the bytes of a refused literal are never read as commands. Parsing is
// lazy: Feed only buffers, Next does the work, so the driver can change mode
// (IDLE, AUTHENTICATE, session state) between commands that arrived in one
// read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "libs/imap/token.h"
#include "libs/imap/types.h"

namespace mailgrid::imap {

struct ReceiverLimits {
  // One line of a command (the text between two literals, or between a
  // literal and the CRLF), CRLF excluded. Dovecot and Stalwart use 64 KiB.
  size_t max_line_length = 64 * 1024;
  // A literal of a command whose lookup says large_literals (APPEND).
  uint64_t max_literal_size = 64ull << 20;
  // A literal of any other command (a password, a search string).
  uint64_t max_argument_literal_size = 64 * 1024;
  // All lines and literals of one large-literal command (MULTIAPPEND).
  uint64_t max_command_size = 128ull << 20;
  // All lines and literals of any other command.
  uint64_t max_small_command_size = 1ull << 20;
  // Tokens in one command, counting every list and list item.
  size_t max_tokens = 10000;
  // Nesting of parenthesized lists.
  size_t max_depth = 32;
  size_t max_tag_length = 64;
  size_t max_command_name_length = 32;
  // A refused non-synchronizing literal up to this size is skipped (read and
  // dropped, never stored) so the client gets NO [TOOBIG] and can go on; a
  // larger one closes the connection.
  uint64_t max_discard_size = 256ull << 20;
  // This many refused commands in a row close the connection.
  int max_consecutive_errors = 10;
};

// What the receiver must know about a command before it reads the
// arguments: whether it exists, is allowed in the current state, and may
// carry message-sized literals. commands/registry.h provides the real one.
struct CommandCheck {
  enum class Verdict : unsigned char { kOk, kUnknown, kNotAllowed };
  Verdict verdict = Verdict::kOk;
  bool large_literals = false;
};
using CommandLookup = CommandCheck (*)(std::string_view upper_name, SessionState state);

struct NeedMoreData {};
// A synchronizing literal {N}: send a continuation request before the
// client sends the N bytes. Never returned for {N+}.
struct NeedContinuation {
  uint64_t literal_size = 0;
};
// One line of an AUTHENTICATE exchange, BASE64-decoded.
struct SaslResponse {
  bool cancelled = false;  // the client sent "*"
  std::string data;
};
// "DONE" ended an IDLE.
struct IdleDone {};

using ReceiverResult =
    std::variant<NeedMoreData, NeedContinuation, Request, SaslResponse, IdleDone, ProtocolError>;

class Receiver {
 public:
  explicit Receiver(ReceiverLimits limits = {}, CommandLookup lookup = nullptr);

  // Buffers bytes from the client; parsing happens in Next().
  void Feed(std::string_view bytes);
  ReceiverResult Next();

  // The state commands are checked against; set it before each Next().
  void set_state(SessionState state) { state_ = state; }
  SessionState state() const { return state_; }

  // The next line is the end of an IDLE (RFC 2177): "DONE" gives IdleDone,
  // anything else a tagged BAD for `idle_tag`. Either way command parsing
  // resumes afterwards.
  void ExpectIdleDone(std::string idle_tag);
  // The next line answers an AUTHENTICATE challenge: BASE64 or "*". Call it
  // once per continuation the server sends; invalid BASE64 gives a tagged
  // BAD for `auth_tag`. Command parsing resumes after that one line.
  void ExpectSaslResponse(std::string auth_tag);

  // A command parser refused a Request the receiver produced: counts toward
  // max_consecutive_errors. Returns true if the connection must now close.
  bool NoteRejectedCommand();

  // Bytes fed but not yet consumed. After STARTTLS or COMPRESS the server
  // must see none (anything pipelined behind them was sent in the clear or
  // uncompressed, and acting on it is the STARTTLS injection bug).
  size_t pending_input() const { return in_.size() - pos_; }
  void DiscardPendingInput();
  // Everything held for the connection: pending input plus the command
  // being assembled. For back-pressure (stop reading when it is large).
  size_t buffered_bytes() const;
  // True once an error closed the connection; Next() then returns only
  // NeedMoreData and Feed() drops input.
  bool closed() const { return phase_ == Phase::kClosed; }
  const ReceiverLimits& limits() const { return limits_; }
  // Bytes the input buffer holds allocated: at most kIdleInputCapacity
  // whenever Next() has returned NeedMoreData between commands, however
  // large the last command's literal was (a session may then idle for
  // hours, e.g. in IDLE).
  size_t input_capacity() const { return in_.capacity(); }
  static constexpr size_t kIdleInputCapacity = 4096;

 private:
  enum class Phase : unsigned char {
    kLine,         // waiting for a complete line
    kLiteral,      // reading literal bytes into the current token
    kSkipLine,     // discarding the rest of a refused command's line
    kSkipLiteral,  // discarding a refused command's non-synchronizing literal
    kClosed,
  };
  enum class Mode : unsigned char { kCommand, kIdle, kSasl };
  struct LiteralHeader {
    uint64_t size = 0;
    bool non_sync = false;
    bool literal8 = false;
  };
  // kTooLong: no CRLF within the limit (nothing consumed); kLongLine: a
  // complete line over the limit (consumed).
  enum class LineStatus : unsigned char { kComplete, kNeedMore, kTooLong, kLongLine };

  // receiver.cc: framing, literals, modes, errors.
  LineStatus TakeLine(std::string_view* line);
  std::optional<ReceiverResult> HandleLine(std::string_view line);
  std::optional<ReceiverResult> HandleModeLine(std::string_view line);
  std::optional<ReceiverResult> StartCommand(std::string_view line, std::string_view* rest);
  std::optional<ReceiverResult> HandleLiteralHeader(const LiteralHeader& h);
  std::optional<ReceiverResult> ReadLiteral();
  ReceiverResult Overflow();
  bool SkipLiteral();
  bool SkipLine();
  // The tag to answer an error on `line` with, if one is known.
  std::string ErrorTag(std::string_view line) const;
  // Counts the error and decides whether it closes the connection.
  ProtocolError Emit(ProtocolError e);
  // An error on a consumed line: drop the command, keep literal framing.
  ProtocolError FailLine(std::string_view line, ProtocolError e);
  // An error at a literal header: drop the command; skip the literal bytes
  // if the client sends them anyway (non-synchronizing).
  ProtocolError FailAtLiteral(const LiteralHeader& h, ProtocolError e);
  // After a refused command's line: returns false if its trailing
  // non-synchronizing literal is too large to skip.
  bool ResumeAfterLine(std::string_view line_tail);
  void ResetCommand();
  void Compact();
  void ReleaseIdleInput();
  uint64_t CommandLimit() const;

  // receiver_tokens.cc: one line of arguments into the token tree.
  absl::Status Tokenize(std::string_view seg, std::optional<LiteralHeader>* literal);
  absl::Status AddToken(Token token);
  absl::Status ParseQuoted(std::string_view seg, size_t* i);
  absl::Status ParseLiteralHeader(std::string_view seg, size_t* i, LiteralHeader* h);

  ReceiverLimits limits_;
  CommandLookup lookup_;
  SessionState state_ = SessionState::kNotAuthenticated;

  std::string in_;
  size_t pos_ = 0;   // first unconsumed byte of in_
  size_t scan_ = 0;  // bytes after pos_ already searched for LF

  Phase phase_ = Phase::kLine;
  Mode mode_ = Mode::kCommand;
  std::string mode_tag_;  // tag of the IDLE / AUTHENTICATE being served

  // The command being assembled.
  bool in_command_ = false;
  Request request_;
  std::vector<std::vector<Token>*> open_;  // open lists; open_[0] is &request_.args
  uint64_t command_bytes_ = 0;
  size_t tokens_ = 0;
  bool large_literals_ = false;
  bool need_space_ = false;    // a token just ended; the next must be SP, ")" or end
  bool after_close_ = false;   // ... and it was ")", which may touch "]"
  uint64_t literal_left_ = 0;  // bytes of the current literal still to read

  // Error recovery.
  uint64_t skip_left_ = 0;
  std::string skip_tail_;  // last bytes of a line being skipped
  std::optional<ProtocolError> pending_error_;
  int consecutive_errors_ = 0;
};

}  // namespace mailgrid::imap
