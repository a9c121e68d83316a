#include "services/relay/relay_service.h"

namespace mailgrid::relay {
namespace {
grpc::Status NotYet() {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      "relayd: the outbound queue, routes and submission API arrive with issue 9");
}
}  // namespace

grpc::Status RelayServiceImpl::ListQueue(grpc::ServerContext*, const v1::ListQueueRequest*,
                                         v1::ListQueueResponse*) {
  return NotYet();
}

grpc::Status RelayServiceImpl::SubmitMessage(grpc::ServerContext*,
                                             const v1::SubmitMessageRequest*,
                                             v1::SubmitMessageResponse*) {
  return NotYet();
}

}  // namespace mailgrid::relay
