#include "libs/outbound/signer.h"

#include "absl/strings/str_cat.h"
#include "libs/base/status.h"

namespace mailgrid::outbound {

absl::StatusOr<std::string> SignMessage(std::string_view message, const SigningKey& key,
                                        absl::Time now) {
  mailauth::DkimSignOptions options;
  options.domain = key.domain;
  options.selector = key.selector;
  options.timestamp = static_cast<uint64_t>(absl::ToUnixSeconds(now));
  ASSIGN_OR_RETURN(std::string header, mailauth::DkimSign(message, key.key, options));
  std::string out = header;
  out.append(message.data(), message.size());
  return out;
}

absl::StatusOr<std::string> SignIfHosted(std::string_view message, std::string_view from_domain,
                                         SigningKeySource& keys, absl::Time now) {
  ASSIGN_OR_RETURN(std::optional<SigningKey> key, keys.KeyFor(from_domain));
  if (!key) return std::string(message);
  return SignMessage(message, *key, now);
}

}  // namespace mailgrid::outbound
