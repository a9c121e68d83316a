// SASL initial responses of the mechanisms accessd and relayd accept, as
// pure decoders (the BASE64 layer is the protocol's: imap::DecodeBase64).
// Shared by IMAP AUTHENTICATE and POP3 AUTH; the result is what identityd's
// AuthService.CheckSasl takes.
//
// SECURITY: the input is a hostile client's; every field is checked for
// the separators its grammar forbids, and nothing is logged (passwords and
// tokens are secrets).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mailgrid::imap {

enum class SaslMechanism : unsigned char { kPlain, kLogin, kXoauth2, kOauthBearer };

// "PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER" (upper-case, as the receivers
// give them); nullopt for anything else.
std::optional<SaslMechanism> ParseSaslMechanism(std::string_view upper);
std::string_view SaslMechanismName(SaslMechanism m);

struct SaslCredentials {
  SaslMechanism mechanism = SaslMechanism::kPlain;
  std::string authzid;  // PLAIN's first field, OAUTHBEARER's a=
  std::string authcid;  // the user (PLAIN, LOGIN, XOAUTH2 user=)
  std::string password;
  std::string bearer_token;
};

// RFC 4616: [authzid] NUL authcid NUL passwd; authcid and passwd non-empty.
absl::StatusOr<SaslCredentials> DecodePlain(std::string_view message);
// Google/Microsoft XOAUTH2: "user=" u ^A "auth=Bearer " t ^A ^A.
absl::StatusOr<SaslCredentials> DecodeXoauth2(std::string_view message);
// RFC 7628: gs2-header ("n,a=user," or "n,,") ^A *(key "=" value ^A) ^A,
// with an auth=Bearer <token> pair.
absl::StatusOr<SaslCredentials> DecodeOauthBearer(std::string_view message);
// The first message of a one-step mechanism (not LOGIN, which takes two).
absl::StatusOr<SaslCredentials> DecodeSasl(SaslMechanism m, std::string_view message);

}  // namespace mailgrid::imap
