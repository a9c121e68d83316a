// DirectoryService.ResolveStream: Resolve over one long-lived bidirectional
// stream, so gRPC's per-call cost (~0.04 ms server + ~0.06 ms client CPU for
// an empty unary call on this machine, which capped unary Resolve near
// 20k/s on two cores before any work) is paid once per stream instead of
// once per address.
//
// One reactor per stream (gRPC's callback API: no thread per stream). The
// caller is authorized once, on a Resolve worker (an onboarding token reads
// the store), exactly as unary Resolve; every request then re-checks only
// the token's expiry, by the rule unary calls use (Principal::ValidAt: the
// verifier's leeway included). A request is answered like unary Resolve: a relayd
// (service) request found in the index inline on the callback thread that
// read it, anything else on the Resolve workers. Answers are written as
// they are ready (the id tells the caller which is which), one write at a
// time from a queue. At most kMaxOutstanding requests of a stream are
// unanswered or unwritten at once; beyond that the stream stops reading
// (HTTP/2 flow control then holds the caller back).
//
// Batches (see the proto): a caller that opened with kBatchesHeader gets
// every answer queued while a write was in flight in the next message (up
// to kMaxBatch), and every caller is told, by the same key in the initial
// metadata, that a request message may carry several requests. Under load
// that is one read and one write per batch instead of per address: each
// message costs gRPC ~10 us of CPU and a wake-up on both sides. Requests
// queue only when they share a stream, so relayd sends all of its on one
// (relay::ResolveStreamsOptions; session 24: 2.5 per message at 8 in
// flight, a third of the server CPU per request of one stream per replica).
//
// Lifetime: Finish is called once, when the caller half-closed (or the
// stream broke, or the token expired) and no answer is pending or being
// written; gRPC then calls OnDone, which deletes the reactor. Start* calls
// are made outside mu_ (gRPC may run a reaction on another thread at once).
#include <deque>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/tenant/directory_service.h"
#include "services/tenant/errors.h"

namespace mailgrid::tenant {

namespace {
constexpr int kMaxOutstanding = 1024;
constexpr int kMaxBatch = 64;  // answers per response message
// Metadata key of the batch negotiation (protos/.../directory.proto).
constexpr char kBatchesHeader[] = "mailgrid-resolve-batches";

bool CallerTakesBatches(const grpc::CallbackServerContext& ctx) {
  auto it = ctx.client_metadata().find(kBatchesHeader);
  return it != ctx.client_metadata().end() && it->second == "1";
}
}  // namespace

class DirectoryServiceImpl::ResolveStreamReactor final
    : public grpc::ServerBidiReactor<v1::ResolveStreamRequest, v1::ResolveStreamResponse> {
 public:
  ResolveStreamReactor(DirectoryServiceImpl* service, grpc::CallbackServerContext* ctx)
      : service_(service), ctx_(ctx), batch_answers_(CallerTakesBatches(*ctx)) {
    ctx_->AddInitialMetadata(kBatchesHeader, "1");  // we take batched requests
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
    if (in_.more_size() >= kMaxOutstanding) {
      StopReading(ToGrpcStatus(InvalidField(
          "more", "TOO_MANY",
          absl::StrCat(1 + in_.more_size(), " requests in one message; at most ",
                       kMaxOutstanding))));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      outstanding_ += 1 + in_.more_size();
    }
    // Index hits are answered here and queued together (one Progress);
    // the rest go to the workers.
    std::vector<v1::ResolveStreamResponse> ready;
    Take(in_.id(), in_.mutable_request(), &ready);
    for (v1::ResolveStreamRequest& r : *in_.mutable_more()) Take(r.id(), r.mutable_request(), &ready);
    if (!ready.empty()) Queue(std::move(ready));
    ReadNext();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      outstanding_ -= writing_;
      writing_ = 0;
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
  // written) when a unary call with the caller's token would now be refused
  // as expired.
  bool CallerStillValid() {
    if (principal_.ValidAt(absl::Now())) return true;
    StopReading(ToGrpcStatus(absl::UnauthenticatedError(
        "the token expired; open a new stream with a fresh one")));
    return false;
  }

  // Reads no more; the stream ends with `status` once the answers owed are
  // written.
  void StopReading(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      reads_done_ = true;
      status_ = std::move(status);
    }
    Progress();
  }

  // One request: its answer appended to `ready` when the index has it,
  // else computed on a Resolve worker (and queued from there).
  void Take(uint64_t id, v1::ResolveRequest* req, std::vector<v1::ResolveStreamResponse>* ready) {
    if (service_flag_) {
      if (std::optional<absl::StatusOr<v1::ResolveResponse>> hit = service_->IndexAnswer(*req)) {
        ready->push_back(AnswerMessage(id, std::move(*hit)));
        return;
      }
    }
    service_->RunResolveWork([this, id, request = std::move(*req)] {
      std::vector<v1::ResolveStreamResponse> one;
      one.push_back(AnswerMessage(id, service_->ResolveFor(principal_, service_flag_, request)));
      Queue(std::move(one));
    });
  }

  static v1::ResolveStreamResponse AnswerMessage(uint64_t id,
                                                 absl::StatusOr<v1::ResolveResponse> out) {
    v1::ResolveStreamResponse r;
    r.set_id(id);
    SetResolveResult(std::move(out), r.mutable_result());
    return r;
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

  // Any thread: queues answers for writing.
  void Queue(std::vector<v1::ResolveStreamResponse> answers) {
    {
      absl::MutexLock lock(&mu_);
      if (broken_) {
        outstanding_ -= static_cast<int>(answers.size());
      } else {
        for (auto& a : answers) queue_.push_back(std::move(a));
      }
    }
    Progress();
  }

  // Under mu_: moves the next message's answers from the queue to out_ (the
  // first answer, then up to kMaxBatch - 1 more for a batching caller).
  void TakeNextWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    out_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = 1;
    while (batch_answers_ && !queue_.empty() && writing_ < kMaxBatch) {
      *out_.add_more() = std::move(queue_.front());
      queue_.pop_front();
      ++writing_;
    }
  }

  // After any change: write the next answer, resume reading, or finish.
  void Progress() {
    enum { kNothing, kWrite, kRead, kFinish } next = kNothing;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      if (writing_ == 0 && !queue_.empty() && !broken_) {
        TakeNextWrite();
        next = kWrite;
      } else if (read_paused_ && !reads_done_ &&
                 (outstanding_ < kMaxOutstanding / 2 || broken_)) {
        // (A broken stream's read fails at once, which ends it.)
        read_paused_ = false;
        next = kRead;
      } else if (reads_done_ && outstanding_ == 0 && writing_ == 0) {
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
  const bool batch_answers_;   // the caller reads `more` in our messages
  v1::ResolveStreamRequest in_;    // the read in flight (one at a time)
  v1::ResolveStreamResponse out_;  // the write in flight (one at a time)
  absl::Mutex mu_;
  std::deque<v1::ResolveStreamResponse> queue_ ABSL_GUARDED_BY(mu_);
  int outstanding_ ABSL_GUARDED_BY(mu_) = 0;  // read, not yet written (queued or computing)
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  int writing_ ABSL_GUARDED_BY(mu_) = 0;  // answers in the write in flight
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);  // what Finish reports (OK unless the token expired)
};

grpc::ServerBidiReactor<v1::ResolveStreamRequest, v1::ResolveStreamResponse>*
DirectoryServiceImpl::ResolveStream(grpc::CallbackServerContext* ctx) {
  return new ResolveStreamReactor(this, ctx);
}

}  // namespace mailgrid::tenant
