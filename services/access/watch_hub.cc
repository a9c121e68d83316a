#include "services/access/watch_hub.h"

#include <algorithm>
#include <chrono>

#include "grpcpp/alarm.h"
#include "grpcpp/support/client_callback.h"
#include "libs/rpc/status.h"

namespace mailgrid::access {

namespace {

struct Subscriber {
  std::vector<std::string> folders;  // empty: all
  Poster post;
  std::function<void(const ms::WatchEvent&)> on_event;
  std::function<void(absl::Status)> on_end;
  std::atomic<bool> cancelled{false};
  bool ready = false;  // READY delivered; guarded by the feed's mutex

  bool Wants(const ms::WatchEvent& e) const {
    if (folders.empty() || e.folder_id().empty()) return true;
    return std::find(folders.begin(), folders.end(), e.folder_id()) != folders.end();
  }
  void Deliver(std::shared_ptr<Subscriber> self, std::shared_ptr<const ms::WatchEvent> e) {
    post([self = std::move(self), e = std::move(e)] {
      if (!self->cancelled.load()) self->on_event(*e);
    });
  }
};

using FeedKey = std::pair<uint32_t, std::string>;  // shard, mailbox id

}  // namespace

struct WatchHub::Registry {
  std::mutex mu;  // before any Feed::mu
  std::map<FeedKey, std::shared_ptr<Feed>> feeds;
  std::atomic<int64_t> open{0};
  std::atomic<int64_t> subscribers{0};
};

// One mailstored stream of one mailbox and its subscribers.
struct WatchHub::Feed : std::enable_shared_from_this<WatchHub::Feed> {
  FeedKey key;
  std::vector<std::shared_ptr<Stub>> replicas;
  std::shared_ptr<Registry> registry;

  std::mutex mu;
  std::string authorization;  // of the newest subscriber
  std::string cursor;         // of the last event: where a reopen resumes
  std::map<uint64_t, std::shared_ptr<Subscriber>> subs;
  uint64_t next_id = 1;
  bool ready = false;                  // a READY was received since the feed began
  bool cancelled = false;              // no subscriber left, or ended for good
  grpc::ClientContext* ctx = nullptr;  // of the running attempt
  size_t replica = 0;
  int failures = 0;  // consecutive, for backoff
  std::unique_ptr<grpc::Alarm> backoff;

  void Open();
  void Unsubscribe(uint64_t id);
  void End(const absl::Status& status);
};

namespace {

class Reactor : public grpc::ClientReadReactor<ms::WatchEvent> {
 public:
  explicit Reactor(std::shared_ptr<WatchHub::Feed> f) : f_(std::move(f)) {}

  void Start(const std::shared_ptr<ms::MailboxService::Stub>& stub, const std::string& auth,
             const std::string& mailbox, const std::string& cursor) {
    ctx_.AddMetadata("authorization", auth);
    request_.set_mailbox_id(mailbox);
    request_.set_after_cursor(cursor);
    stub->async()->Watch(&ctx_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  grpc::ClientContext* context() { return &ctx_; }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    std::vector<std::shared_ptr<Subscriber>> to;
    {
      std::lock_guard<std::mutex> l(f_->mu);
      if (f_->cancelled) return;  // TryCancel was called: OnDone follows
      f_->failures = 0;
      if (!event_.cursor().empty()) f_->cursor = event_.cursor();
      if (event_.kind() == ms::WATCH_EVENT_KIND_READY) {
        // A reopened stream resumes at the cursor: nothing was missed, so
        // only subscribers that never saw READY get it.
        f_->ready = true;
        for (auto& [id, s] : f_->subs) {
          if (!s->ready) to.push_back(s);
          s->ready = true;
        }
      } else if (event_.kind() != ms::WATCH_EVENT_KIND_HEARTBEAT) {
        for (auto& [id, s] : f_->subs) {
          if (s->ready && s->Wants(event_)) to.push_back(s);
        }
      }
    }
    if (!to.empty()) {
      auto e = std::make_shared<const ms::WatchEvent>(event_);
      for (auto& s : to) s->Deliver(s, e);
    }
    StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
    std::shared_ptr<WatchHub::Feed> f = std::move(f_);
    // Counted down last, after this reactor and its context are gone, so a
    // caller waiting for open_streams() == 0 (AccessApp::Stop) may then
    // tear gRPC down.
    std::shared_ptr<WatchHub::Registry> registry = f->registry;
    bool retry = false, end = false;
    int failures = 0;
    {
      std::lock_guard<std::mutex> l(f->mu);
      f->ctx = nullptr;
      if (!f->cancelled) {
        retry = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
                status.error_code() == grpc::StatusCode::OK;  // server ended: reopen
        end = !retry;
        if (retry) {
          f->replica = (f->replica + 1) % f->replicas.size();
          failures = ++f->failures;
          // Back off on a gRPC alarm (rare: a failover), then reopen. The
          // alarm holds the feed weakly: a feed nobody watches is gone.
          f->backoff = std::make_unique<grpc::Alarm>();
          std::weak_ptr<WatchHub::Feed> weak = f;
          f->backoff->Set(std::chrono::system_clock::now() +
                              std::chrono::milliseconds(std::min(2000, 100 * failures)),
                          [weak](bool fired) {
                            auto feed = weak.lock();
                            if (fired && feed) feed->Open();
                          });
        }
      }
    }
    if (end) f->End(rpc::FromGrpc(status));
    f.reset();
    delete this;
    registry->open.fetch_sub(1);
  }

 private:
  std::shared_ptr<WatchHub::Feed> f_;
  grpc::ClientContext ctx_;
  ms::WatchRequest request_;
  ms::WatchEvent event_;
};

class Handle : public WatchHandle {
 public:
  Handle(std::shared_ptr<WatchHub::Feed> f, std::shared_ptr<Subscriber> s, uint64_t id)
      : f_(std::move(f)), s_(std::move(s)), id_(id) {}
  ~Handle() override { Cancel(); }
  void Cancel() override {
    if (!f_) return;
    s_->cancelled.store(true);
    f_->Unsubscribe(id_);
    f_.reset();
  }

