// Types shared by the receiver, the command parsers and the response writer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace mailgrid::imap {

// RFC 3501 §3: the connection states a command may be valid in.
enum class SessionState : uint8_t { kNotAuthenticated, kAuthenticated, kSelected, kLogout };

std::string_view SessionStateName(SessionState s);

// A set of SessionState values, for the command table.
using StateMask = uint8_t;
constexpr StateMask StateBit(SessionState s) {
  return static_cast<StateMask>(1u << static_cast<unsigned>(s));
}
inline constexpr StateMask kNotAuthenticatedOnly = StateBit(SessionState::kNotAuthenticated);
inline constexpr StateMask kAuthenticatedOnly = StateBit(SessionState::kAuthenticated);
inline constexpr StateMask kSelectedOnly = StateBit(SessionState::kSelected);
inline constexpr StateMask kAuthenticatedOrSelected =
    StateBit(SessionState::kAuthenticated) | StateBit(SessionState::kSelected);
inline constexpr StateMask kAnyState = kNotAuthenticatedOnly | kAuthenticatedOrSelected;

// The condition word of a status response (resp-cond-state, resp-cond-bye,
// resp-cond-auth).
enum class Condition : uint8_t { kOk, kNo, kBad, kBye, kPreauth };

std::string_view ConditionName(Condition c);

// A refusal the server sends as is: "<tag> BAD [code] text", or untagged
// ("* BAD ...", "* BYE ...") when the tag is not known.
struct ProtocolError {
  std::string tag;  // empty: not known (the line had no valid tag)
  Condition condition = Condition::kBad;
  std::string code;  // response code without brackets ("TOOBIG"); empty for none
  std::string text;  // human text; the writer strips anything unsafe
  // The connection cannot continue (the byte stream can no longer be framed,
  // or the client keeps sending garbage): send the response, then close.
  bool close_connection = false;
};

// Parsers report refusals as absl::Status: InvalidArgument becomes BAD, any
// other code NO. A message starting "[CODE] " carries a response code.
absl::Status BadArgument(std::string_view text, std::string_view code = "");
absl::Status Refused(std::string_view text, std::string_view code = "");
ProtocolError ToProtocolError(std::string_view tag, const absl::Status& status);

}  // namespace mailgrid::imap
