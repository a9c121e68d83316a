#include "services/relay/sasl.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace mailgrid::relay {
namespace {

bool HasNul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

// "auth=Bearer <token>" out of ^A-separated key=value pairs.
std::optional<std::string> BearerFrom(std::string_view kvpairs) {
  for (absl::string_view kv : absl::StrSplit(absl::string_view(kvpairs.data(), kvpairs.size()),
                                             '\x01')) {
    if (absl::StartsWithIgnoreCase(kv, "auth=Bearer ")) {
      std::string token(kv.substr(12));
      if (!token.empty()) return token;
    }
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<SaslCredentials> ParsePlain(std::string_view r) {
  size_t a = r.find('\0');
  if (a == std::string_view::npos) return absl::InvalidArgumentError("PLAIN: missing NUL");
  size_t b = r.find('\0', a + 1);
  if (b == std::string_view::npos) return absl::InvalidArgumentError("PLAIN: missing second NUL");
  SaslCredentials c;
  c.mechanism = "PLAIN";
  c.authzid = std::string(r.substr(0, a));
  c.authcid = std::string(r.substr(a + 1, b - a - 1));
  c.password = std::string(r.substr(b + 1));
  if (c.authcid.empty() || c.password.empty() || HasNul(c.password))
    return absl::InvalidArgumentError("PLAIN: empty or malformed field");
  return c;
}

absl::StatusOr<SaslCredentials> ParseXoauth2(std::string_view r) {
  if (HasNul(r)) return absl::InvalidArgumentError("XOAUTH2: NUL");
  SaslCredentials c;
  c.mechanism = "XOAUTH2";
  for (absl::string_view kv : absl::StrSplit(absl::string_view(r.data(), r.size()), '\x01')) {
    if (absl::StartsWith(kv, "user=")) c.authcid = std::string(kv.substr(5));
  }
  auto token = BearerFrom(r);
  if (c.authcid.empty() || !token) return absl::InvalidArgumentError("XOAUTH2: malformed");
  c.bearer_token = *token;
  return c;
}

absl::StatusOr<SaslCredentials> ParseOauthBearer(std::string_view r) {
  if (HasNul(r)) return absl::InvalidArgumentError("OAUTHBEARER: NUL");
  // gs2-header: "n,a=user@example.com," (or "n,," / "y,,"); then ^A.
  size_t soh = r.find('\x01');
  if (soh == std::string_view::npos) return absl::InvalidArgumentError("OAUTHBEARER: malformed");
  std::string_view gs2 = r.substr(0, soh);
  if (gs2.size() < 3 || (gs2[0] != 'n' && gs2[0] != 'y') || gs2[1] != ',')
    return absl::InvalidArgumentError("OAUTHBEARER: bad gs2 header");
  SaslCredentials c;
  c.mechanism = "OAUTHBEARER";
  std::string_view rest = gs2.substr(2);
  if (rest.substr(0, 2) == "a=") {
    size_t comma = rest.find(',');
    c.authzid = std::string(rest.substr(2, comma == std::string_view::npos ? rest.npos : comma - 2));
  }
  auto token = BearerFrom(r.substr(soh + 1));
  if (!token) return absl::InvalidArgumentError("OAUTHBEARER: no bearer token");
  c.bearer_token = *token;
  c.authcid = c.authzid;  // the token names the user; authzid is only a claim
  return c;
}

}  // namespace mailgrid::relay
