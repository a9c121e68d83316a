#include "libs/imap/types.h"

namespace mailgrid::imap {
namespace {

std::string WithCode(std::string_view text, std::string_view code) {
  std::string out;
  if (!code.empty()) {
    out.append("[").append(code).append("] ");
  }
  out.append(text);
  return out;
}

}  // namespace

std::string_view SessionStateName(SessionState s) {
  switch (s) {
    case SessionState::kNotAuthenticated:
      return "not-authenticated";
    case SessionState::kAuthenticated:
      return "authenticated";
    case SessionState::kSelected:
      return "selected";
    case SessionState::kLogout:
      return "logout";
  }
  return "?";
}

std::string_view ConditionName(Condition c) {
  switch (c) {
    case Condition::kOk:
      return "OK";
    case Condition::kNo:
      return "NO";
    case Condition::kBad:
      return "BAD";
    case Condition::kBye:
      return "BYE";
    case Condition::kPreauth:
      return "PREAUTH";
  }
  return "BAD";
}

absl::Status BadArgument(std::string_view text, std::string_view code) {
  return absl::InvalidArgumentError(WithCode(text, code));
}

absl::Status Refused(std::string_view text, std::string_view code) {
  return absl::FailedPreconditionError(WithCode(text, code));
}

ProtocolError ToProtocolError(std::string_view tag, const absl::Status& status) {
  ProtocolError e;
  e.tag = std::string(tag);
  e.condition =
      status.code() == absl::StatusCode::kInvalidArgument ? Condition::kBad : Condition::kNo;
  std::string_view msg(status.message().data(), status.message().size());
  if (msg.size() > 2 && msg[0] == '[') {
    const size_t close = msg.find("] ");
    if (close != std::string_view::npos) {
      e.code = std::string(msg.substr(1, close - 1));
      msg.remove_prefix(close + 2);
    }
  }
  e.text = std::string(msg);
  return e;
}

}  // namespace mailgrid::imap
