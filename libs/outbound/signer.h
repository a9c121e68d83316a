// DKIM signing of outgoing mail before it is queued (libs/mailauth does the
// RFC 6376 work; this is the seam relayd fills with the domain's active
// selector and key from tenantd's GetDkimSigningKey).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/mailauth/dkim.h"

namespace mailgrid::outbound {

struct SigningKey {
  std::string domain;    // d=
  std::string selector;  // s=
  mailauth::DkimPrivateKey key;
};

// Where relayd finds a domain's key (tenantd in production). nullopt: the
// domain is not hosted or has no active key: send unsigned.
class SigningKeySource {
 public:
  virtual ~SigningKeySource() = default;
  virtual absl::StatusOr<std::optional<SigningKey>> KeyFor(std::string_view domain) = 0;
};

// The DKIM-Signature header field (relaxed/relaxed, the default header
// set, From oversigned, t= now) to prepend to `message`, CRLF-terminated.
// Several keys' fields may be prepended together: none covers another.
absl::StatusOr<std::string> SignatureField(std::string_view message, const SigningKey& key,
                                           absl::Time now);

// Every key's field, concatenated in the order given, from ONE signing call
// (mailauth::DkimSignAll: the header parsed and the body canonicalized and
// hashed once for all keys; each field is what SignatureField returns).
// "" for no keys. An error of any key fails the whole call.
absl::StatusOr<std::string> SignatureFields(std::string_view message,
                                            const std::vector<SigningKey>& keys, absl::Time now);

// The message with SignatureField prepended.
absl::StatusOr<std::string> SignMessage(std::string_view message, const SigningKey& key,
                                        absl::Time now);

// Signs with the key of the From: domain when `keys` has one; the message
// unchanged when it has none. Errors of the key source are returned (the
// caller decides: relayd answers 451 rather than sending unsigned).
absl::StatusOr<std::string> SignIfHosted(std::string_view message, std::string_view from_domain,
                                         SigningKeySource& keys, absl::Time now);

}  // namespace mailgrid::outbound
