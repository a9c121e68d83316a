#include "libs/replica/kv_service.h"

#include <memory>

#include "absl/synchronization/mutex.h"
#include "libs/replica/raft_service.h"
#include "libs/rpc/status.h"

namespace mailgrid::replica {

namespace {

// One Write call: finished exactly once, by the replica's answer or by a
// cancellation (client gone, server shutting down: Shutdown waits for every
// callback call to finish, so a write stuck behind a lost quorum must not
// hold it). The state outlives the reactor: the replica may answer after
// OnDone, and then finds the call finished and touches nothing.
class WriteReactor final : public grpc::ServerUnaryReactor {
 public:
  struct State {
    absl::Mutex mu;
    WriteReactor* reactor ABSL_GUARDED_BY(mu);
    grpc::CallbackServerContext* ctx ABSL_GUARDED_BY(mu);
    kv::v1::WriteResponse* resp ABSL_GUARDED_BY(mu);
    bool finished ABSL_GUARDED_BY(mu) = false;
  };

  WriteReactor(grpc::CallbackServerContext* ctx, kv::v1::WriteResponse* resp)
      : state_(std::make_shared<State>()) {
    absl::MutexLock lock(&state_->mu);
    state_->reactor = this;
    state_->ctx = ctx;
    state_->resp = resp;
  }

  // The first of Answer and OnCancel claims the call; Finish runs outside
  // the lock (gRPC may run OnCancel/OnDone inline), and the reactor lives
  // until OnDone, which only follows Finish.
  static void Answer(const std::shared_ptr<State>& st, absl::StatusOr<kv::v1::WriteResponse> r) {
    WriteReactor* reactor;
    grpc::CallbackServerContext* ctx;
    kv::v1::WriteResponse* resp;
    {
      absl::MutexLock lock(&st->mu);
      if (st->finished) return;
      st->finished = true;
      reactor = st->reactor;
      ctx = st->ctx;
      resp = st->resp;
    }
    if (!r.ok()) {
      reactor->Finish(ToGrpcWithLeaderHint(ctx, r.status()));
      return;
    }
    *resp = std::move(*r);
    reactor->Finish(grpc::Status::OK);
  }

  std::shared_ptr<State> state() const { return state_; }

  void OnCancel() override {
    {
      absl::MutexLock lock(&state_->mu);
      if (state_->finished) return;
      state_->finished = true;
    }
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write cancelled; outcome unknown"));
  }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<State> state_;
};

}  // namespace

grpc::Status ToGrpcWithLeaderHint(grpc::ServerContextBase* ctx, const absl::Status& status) {
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

grpc::ServerUnaryReactor* KvServiceImpl::Write(grpc::CallbackServerContext* ctx,
                                               const kv::v1::WriteRequest* req,
                                               kv::v1::WriteResponse* resp) {
  auto* reactor = new WriteReactor(ctx, resp);
  replica_->WriteAsync(*req, AdminDeadline(ctx),
                       [st = reactor->state()](absl::StatusOr<kv::v1::WriteResponse> r) {
                         WriteReactor::Answer(st, std::move(r));
                       });
  return reactor;
}

}  // namespace mailgrid::replica
