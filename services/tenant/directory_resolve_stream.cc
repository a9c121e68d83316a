// DirectoryService.ResolveStream: Resolve over one long-lived bidirectional
// stream, so gRPC's per-call cost (~0.04 ms server + ~0.06 ms client CPU for
// an empty unary call on this machine, which capped unary Resolve near
// 20k/s on two cores before any work) is paid once per stream instead of
// once per address.
//
// One reactor per stream (gRPC's callback API: no thread per stream). The
// caller is authorized once, on a Resolve worker (an onboarding token reads
// the store), exactly as unary Resolve; every request then re-checks only
// the token's expiry. A request is answered like unary Resolve: a relayd
// (service) request found in the index inline on the callback thread that
// read it, anything else on the Resolve workers. Answers are written as
// they are ready (the id tells the caller which is which), one write at a
// time from a queue. At most kMaxOutstanding requests of a stream are
// unanswered or unwritten at once; beyond that the stream stops reading
// (HTTP/2 flow control then holds the caller back).
//
// Lifetime: Finish is called once, when the caller half-closed (or the
// stream broke, or the token expired) and no answer is pending or being
// written; gRPC then calls OnDone, which deletes the reactor. Start* calls
// are made outside mu_ (gRPC may run a reaction on another thread at once).
#include <deque>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "services/tenant/directory_service.h"
#include "services/tenant/errors.h"

namespace mailgrid::tenant {

namespace {
constexpr int kMaxOutstanding = 1024;
}  // namespace

class DirectoryServiceImpl::ResolveStreamReactor final
    : public grpc::ServerBidiReactor<v1::ResolveStreamRequest, v1::ResolveStreamResponse> {
 public:
  ResolveStreamReactor(DirectoryServiceImpl* service, grpc::CallbackServerContext* ctx)
      : service_(service), ctx_(ctx) {
    service_->RunResolveWork([this] { Authorize(); });
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the caller half-closed, or the stream broke
      {
        absl::MutexLock lock(&mu_);
        reads_done_ = true;
      }
      Progress();
      return;
    }
    if (!CallerStillValid()) return;
    const uint64_t id = in_.id();
    v1::ResolveRequest req = std::move(*in_.mutable_request());
    {
      absl::MutexLock lock(&mu_);
      ++outstanding_;
    }
    if (service_flag_) {
      if (std::optional<absl::StatusOr<v1::ResolveResponse>> hit = service_->IndexAnswer(req)) {
        Answer(id, std::move(*hit));
        ReadNext();
        return;
      }
    }
    service_->RunResolveWork([this, id, req = std::move(req)] {
      Answer(id, service_->ResolveFor(principal_, service_flag_, req));
    });
    ReadNext();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      --outstanding_;
      if (!ok) {  // the stream broke: nobody reads what is left
        broken_ = true;
        outstanding_ -= static_cast<int>(queue_.size());
        queue_.clear();
      }
    }
    Progress();
  }

  void OnDone() override { delete this; }

 private:
  // Runs on a Resolve worker: who is calling, and may they resolve?
  void Authorize() {
    absl::Status allowed;
    absl::StatusOr<Principal> p = service_->auth_->Authenticate(*ctx_);
    if (!p.ok()) {
      allowed = p.status();
    } else {
      principal_ = *std::move(p);
      allowed = service_->MayResolve(principal_, &service_flag_);
    }
    if (!allowed.ok()) {
      FinishNow(ToGrpcStatus(allowed));
      return;
    }
    ReadNext();
  }

  // False (and the stream ends UNAUTHENTICATED once its pending answers are
  // written) when the caller's token has expired since the stream opened.
  bool CallerStillValid() {
    if (absl::Now() <= principal_.expires_at) return true;
    {
      absl::MutexLock lock(&mu_);
      reads_done_ = true;
      status_ = ToGrpcStatus(absl::UnauthenticatedError(
          "the token expired; open a new stream with a fresh one"));
    }
    Progress();
    return false;
  }

  // Starts the next read unless too many answers are still owed.
  void ReadNext() {
    {
      absl::MutexLock lock(&mu_);
      if (reads_done_ || finished_) return;
      if (outstanding_ >= kMaxOutstanding) {
        read_paused_ = true;
        return;
      }
    }
    StartRead(&in_);
  }

  // Any thread: queues an answer for writing.
  void Answer(uint64_t id, absl::StatusOr<v1::ResolveResponse> out) {
    v1::ResolveStreamResponse r;
    r.set_id(id);
    SetResolveResult(std::move(out), r.mutable_result());
    {
      absl::MutexLock lock(&mu_);
      if (broken_) {
        --outstanding_;
      } else {
        queue_.push_back(std::move(r));
      }
    }
    Progress();
  }

  // After any change: write the next answer, resume reading, or finish.
  void Progress() {
    enum { kNothing, kWrite, kRead, kFinish } next = kNothing;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      if (!writing_ && !queue_.empty() && !broken_) {
        writing_ = true;
        out_ = std::move(queue_.front());
        queue_.pop_front();
        next = kWrite;
      } else if (read_paused_ && !reads_done_ &&
                 (outstanding_ < kMaxOutstanding / 2 || broken_)) {
        // (A broken stream's read fails at once, which ends it.)
        read_paused_ = false;
        next = kRead;
      } else if (reads_done_ && outstanding_ == 0 && !writing_) {
        finished_ = true;
        status = status_;
        next = kFinish;
      }
    }
    if (next == kWrite) StartWrite(&out_);
    if (next == kRead) StartRead(&in_);
    if (next == kFinish) Finish(status);
  }

  void FinishNow(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      finished_ = true;
    }
    Finish(std::move(status));
  }

  DirectoryServiceImpl* const service_;
  grpc::CallbackServerContext* const ctx_;
  // Set by Authorize before the first read, read-only after.
  Principal principal_;
  bool service_flag_ = false;  // relayd (any tenant) rather than a tenant admin
  v1::ResolveStreamRequest in_;    // the read in flight (one at a time)
  v1::ResolveStreamResponse out_;  // the write in flight (one at a time)
  absl::Mutex mu_;
  std::deque<v1::ResolveStreamResponse> queue_ ABSL_GUARDED_BY(mu_);
  int outstanding_ ABSL_GUARDED_BY(mu_) = 0;  // read, not yet written (queued or computing)
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);  // what Finish reports (OK unless the token expired)
};

grpc::ServerBidiReactor<v1::ResolveStreamRequest, v1::ResolveStreamResponse>*
DirectoryServiceImpl::ResolveStream(grpc::CallbackServerContext* ctx) {
  return new ResolveStreamReactor(this, ctx);
}

}  // namespace mailgrid::tenant
