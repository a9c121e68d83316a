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

class IdentitydClient {
 public:
  static absl::StatusOr<IdentitydClient> Connect(const Invocation& inv, const Args& args);

  // Runs `call` with a fresh (authenticated, when a token was given)
  // context against each address until one is reachable.
  absl::Status Run(const std::function<grpc::Status(const std::shared_ptr<grpc::Channel>&,
                                                    grpc::ClientContext*)>& call) const;
  // Server-streaming calls: `call` reads until the stream ends.
  bool json() const { return json_; }

 private:
  std::vector<std::string> addresses_;
  std::string token_;
  bool json_ = false;
};

}  // namespace mailgrid::mailctl
