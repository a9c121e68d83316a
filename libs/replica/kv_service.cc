#include "libs/replica/kv_service.h"

#include "libs/replica/raft_service.h"
#include "libs/rpc/status.h"

namespace mailgrid::replica {

grpc::Status ToGrpcWithLeaderHint(grpc::ServerContext* ctx, const absl::Status& status) {
  std::optional<kv::v1::NotLeader> hint = GetNotLeader(status);
  if (!hint.has_value()) return rpc::ToGrpc(status);
  ctx->AddTrailingMetadata(kLeaderMetadata, hint->leader_address());
  ctx->AddTrailingMetadata(kNotLeaderMetadata, hint->SerializeAsString());
  if (hint->leader_id() == raft::kNoNode) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no leader known; retry with backoff");
  }
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, std::string(status.message()));
}

grpc::Status KvServiceImpl::Get(grpc::ServerContext* ctx, const kv::v1::GetRequest* req,
                                kv::v1::GetResponse* resp) {
  absl::StatusOr<kv::v1::GetResponse> r = replica_->Get(*req, AdminDeadline(ctx));
  if (!r.ok()) return ToGrpcWithLeaderHint(ctx, r.status());
  *resp = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status KvServiceImpl::Scan(grpc::ServerContext* ctx, const kv::v1::ScanRequest* req,
                                 kv::v1::ScanResponse* resp) {
  absl::StatusOr<kv::v1::ScanResponse> r = replica_->Scan(*req, AdminDeadline(ctx));
  if (!r.ok()) return ToGrpcWithLeaderHint(ctx, r.status());
  *resp = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status KvServiceImpl::Write(grpc::ServerContext* ctx, const kv::v1::WriteRequest* req,
                                  kv::v1::WriteResponse* resp) {
  absl::StatusOr<kv::v1::WriteResponse> r = replica_->Write(*req, AdminDeadline(ctx));
  if (!r.ok()) return ToGrpcWithLeaderHint(ctx, r.status());
  *resp = std::move(*r);
  return grpc::Status::OK;
}

}  // namespace mailgrid::replica
