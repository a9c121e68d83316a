// The error vocabulary of every mailgrid API (common.proto ERRORS):
// statuses that carry a machine-readable ErrorDetail / LimitDetail.
//
// The details ride in one absl::Status payload (a serialized RpcStatus), so
// a status passes through RETURN_IF_ERROR untouched; rpc::ToGrpc turns it
// into the `grpc-status-details-bin` trailer and rpc::FromGrpc turns the
// trailer back into the payload, so a client (relayd asking tenantd's
// Resolve) reads the reason with ErrorDetailOf / ReasonOf.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"
#include "mailgrid/common/v1/common.pb.h"

namespace mailgrid::rpc {

// INVALID_ARGUMENT "field: message" with ErrorDetail{field, reason}.
absl::Status InvalidField(std::string_view field, std::string_view reason,
                          std::string_view message);

// FAILED_PRECONDITION with ErrorDetail{reason} (WRONG_STATE, PLAN_RETIRED...).
absl::Status Precondition(std::string_view reason, std::string_view message,
                          std::string_view field = "");

// NOT_FOUND "<kind> <id> not found": the same words whether the object is
// absent or belongs to another tenant (common.proto ERRORS).
absl::Status NotFound(std::string_view kind, std::string_view id);

// ALREADY_EXISTS with ErrorDetail{field, reason}.
absl::Status AlreadyExists(std::string_view field, std::string_view reason,
                           std::string_view message);

// The uniform answer to a missing or bad token.
absl::Status Unauthenticated();

absl::Status PermissionDenied(std::string_view message);

// `code` + message with the given LimitDetails (and an ErrorDetail reason).
absl::Status WithLimits(absl::StatusCode code, std::string_view reason, std::string_view message,
                        const std::vector<common::v1::LimitDetail>& limits);

// The RpcStatus attached to `status` (details only), if any.
std::optional<common::v1::RpcStatus> DetailsOf(const absl::Status& status);
// The first ErrorDetail of `status`, if any (tests and logs).
std::optional<common::v1::ErrorDetail> ErrorDetailOf(const absl::Status& status);

// The ErrorDetail reason ("DOMAIN_NOT_HOSTED"), or "" when there is none.
std::string ReasonOf(const absl::Status& status);

// Attaches `details` to a status (the payload ToGrpc sends).
absl::Status WithDetails(absl::Status status, const common::v1::RpcStatus& details);

}  // namespace mailgrid::rpc
