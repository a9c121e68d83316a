// mailstored's error vocabulary is libs/rpc's (common.proto ERRORS); these
// names keep the store code short.
#pragma once

#include "libs/rpc/errors.h"

namespace mailgrid::mailstore {
using rpc::AlreadyExists;
using rpc::DetailsOf;
using rpc::ErrorDetailOf;
using rpc::InvalidField;
using rpc::NotFound;
using rpc::PermissionDenied;
using rpc::Precondition;
using rpc::ReasonOf;
using rpc::Unauthenticated;
using rpc::WithLimits;
}  // namespace mailgrid::mailstore
