// RelayService (relay.proto). The queue, routes, held mail and internal
// submission belong to relayd part 2 (issue 9, outbound): until then every
// RPC answers UNIMPLEMENTED with a message saying so.
#pragma once

#include "mailgrid/relay/v1/relay.grpc.pb.h"

namespace mailgrid::relay {

class RelayServiceImpl final : public v1::RelayService::Service {
 public:
  grpc::Status ListQueue(grpc::ServerContext*, const v1::ListQueueRequest*,
                         v1::ListQueueResponse*) override;
  grpc::Status SubmitMessage(grpc::ServerContext*, const v1::SubmitMessageRequest*,
                             v1::SubmitMessageResponse*) override;
};

}  // namespace mailgrid::relay
