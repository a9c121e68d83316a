// SASL exchanges relayd understands (RFC 4954 AUTH for SMTP), decoded into
// what identityd's CheckSasl takes. Pure functions over the decoded bytes
// the SMTP engine hands over; no I/O.
//   PLAIN       RFC 4616: authzid NUL authcid NUL passwd
//   LOGIN       draft-murchison-sasl-login: "Username:" then "Password:"
//   XOAUTH2     "user=" U ^A "auth=Bearer " T ^A ^A
//   OAUTHBEARER RFC 7628: gs2 header "n,a=U," ^A kvpairs ("auth=Bearer T") ^A ^A
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mailgrid::relay {

struct SaslCredentials {
  std::string mechanism;  // PLAIN, LOGIN, XOAUTH2, OAUTHBEARER
  std::string authzid;
  std::string authcid;
  std::string password;      // PLAIN, LOGIN
  std::string bearer_token;  // XOAUTH2, OAUTHBEARER
};

// INVALID_ARGUMENT when malformed (the SMTP side answers 501 5.5.2).
absl::StatusOr<SaslCredentials> ParsePlain(std::string_view response);
absl::StatusOr<SaslCredentials> ParseXoauth2(std::string_view response);
absl::StatusOr<SaslCredentials> ParseOauthBearer(std::string_view response);

}  // namespace mailgrid::relay
