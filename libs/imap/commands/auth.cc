#include "libs/imap/commands/auth.h"

#include "libs/base/status.h"
#include "libs/imap/base64.h"
#include "libs/imap/types.h"

namespace mailgrid::imap {

absl::StatusOr<LoginArgs> ParseLogin(ArgCursor& in, bool uid) {
  LoginArgs a;
  ASSIGN_OR_RETURN(a.user, in.Astring("user name"));
  ASSIGN_OR_RETURN(a.password, in.Astring("password"));
  RETURN_IF_ERROR(in.ExpectEnd());
  return a;
}

absl::StatusOr<AuthenticateArgs> ParseAuthenticate(ArgCursor& in, bool uid) {
  AuthenticateArgs a;
  // auth-type = atom (SASL mechanism names: A-Z 0-9 - _).
  ASSIGN_OR_RETURN(std::string mech, in.Atom("SASL mechanism"));
  a.mechanism = UpperCase(mech);
  if (!in.AtEnd()) {
    // initial-resp = base64 / "=" (RFC 4959); an atom, never a string.
    ASSIGN_OR_RETURN(Token * t, in.Next("initial response"));
    if (t->type != Token::Type::kAtom) return BadArgument("Expected BASE64 initial response");
    if (t->value == "=") {
      a.initial_response = "";
    } else {
      auto decoded = DecodeBase64(t->value);
      if (!decoded.ok()) return BadArgument("Invalid BASE64 in initial response");
      a.initial_response = std::move(*decoded);
    }
  }
  RETURN_IF_ERROR(in.ExpectEnd());
  return a;
}

void AppendDebug(const LoginArgs& a, std::string* out) {
  *out += " user=";
  AppendQuoted(a.user, out);
  *out += " password=<" + std::to_string(a.password.size()) + " bytes>";
}

void AppendDebug(const AuthenticateArgs& a, std::string* out) {
  *out += " mechanism=" + a.mechanism;
  if (a.initial_response) {
    *out += " initial-response=<" + std::to_string(a.initial_response->size()) + " bytes>";
  }
}

}  // namespace mailgrid::imap