 private:
  std::shared_ptr<WatchHub::Feed> f_;
  std::shared_ptr<Subscriber> s_;
  uint64_t id_;
};

class NullHandle : public WatchHandle {
 public:
  void Cancel() override {}
};

}  // namespace

void WatchHub::Feed::Open() {
  auto* r = new Reactor(shared_from_this());
  std::shared_ptr<Stub> stub;
  std::string auth, resume;
  {
    std::lock_guard<std::mutex> l(mu);
    if (cancelled) {
      delete r;
      return;
    }
    ctx = r->context();
    stub = replicas[replica];
    auth = authorization;
    resume = cursor;
  }
  registry->open.fetch_add(1);
  r->Start(stub, auth, key.second, resume);
}

void WatchHub::Feed::Unsubscribe(uint64_t id) {
  std::lock_guard<std::mutex> rl(registry->mu);
  std::lock_guard<std::mutex> l(mu);
  if (subs.erase(id) > 0) registry->subscribers.fetch_sub(1);
  if (!subs.empty() || cancelled) return;
  cancelled = true;
  if (ctx != nullptr) ctx->TryCancel();
  auto it = registry->feeds.find(key);
  if (it != registry->feeds.end() && it->second.get() == this) registry->feeds.erase(it);
}

void WatchHub::Feed::End(const absl::Status& status) {
  std::map<uint64_t, std::shared_ptr<Subscriber>> ended;
  {
    std::lock_guard<std::mutex> rl(registry->mu);
    std::lock_guard<std::mutex> l(mu);
    cancelled = true;
    ended.swap(subs);
    registry->subscribers.fetch_sub(static_cast<int64_t>(ended.size()));
    auto it = registry->feeds.find(key);
    if (it != registry->feeds.end() && it->second.get() == this) registry->feeds.erase(it);
  }
  for (auto& [id, s] : ended) {
    s->post([s = s, status] {
      if (!s->cancelled.load()) s->on_end(status);
    });
  }
}

absl::StatusOr<std::unique_ptr<WatchHub>> WatchHub::Create(const mailstore_client::ShardMap& shards,
                                                           WorkerPool* /*pool*/,
                                                           const rpc::ClientOptions& tls) {
  std::unique_ptr<WatchHub> hub(new WatchHub());
  hub->registry_ = std::make_shared<Registry>();
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

WatchHub::~WatchHub() {
  if (!registry_) return;
  // Streams still open are cancelled; their reactors finish on gRPC's
  // threads holding the registry, not the hub.
  std::map<FeedKey, std::shared_ptr<Feed>> feeds;
  {
    std::lock_guard<std::mutex> rl(registry_->mu);
    feeds.swap(registry_->feeds);
    for (auto& [key, f] : feeds) {
      std::lock_guard<std::mutex> l(f->mu);
      f->cancelled = true;
      if (f->ctx != nullptr) f->ctx->TryCancel();
    }
  }
}

int64_t WatchHub::open_streams() const { return registry_->open.load(); }
int64_t WatchHub::subscribers() const { return registry_->subscribers.load(); }

std::unique_ptr<WatchHandle> WatchHub::Watch(const CallTarget& t, const ms::WatchRequest& r,
                                             Poster post,
                                             std::function<void(const ms::WatchEvent&)> on_event,
                                             std::function<void(absl::Status)> on_end) {
  auto it = stubs_.find(t.shard);
  if (it == stubs_.end() || it->second.empty()) {
    post([on_end] { on_end(absl::UnavailableError("no replicas for the shard")); });
    return std::make_unique<NullHandle>();
  }
  auto s = std::make_shared<Subscriber>();
  s->folders.assign(r.folder_ids().begin(), r.folder_ids().end());
  s->post = std::move(post);
  s->on_event = std::move(on_event);
  s->on_end = std::move(on_end);
  FeedKey key(t.shard, r.mailbox_id());
  std::shared_ptr<Feed> f;
  uint64_t id = 0;
  bool open = false;
  {
    std::lock_guard<std::mutex> rl(registry_->mu);
    std::shared_ptr<Feed>& slot = registry_->feeds[key];
    if (!slot) {
      slot = std::make_shared<Feed>();
      slot->key = key;
      slot->replicas = it->second;
      slot->registry = registry_;
      open = true;
    }
    f = slot;
    std::lock_guard<std::mutex> l(f->mu);
    f->authorization = t.authorization;
    id = f->next_id++;
    f->subs.emplace(id, s);
    registry_->subscribers.fetch_add(1);
    if (f->ready) {
      // The stream is established: every later change reaches this
      // subscriber; READY tells it to catch up on what came before.
      s->ready = true;
      ms::WatchEvent ready;
      ready.set_kind(ms::WATCH_EVENT_KIND_READY);
      ready.set_cursor(f->cursor);
      s->Deliver(s, std::make_shared<const ms::WatchEvent>(std::move(ready)));
    }
  }
  if (open) f->Open();
  return std::make_unique<Handle>(std::move(f), std::move(s), id);
}

}  // namespace mailgrid::access
