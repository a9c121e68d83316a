#include "libs/rpc/status.h"

#include "absl/strings/cord.h"
#include "mailgrid/common/v1/common.pb.h"

namespace mailgrid::rpc {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  auto code = static_cast<grpc::StatusCode>(status.code());
  std::string message(status.message());
  auto payload = status.GetPayload(kDetailsPayloadUrl);
  common::v1::RpcStatus details;
  if (!payload.has_value() || !details.ParseFromString(std::string(*payload))) {
    return grpc::Status(code, message);
  }
  details.set_code(static_cast<int>(status.code()));
  details.set_message(message);
  return grpc::Status(code, message, details.SerializeAsString());
}

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  common::v1::RpcStatus details;
  if (!status.error_details().empty() && details.ParseFromString(status.error_details())) {
    out.SetPayload(kDetailsPayloadUrl, absl::Cord(status.error_details()));
  }
  return out;
}

std::string CodeName(grpc::StatusCode code) {
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "UNKNOWN" : name;
}

}  // namespace mailgrid::rpc
