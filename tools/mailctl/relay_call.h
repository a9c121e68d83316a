// Calls to relayd's RelayService from mailctl (queue and audit commands):
// the replica is found as ServiceClient finds it (--relayd, MAILGRID_RELAYD,
// cluster.json), with its retry across replicas.
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "mailgrid/relay/v1/relay.grpc.pb.h"
#include "tools/mailctl/tenant_client.h"

namespace mailgrid::mailctl {

// `fn(stub, ctx)` with a stub on the channel ServiceClient chose; for
// streaming calls.
template <typename Fn>
absl::Status CallRelay(const ServiceClient& c, Fn fn) {
  return c.Run([&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext* ctx) {
    auto stub = ::mailgrid::relay::v1::RelayService::NewStub(ch);
    return fn(*stub, ctx);
  });
}

// One unary RelayService method: CallRelay(c, &Stub::GetQueueEntry, req, &entry).
template <typename Request, typename Response>
absl::Status CallRelay(const ServiceClient& c,
                       grpc::Status (::mailgrid::relay::v1::RelayService::Stub::*method)(
                           grpc::ClientContext*, const Request&, Response*),
                       const Request& request, Response* response) {
  return CallRelay(c, [&](::mailgrid::relay::v1::RelayService::Stub& stub,
                          grpc::ClientContext* ctx) { return (stub.*method)(ctx, request, response); });
}

}  // namespace mailgrid::mailctl
