#include "libs/rpc/errors.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "libs/base/strings.h"
#include "libs/rpc/status.h"

namespace mailgrid::rpc {
namespace {

absl::Status Make(absl::StatusCode code, std::string_view message,
                  const common::v1::RpcStatus& details) {
  return WithDetails(absl::Status(code, ToAbsl(message)), details);
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

absl::Status InvalidField(std::string_view field, std::string_view reason,
                          std::string_view message) {
  std::string text = absl::StrCat(ToAbsl(field), ": ", ToAbsl(message));
  return Make(absl::StatusCode::kInvalidArgument, text, WithDetail(field, reason, text));
}

absl::Status Precondition(std::string_view reason, std::string_view message,
                          std::string_view field) {
  return Make(absl::StatusCode::kFailedPrecondition, message, WithDetail(field, reason, message));
}

absl::Status NotFound(std::string_view kind, std::string_view id) {
  std::string text = absl::StrCat(ToAbsl(kind), " ", ToAbsl(id), " not found");
  return Make(absl::StatusCode::kNotFound, text, WithDetail("", "NOT_FOUND", text));
}

absl::Status AlreadyExists(std::string_view field, std::string_view reason,
                           std::string_view message) {
  return Make(absl::StatusCode::kAlreadyExists, message, WithDetail(field, reason, message));
}

absl::Status Unauthenticated() {
  return absl::UnauthenticatedError(
      "missing or invalid credentials (authorization: Bearer <token>)");
}

absl::Status PermissionDenied(std::string_view message) {
  return absl::PermissionDeniedError(ToAbsl(message));
}

absl::Status WithLimits(absl::StatusCode code, std::string_view reason, std::string_view message,
                        const std::vector<common::v1::LimitDetail>& limits) {
  common::v1::RpcStatus r = WithDetail("", reason, message);
  for (const auto& l : limits) r.add_details()->PackFrom(l);
  return Make(code, message, r);
}

std::optional<common::v1::RpcStatus> DetailsOf(const absl::Status& status) {
  auto payload = status.GetPayload(kDetailsPayloadUrl);
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

std::string ReasonOf(const absl::Status& status) {
  auto d = ErrorDetailOf(status);
  return d.has_value() ? d->reason() : "";
}

absl::Status WithDetails(absl::Status status, const common::v1::RpcStatus& details) {
  if (status.ok()) return status;
  status.SetPayload(kDetailsPayloadUrl, absl::Cord(details.SerializeAsString()));
  return status;
}

}  // namespace mailgrid::rpc
