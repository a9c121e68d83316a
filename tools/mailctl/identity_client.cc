#include "tools/mailctl/identity_client.h"

#include "libs/base/status.h"

namespace mailgrid::mailctl {

absl::StatusOr<IdentitydClient> IdentitydClient::Connect(const Invocation& inv, const Args& args) {
  // Argon2id logins and QR polling take longer than tenantd's calls.
  ASSIGN_OR_RETURN(ServiceClient c,
                   ServiceClient::Connect(inv, args, {"identityd", "service", absl::Seconds(150)}));
  return IdentitydClient(std::move(c));
}

}  // namespace mailgrid::mailctl
