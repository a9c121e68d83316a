#include "services/access/watch_hub.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "grpcpp/support/client_callback.h"
#include "libs/rpc/client.h"
#include "libs/rpc/status.h"

namespace mailgrid::access {

// Shared by the handle (cancel) and the reactor of the current attempt.
struct WatchHub::Stream : std::enable_shared_from_this<WatchHub::Stream> {
  std::vector<std::shared_ptr<Stub>> replicas;
  WorkerPool* pool = nullptr;
  std::shared_ptr<std::atomic<int64_t>> open;
  ms::WatchRequest request;
  std::string authorization;
  Poster post;
  std::function<void(const ms::WatchEvent&)> on_event;
  std::function<void(absl::Status)> on_end;

  std::mutex mu;
  bool cancelled = false;
  grpc::ClientContext* ctx = nullptr;  // of the running attempt
  size_t replica = 0;
  int failures = 0;  // consecutive, for backoff

  void Open();
  void Cancel() {
    std::lock_guard<std::mutex> l(mu);
    cancelled = true;
    if (ctx != nullptr) ctx->TryCancel();
  }
};

namespace {

class Reactor : public grpc::ClientReadReactor<ms::WatchEvent> {
 public:
  explicit Reactor(std::shared_ptr<WatchHub::Stream> s) : s_(std::move(s)) {}

  void Start(WatchHub::Stream* s, const std::shared_ptr<ms::MailboxService::Stub>& stub) {
    ctx_.AddMetadata("authorization", s->authorization);
    stub->async()->Watch(&ctx_, &s->request, this);
    StartRead(&event_);
    StartCall();
  }
  grpc::ClientContext* context() { return &ctx_; }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    {
      std::lock_guard<std::mutex> l(s_->mu);
      if (s_->cancelled) return;
      s_->failures = 0;
      if (!event_.cursor().empty()) s_->request.set_after_cursor(event_.cursor());
    }
    auto on_event = s_->on_event;
    std::weak_ptr<WatchHub::Stream> weak = s_;
    s_->post([weak, on_event, e = event_] {
      auto s = weak.lock();
      if (!s) return;
      {
        std::lock_guard<std::mutex> l(s->mu);
        if (s->cancelled) return;
      }
      on_event(e);
    });
    StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
    std::shared_ptr<WatchHub::Stream> s = std::move(s_);
    s->open->fetch_sub(1);
    bool retry = false;
    {
      std::lock_guard<std::mutex> l(s->mu);
      s->ctx = nullptr;
      if (!s->cancelled) {
        retry = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
                status.error_code() == grpc::StatusCode::OK;  // server ended: reopen
        if (retry) {
          s->replica = (s->replica + 1) % s->replicas.size();
          ++s->failures;
        }
      }
    }
    if (retry) {
      // Back off on a pool thread (rare; a failover), then reopen.
      int failures = s->failures;
      s->pool->Submit([s, failures] {
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(2000, 100 * failures)));
        s->Open();
      });
    } else if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      bool cancelled;
      {
        std::lock_guard<std::mutex> l(s->mu);
        cancelled = s->cancelled;
      }
      if (!cancelled) {
        absl::Status st = rpc::FromGrpc(status);
        auto on_end = s->on_end;
        s->post([on_end, st] { on_end(st); });
      }
    }
    delete this;
  }

 private:
  std::shared_ptr<WatchHub::Stream> s_;
  grpc::ClientContext ctx_;
  ms::WatchEvent event_;
};

class Handle : public WatchHandle {
 public:
  explicit Handle(std::shared_ptr<WatchHub::Stream> s) : s_(std::move(s)) {}
  ~Handle() override { Cancel(); }
  void Cancel() override {
    if (s_) s_->Cancel();
  }

 private:
  std::shared_ptr<WatchHub::Stream> s_;
};

}  // namespace

void WatchHub::Stream::Open() {
  auto* r = new Reactor(shared_from_this());
  std::shared_ptr<Stub> stub;
  {
    std::lock_guard<std::mutex> l(mu);
    if (cancelled) {
      delete r;
      return;
    }
    ctx = r->context();
    stub = replicas[replica];
  }
  open->fetch_add(1);
  r->Start(this, stub);
}

absl::StatusOr<std::unique_ptr<WatchHub>> WatchHub::Create(const mailstore_client::ShardMap& shards,
                                                           WorkerPool* pool,
                                                           const rpc::ClientOptions& tls) {
  std::unique_ptr<WatchHub> hub(new WatchHub());
  hub->pool_ = pool;
  for (const auto& [shard, addresses] : shards.shards) {
    for (const std::string& a : addresses) {
      rpc::ClientOptions o = tls;
      o.target = a;
      absl::StatusOr<std::shared_ptr<grpc::Channel>> ch = rpc::MakeChannel(o);
      if (!ch.ok()) return ch.status();
      hub->stubs_[shard].push_back(ms::MailboxService::NewStub(*ch));
    }
  }
  return hub;
}

int64_t WatchHub::open_streams() const { return open_->load(); }

std::unique_ptr<WatchHandle> WatchHub::Watch(const CallTarget& t, const ms::WatchRequest& r,
                                             Poster post,
                                             std::function<void(const ms::WatchEvent&)> on_event,
                                             std::function<void(absl::Status)> on_end) {
  auto s = std::make_shared<Stream>();
  auto it = stubs_.find(t.shard);
  if (it == stubs_.end() || it->second.empty()) {
    post([on_end] { on_end(absl::UnavailableError("no replicas for the shard")); });
    return std::make_unique<Handle>(nullptr);
  }
  s->replicas = it->second;
  s->pool = pool_;
  s->open = open_;
  s->request = r;
  s->authorization = t.authorization;
  s->post = std::move(post);
  s->on_event = std::move(on_event);
  s->on_end = std::move(on_end);
  s->Open();
  return std::make_unique<Handle>(std::move(s));
}

}  // namespace mailgrid::access
