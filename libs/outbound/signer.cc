#include "libs/outbound/signer.h"

#include "absl/strings/str_cat.h"
#include "libs/base/status.h"

namespace mailgrid::outbound {

namespace {
mailauth::DkimSignOptions OptionsFor(const SigningKey& key, absl::Time now) {
  mailauth::DkimSignOptions options;
  options.domain = key.domain;
  options.selector = key.selector;
  options.timestamp = static_cast<uint64_t>(absl::ToUnixSeconds(now));
  return options;
}
}  // namespace

absl::StatusOr<std::string> SignatureField(std::string_view message, const SigningKey& key,
                                           absl::Time now) {
  return mailauth::DkimSign(message, key.key, OptionsFor(key, now));
}

absl::StatusOr<std::string> SignatureFields(std::string_view message,
                                            const std::vector<SigningKey>& keys, absl::Time now) {
  if (keys.empty()) return std::string();
  std::vector<const mailauth::DkimPrivateKey*> pkeys;
  std::vector<mailauth::DkimSignOptions> options;
  for (const SigningKey& k : keys) {
    pkeys.push_back(&k.key);
    options.push_back(OptionsFor(k, now));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> fields, mailauth::DkimSignAll(message, pkeys, options));
  std::string out;
  for (const std::string& f : fields) out += f;
  return out;
}

absl::StatusOr<std::string> SignMessage(std::string_view message, const SigningKey& key,
                                        absl::Time now) {
  ASSIGN_OR_RETURN(std::string out, SignatureField(message, key, now));
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
