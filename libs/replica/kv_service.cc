#include "libs/replica/kv_service.h"

#include <functional>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "libs/replica/kv_scope.h"  // security: --kv-scope
#include "libs/replica/raft_service.h"
#include "libs/rpc/status.h"

namespace mailgrid::replica {

namespace {

// One call: finished exactly once, by the replica's answer or by a
// cancellation (client gone, server shutting down: Shutdown waits for every
// callback call to finish, so a write stuck behind a lost quorum, or a
// linearizable read waiting for one, must not hold it). The state outlives
// the reactor: the replica may answer after OnDone, and then finds the call
// finished and touches nothing.
template <typename Response>
class AnswerOnceReactor final : public grpc::ServerUnaryReactor {
 public:
  struct State {
    absl::Mutex mu;
    AnswerOnceReactor* reactor ABSL_GUARDED_BY(mu);
    grpc::CallbackServerContext* ctx ABSL_GUARDED_BY(mu);
    Response* resp ABSL_GUARDED_BY(mu);
    bool finished ABSL_GUARDED_BY(mu) = false;
  };

  AnswerOnceReactor(grpc::CallbackServerContext* ctx, Response* resp, const char* what)
      : state_(std::make_shared<State>()), what_(what) {
    absl::MutexLock lock(&state_->mu);
    state_->reactor = this;
    state_->ctx = ctx;
    state_->resp = resp;
  }

  // The first of Answer and OnCancel claims the call; Finish runs outside
  // the lock (gRPC may run OnCancel/OnDone inline), and the reactor lives
  // until OnDone, which only follows Finish.
  static void Answer(const std::shared_ptr<State>& st, absl::StatusOr<Response> r) {
    AnswerOnceReactor* reactor;
    grpc::CallbackServerContext* ctx;
    Response* resp;
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

  // The replica's callback for this call.
  std::function<void(absl::StatusOr<Response>)> Callback() const {
    return [st = state_](absl::StatusOr<Response> r) { Answer(st, std::move(r)); };
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&state_->mu);
      if (state_->finished) return;
      state_->finished = true;
    }
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, what_));
  }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<State> state_;
  const char* const what_;
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

grpc::ServerUnaryReactor* KvServiceImpl::Get(grpc::CallbackServerContext* ctx,
                                             const kv::v1::GetRequest* req,
                                             kv::v1::GetResponse* resp) {
  if (auto* refused = RefuseOutsideKvScope(ctx, *req)) return refused;  // security: kv_scope.h
  auto* reactor = new AnswerOnceReactor<kv::v1::GetResponse>(ctx, resp, "read cancelled");
  replica_->GetAsync(*req, AdminDeadline(ctx), reactor->Callback());
  return reactor;
}

grpc::ServerUnaryReactor* KvServiceImpl::Scan(grpc::CallbackServerContext* ctx,
                                              const kv::v1::ScanRequest* req,
                                              kv::v1::ScanResponse* resp) {
  if (auto* refused = RefuseOutsideKvScope(ctx, *req)) return refused;  // security: kv_scope.h
  auto* reactor = new AnswerOnceReactor<kv::v1::ScanResponse>(ctx, resp, "scan cancelled");
  replica_->ScanAsync(*req, AdminDeadline(ctx), reactor->Callback());
  return reactor;
}

grpc::ServerUnaryReactor* KvServiceImpl::Write(grpc::CallbackServerContext* ctx,
                                               const kv::v1::WriteRequest* req,
                                               kv::v1::WriteResponse* resp) {
  if (auto* refused = RefuseOutsideKvScope(ctx, *req)) return refused;  // security: kv_scope.h
  auto* reactor =
      new AnswerOnceReactor<kv::v1::WriteResponse>(ctx, resp, "write cancelled; outcome unknown");
  replica_->WriteAsync(*req, AdminDeadline(ctx), reactor->Callback());
  return reactor;
}

}  // namespace mailgrid::replica
