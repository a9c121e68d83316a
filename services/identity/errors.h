// identityd's error vocabulary (common.proto ERRORS, auth.proto "uniform
// failure"): statuses carrying an ErrorDetail / RetryDetail in one absl
// payload (a serialized RpcStatus) and their one conversion to grpc.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/support/status.h"
#include "mailgrid/common/v1/common.pb.h"

namespace mailgrid::identity {

// The one message every credential failure carries (auth.proto).
inline constexpr char kInvalidCredentials[] = "invalid credentials";

// UNAUTHENTICATED "invalid credentials": unknown user, wrong password,
// disabled user, suspended tenant, locked account alike.
absl::Status InvalidCredentials();
// UNAUTHENTICATED for a missing/bad bearer token on calls that need one.
absl::Status Unauthenticated();
// INVALID_ARGUMENT "field: message" with ErrorDetail{field, reason}.
absl::Status InvalidField(std::string_view field, std::string_view reason,
                          std::string_view message);
// FAILED_PRECONDITION with ErrorDetail{reason}.
absl::Status Precondition(std::string_view reason, std::string_view message);
// NOT_FOUND "<what> not found" (same words for absent and foreign objects).
absl::Status NotFound(std::string_view what);
absl::Status PermissionDenied(std::string_view message);
// RESOURCE_EXHAUSTED reason THROTTLED with RetryDetail{retry_after}.
absl::Status Throttled(absl::Time retry_after);

std::optional<common::v1::RpcStatus> DetailsOf(const absl::Status& status);
std::optional<common::v1::ErrorDetail> ErrorDetailOf(const absl::Status& status);

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace mailgrid::identity
