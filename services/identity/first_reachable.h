// identityd calls tenantd (principals) and relayd (notices) the same way:
// each replica in turn, moving on only while the one tried is unreachable.
// Any other answer, success or error, is the answer.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "libs/rpc/client.h"
#include "libs/rpc/status.h"

namespace mailgrid::identity {

// `call(channel, context)` returns the grpc::Status of one attempt; the
// context already carries `authorization` and a deadline of `timeout`.
// `peer` names the service in the UNAVAILABLE message ("tenantd").
template <typename Call>
absl::Status CallFirstReachable(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                                const std::string& authorization, absl::Duration timeout,
                                const char* peer, Call call) {
  absl::Status last = absl::UnavailableError("no address configured");
  for (const auto& channel : channels) {
    auto ctx = rpc::ContextWithDeadline(timeout);
    ctx->AddMetadata("authorization", authorization);
    grpc::Status s = call(channel, ctx.get());
    if (s.ok()) return absl::OkStatus();
    last = rpc::FromGrpc(s);
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
        s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED)
      return last;
  }
  return absl::UnavailableError(absl::StrCat(peer, " unreachable: ", last.message()));
}

}  // namespace mailgrid::identity
