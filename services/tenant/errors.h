// tenantd's error vocabulary (common.proto ERRORS): statuses that carry a
// machine-readable ErrorDetail / LimitDetail, and their conversion to a
// grpc::Status with the `grpc-status-details-bin` trailer.
//
// Why here and not in libs/rpc: rpc::ToGrpc passes code and message only.
// The details ride in one absl::Status payload (a serialized RpcStatus), so
// a status can pass through RETURN_IF_ERROR untouched; ToGrpcStatus is the
// one place tenantd converts.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"
#include "mailgrid/common/v1/common.pb.h"

namespace mailgrid::tenant {

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

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace mailgrid::tenant
