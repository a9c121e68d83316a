// LOGIN (RFC 3501 §6.2.3) and AUTHENTICATE (§6.2.2) with the SASL-IR
// initial response (RFC 4959).
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "libs/imap/commands/cursor.h"

namespace mailgrid::imap {

struct LoginArgs {
  std::string user;
  std::string password;  // never logged: the debug dump shows its length only
};

struct AuthenticateArgs {
  std::string mechanism;  // upper-cased, e.g. "PLAIN", "XOAUTH2"
  // SASL-IR, BASE64-decoded; "=" (an empty response) gives "". Absent: the
  // server sends an empty challenge and reads the response line.
  std::optional<std::string> initial_response;
};

absl::StatusOr<LoginArgs> ParseLogin(ArgCursor& in, bool uid);
absl::StatusOr<AuthenticateArgs> ParseAuthenticate(ArgCursor& in, bool uid);
void AppendDebug(const LoginArgs& a, std::string* out);
void AppendDebug(const AuthenticateArgs& a, std::string* out);

}  // namespace mailgrid::imap
