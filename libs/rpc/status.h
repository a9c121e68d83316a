// The one place absl::Status and grpc::Status are converted. The codes are
// numerically identical (both follow google.rpc.Code); messages pass through.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace mailgrid::rpc {

grpc::Status ToGrpc(const absl::Status& status);
absl::Status FromGrpc(const grpc::Status& status);

// The upper-case code name gRPC documents ("NOT_FOUND"); "UNKNOWN" for a
// value outside the enum.
std::string CodeName(grpc::StatusCode code);

}  // namespace mailgrid::rpc
