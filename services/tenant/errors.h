// tenantd's error vocabulary is the shared one (libs/rpc/errors.h); these
// names keep tenantd's code short and unchanged.
#pragma once

#include "libs/rpc/errors.h"
#include "libs/rpc/status.h"

namespace mailgrid::tenant {

using rpc::AlreadyExists;
using rpc::DetailsOf;
using rpc::ErrorDetailOf;
using rpc::InvalidField;
using rpc::NotFound;
using rpc::PermissionDenied;
using rpc::Precondition;
using rpc::Unauthenticated;
using rpc::WithLimits;

inline grpc::Status ToGrpcStatus(const absl::Status& status) { return rpc::ToGrpc(status); }

}  // namespace mailgrid::tenant
