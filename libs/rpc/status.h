// The one place absl::Status and grpc::Status are converted. The codes are
// numerically identical (both follow google.rpc.Code); messages pass through,
// and so do the machine-readable details (libs/rpc/errors.h): an absl payload
// at kDetailsPayloadUrl holding a mailgrid.common.v1.RpcStatus becomes the
// `grpc-status-details-bin` trailer, and back.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace mailgrid::rpc {

inline constexpr char kDetailsPayloadUrl[] = "type.googleapis.com/mailgrid.common.v1.RpcStatus";

grpc::Status ToGrpc(const absl::Status& status);
absl::Status FromGrpc(const grpc::Status& status);

// The upper-case code name gRPC documents ("NOT_FOUND"); "UNKNOWN" for a
// value outside the enum.
std::string CodeName(grpc::StatusCode code);

}  // namespace mailgrid::rpc
