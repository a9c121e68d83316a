// What `mailctl auth` and `mailctl sso` share: how they find identityd and
// authenticate. Options as tenant_client.h (ParseArgs, --token,
// --token-key with --role/--token-tenant/--subject), and:
//   --identityd ADDR[,ADDR] (or MAILGRID_IDENTITYD), else the "identityd"
//   list of --cluster cluster.json.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/tenant_client.h"

namespace mailgrid::mailctl {

class IdentitydClient : public ServiceClient {
 public:
  // Minted tokens default to --role service (identityd's admin calls such
  // as initial-password and sasl are service-internal).
  static absl::StatusOr<IdentitydClient> Connect(const Invocation& inv, const Args& args);

 private:
  explicit IdentitydClient(ServiceClient c) : ServiceClient(std::move(c)) {}
};

}  // namespace mailgrid::mailctl
