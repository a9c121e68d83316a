#include "services/identity/errors.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "libs/base/strings.h"
#include "libs/rpc/status.h"

namespace mailgrid::identity {
namespace {

constexpr char kPayloadUrl[] = "type.googleapis.com/mailgrid.common.v1.RpcStatus";

absl::Status Make(absl::StatusCode code, std::string_view message,
                  const common::v1::RpcStatus& details) {
  absl::Status s(code, ToAbsl(message));
  s.SetPayload(kPayloadUrl, absl::Cord(details.SerializeAsString()));
  return s;
}

common::v1::RpcStatus WithDetail(std::string_view field, std::string_view reason,
                                 std::string_view message) {
  common::v1::ErrorDetail d;
  d.set_field(std::string(field));
  d.set_reason(std::string(reason));
  d.set_message(std::string(message));
  common::v1::RpcStatus r;
  r.add_details()->PackFrom(d);
  return r;
}

}  // namespace

absl::Status InvalidCredentials() { return absl::UnauthenticatedError(kInvalidCredentials); }

absl::Status Unauthenticated() {
  return absl::UnauthenticatedError(
      "missing or invalid credentials (authorization: Bearer <token>)");
}

absl::Status InvalidField(std::string_view field, std::string_view reason,
                          std::string_view message) {
  std::string text = absl::StrCat(ToAbsl(field), ": ", ToAbsl(message));
  return Make(absl::StatusCode::kInvalidArgument, text, WithDetail(field, reason, text));
}

absl::Status Precondition(std::string_view reason, std::string_view message) {
  return Make(absl::StatusCode::kFailedPrecondition, message, WithDetail("", reason, message));
}

absl::Status NotFound(std::string_view what) {
  std::string text = absl::StrCat(ToAbsl(what), " not found");
  return Make(absl::StatusCode::kNotFound, text, WithDetail("", "NOT_FOUND", text));
}

absl::Status PermissionDenied(std::string_view message) {
  return absl::PermissionDeniedError(ToAbsl(message));
}

absl::Status Throttled(absl::Time retry_after) {
  std::string text = "too many attempts; retry later";
  common::v1::RpcStatus r = WithDetail("", "THROTTLED", text);
  common::v1::RetryDetail retry;
  retry.mutable_retry_after()->set_seconds(absl::ToUnixSeconds(retry_after) + 1);
  r.add_details()->PackFrom(retry);
  return Make(absl::StatusCode::kResourceExhausted, text, r);
}

std::optional<common::v1::RpcStatus> DetailsOf(const absl::Status& status) {
  auto payload = status.GetPayload(kPayloadUrl);
  if (!payload.has_value()) return std::nullopt;
  common::v1::RpcStatus r;
  if (!r.ParseFromString(std::string(*payload))) return std::nullopt;
  return r;
}

std::optional<common::v1::ErrorDetail> ErrorDetailOf(const absl::Status& status) {
  auto r = DetailsOf(status);
  if (!r.has_value()) return std::nullopt;
  for (const auto& any : r->details()) {
    common::v1::ErrorDetail d;
    if (any.UnpackTo(&d)) return d;
  }
  return std::nullopt;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  auto details = DetailsOf(status);
  if (!details.has_value()) return rpc::ToGrpc(status);
  details->set_code(static_cast<int>(status.code()));
  details->set_message(std::string(status.message()));
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()),
                      details->SerializeAsString());
}

}  // namespace mailgrid::identity
