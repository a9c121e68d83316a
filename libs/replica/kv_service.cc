#include "libs/replica/kv_service.h"

#include <functional>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "libs/kv/requests.h"
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
  if (kv::IsBatch(*req)) {
    // A batch entry is built here from checked writes only: a client's
    // batch would pass neither the scope nor the reserved-key checks.
    reactor->Callback()(absl::InvalidArgumentError("batch: replica-internal; use WriteMany"));
    return reactor;
  }
  if (req->set_format() != 0) {
    // It touches no key, so the scope check above cannot see it.
    reactor->Callback()(
        absl::InvalidArgumentError("set_format: an admin operation; use SetFormat"));
    return reactor;
  }
  replica_->WriteAsync(*req, AdminDeadline(ctx), reactor->Callback());
  return reactor;
}

namespace {

// The committed format from a read of kv::kFormatKey (1 when never set).
absl::StatusOr<uint32_t> FormatOf(const kv::v1::GetResponse& r) {
  if (!r.found()) return 1u;
  return kv::internal::ParseFormat(r.value());
}

}  // namespace

grpc::ServerUnaryReactor* KvServiceImpl::GetFormat(grpc::CallbackServerContext* ctx,
                                                   const kv::v1::GetFormatRequest* /*req*/,
                                                   kv::v1::GetFormatResponse* resp) {
  auto* reactor = new AnswerOnceReactor<kv::v1::GetFormatResponse>(ctx, resp, "read cancelled");
  kv::v1::GetRequest get;
  get.set_key(std::string(kv::kFormatKey));
  get.set_consistency(kv::v1::STALE);  // this replica's own applied state
  replica_->GetAsync(get, AdminDeadline(ctx),
                     [done = reactor->Callback(), max_format = replica_->max_format()](
                         absl::StatusOr<kv::v1::GetResponse> r) {
                       if (!r.ok()) return done(r.status());
                       absl::StatusOr<uint32_t> committed = FormatOf(*r);
                       if (!committed.ok()) return done(committed.status());
                       kv::v1::GetFormatResponse out;
                       out.set_supported(max_format);
                       out.set_committed(*committed);
                       out.set_applied_index(r->applied_index());
                       done(std::move(out));
                     });
  return reactor;
}

grpc::ServerUnaryReactor* KvServiceImpl::SetFormat(grpc::CallbackServerContext* ctx,
                                                   const kv::v1::SetFormatRequest* req,
                                                   kv::v1::WriteResponse* resp) {
  auto* reactor = new AnswerOnceReactor<kv::v1::WriteResponse>(
      ctx, resp, "set format cancelled; outcome unknown (GetFormat tells)");
  auto done = reactor->Callback();
  // Admin only: a caller confined by --kv-scope may not write the reserved
  // format key, so it may not change the format either.
  kv::v1::WriteRequest as_put;
  as_put.add_ops()->mutable_put()->set_key(std::string(kv::kFormatKey));
  if (grpc::Status scope = CheckKvScope(*ctx, as_put); !scope.ok()) {  // security: kv_scope.h
    done(rpc::FromGrpc(scope));
    return reactor;
  }
  if (req->format() == 0 || req->format() > replica_->max_format()) {
    done(absl::FailedPreconditionError(absl::StrCat("format ", req->format(),
                                                    ": this replica's binary applies formats 1 to ",
                                                    replica_->max_format())));
    return reactor;
  }
  kv::v1::WriteRequest entry;
  entry.set_set_format(req->format());
  replica_->WriteAsync(entry, AdminDeadline(ctx), std::move(done));
  return reactor;
}

namespace {

// A write refused before proposing: only this write's result says so.
absl::Status CheckOneOfMany(grpc::CallbackServerContext* ctx, const kv::v1::WriteRequest& write) {
  grpc::Status scope = CheckKvScope(*ctx, write);  // security: kv_scope.h
  if (!scope.ok()) return rpc::FromGrpc(scope);
  absl::Status s = kv::ValidateBatchedWrite(write);
  if (s.ok()) s = CheckNoReservedKeys(write);
  return s;
}

void SetError(const absl::Status& s, kv::v1::WriteResult* result) {
  result->mutable_error()->set_code(static_cast<int>(s.code()));
  result->mutable_error()->set_message(std::string(s.message()));
}

}  // namespace

grpc::ServerUnaryReactor* KvServiceImpl::WriteMany(grpc::CallbackServerContext* ctx,
                                                   const kv::v1::WriteManyRequest* req,
                                                   kv::v1::WriteManyResponse* resp) {
  auto* reactor = new AnswerOnceReactor<kv::v1::WriteManyResponse>(
      ctx, resp, "writes cancelled; outcome unknown");
  auto done = reactor->Callback();
  if (static_cast<size_t>(req->writes_size()) > kv::kMaxWritesPerCall) {
    done(absl::InvalidArgumentError(
        absl::StrCat("writes: ", req->writes_size(), " exceed ", kv::kMaxWritesPerCall)));
    return reactor;
  }
  // Results in request order; `proposed[k]` is the request index of the
  // entry's k-th write.
  kv::v1::WriteManyResponse answer;
  std::vector<int> proposed;
  kv::v1::WriteRequest entry;
  // The request is this call's own message (gRPC allocated it, and nothing
  // reads it after this handler), so its checked writes are moved into the
  // entry rather than deep-copied: one copy fewer per write on the leader.
  auto* writes = const_cast<kv::v1::WriteManyRequest*>(req)->mutable_writes();
  entry.mutable_batch()->Reserve(writes->size());
  for (int i = 0; i < writes->size(); ++i) {
    kv::v1::WriteResult* result = answer.add_results();
    absl::Status s = CheckOneOfMany(ctx, writes->Get(i));
    if (!s.ok()) {
      SetError(s, result);
      continue;
    }
    proposed.push_back(i);
    entry.add_batch()->Swap(writes->Mutable(i));
  }
  if (proposed.empty()) {
    done(std::move(answer));
    return reactor;
  }
  if (entry.ByteSizeLong() > kv::kMaxWriteRequestBytes) {
    done(absl::InvalidArgumentError(
        absl::StrCat("writes: more than ", kv::kMaxWriteRequestBytes, " bytes in one call")));
    return reactor;
  }
  replica_->WriteAsync(
      entry, AdminDeadline(ctx),
      [done = std::move(done), answer = std::move(answer),
       proposed = std::move(proposed)](absl::StatusOr<kv::v1::WriteResponse> r) mutable {
        if (!r.ok()) return done(r.status());  // the whole call: NOT_LEADER, UNAVAILABLE...
        if (r->has_rejected() || r->batch_size() != static_cast<int>(proposed.size())) {
          // Cannot happen after the checks above (every replica validates
          // alike); say so for each write rather than invent outcomes.
          absl::Status bad = absl::InternalError(
              absl::StrCat("batch entry not applied as a batch: ", r->ShortDebugString()));
          for (int i : proposed) SetError(bad, answer.mutable_results(i));
          return done(std::move(answer));
        }
        for (size_t k = 0; k < proposed.size(); ++k) {
          answer.mutable_results(proposed[k])
              ->mutable_response()
              ->Swap(r->mutable_batch(static_cast<int>(k)));
        }
        done(std::move(answer));
      });
  return reactor;
}

}  // namespace mailgrid::replica
