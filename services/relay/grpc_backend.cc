#include "services/relay/grpc_backend.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <random>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/rpc/client.h"
#include "libs/rpc/errors.h"
#include "libs/rpc/status.h"

namespace mailgrid::relay {

// ---- ResolveStreams ----------------------------------------------------------

// One DirectoryService.ResolveStream call. Requests wait in `queue_` for
// the one write gRPC allows at a time; each caller's `done` waits in
// `waiting_` under the request's id until its answer is read. A read is
// always in flight, so the call lives until tenantd ends it; a hold keeps
// it alive while another thread may still start a write (released once
// the stream takes no more requests and no write is in flight).
//
// Batches (directory.proto's ResolveStream): the stream asks for batched
// answers when it opens, and once tenantd's initial metadata says it takes
// batched requests, every request queued while a write was in flight goes
// in the next message (up to kMaxBatch): under load one write and one
// read per batch instead of per address.
//
// Its phases, in order (Phase): taking requests → (Retire) draining the
// queue → half-closed (WritesDone) → released; or, when a write or read
// fails, from taking or draining straight to ending → released.
class ResolveStreams::Stream final
    : public grpc::ClientBidiReactor<tenant::v1::ResolveStreamRequest,
                                     tenant::v1::ResolveStreamResponse> {
 public:
  // `batches`: ask for batched answers and send batched requests once
  // tenantd takes them.
  Stream(std::string header, bool batches, std::atomic<int64_t>* messages)
      : header_(std::move(header)), batches_(batches), messages_(messages) {}

  // Opens the call; `self` keeps this object alive until OnDone.
  void Open(const std::shared_ptr<Stream>& self, std::shared_ptr<grpc::Channel> channel) {
    self_ = self;
    if (!header_.empty()) ctx_.AddMetadata("authorization", header_);
    if (batches_) ctx_.AddMetadata(kBatchesHeader, "1");  // we read `more` in answers
    tenant::v1::DirectoryService::NewStub(std::move(channel))->async()->ResolveStream(&ctx_, this);
    AddHold();
    StartRead(&in_);
    StartCall();
  }

  // Queues one request; false when the stream takes no more (the caller
  // then uses another path and `done` is not kept).
  bool Send(const tenant::v1::ResolveRequest& request, Done& done) {
    tenant::v1::ResolveStreamRequest r;
    r.set_id(next_id_.fetch_add(1) + 1);
    *r.mutable_request() = request;
    bool write = false;
    {
      absl::MutexLock lock(&mu_);
      if (phase_ != Phase::kTaking) return false;
      waiting_.emplace(r.id(), std::move(done));
      queue_.push_back(std::move(r));
      write = TakeNextWrite();
    }
    if (write) StartWrite(&out_);
    return true;
  }

  // No more requests: those queued are still written, their answers still
  // read, then the stream is half-closed and tenantd ends it.
  void Retire() { AfterWrite(/*retire=*/true); }
  void Cancel() { ctx_.TryCancel(); }

  bool taking() {
    absl::MutexLock lock(&mu_);
    return phase_ == Phase::kTaking;
  }
  const std::string& header() const { return header_; }
  // Set once OnDone ran: how the call ended.
  bool ended() { return ended_.HasBeenNotified(); }
  void WaitEnded() { ended_.WaitForNotification(); }
  grpc::Status status() { return status_; }  // after ended()

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      // Not ok: the call is ending; the read fails next and OnDone says why.
      if (!ok) EndWrites();
    }
    AfterWrite(/*retire=*/false);
  }
  void OnWritesDoneDone(bool) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
    }
    AfterWrite(false);
  }

  void OnReadInitialMetadataDone(bool ok) override {
    if (!ok || !batches_) return;
    const auto& md = ctx_.GetServerInitialMetadata();
    auto it = md.find(kBatchesHeader);
    if (it == md.end() || it->second != "1") return;  // an older tenantd
    absl::MutexLock lock(&mu_);
    batch_requests_ = true;
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // tenantd ended the call (or it broke): OnDone follows
      {
        absl::MutexLock lock(&mu_);
        EndWrites();
      }
      AfterWrite(false);
      return;
    }
    // The message's answers with their callers (an unknown id, never
    // sent, is dropped); the callers run after the next read has started.
    std::vector<std::pair<Done, tenant::v1::ResolveResult>> answered;
    answered.reserve(1 + in_.more_size());
    {
      absl::MutexLock lock(&mu_);
      TakeWaiting(in_, &answered);
      for (tenant::v1::ResolveStreamResponse& r : *in_.mutable_more()) TakeWaiting(r, &answered);
    }
    StartRead(&in_);
    for (auto& [done, result] : answered) done(std::move(result));
  }

  void OnDone(const grpc::Status& s) override {
    status_ = s;
    absl::flat_hash_map<uint64_t, Done> waiting;
    {
      absl::MutexLock lock(&mu_);
      waiting.swap(waiting_);
    }
    const absl::Status failed = absl::UnavailableError(
        absl::StrCat("ResolveStream ended: ", s.ok() ? "OK" : rpc::FromGrpc(s).ToString()));
    for (auto& [id, done] : waiting) done(failed);
    std::shared_ptr<Stream> self = std::move(self_);
    ended_.Notify();
  }

 private:
  static constexpr int kMaxBatch = 64;  // requests per message
  // Metadata key of the batch negotiation (directory.proto's ResolveStream).
  static constexpr char kBatchesHeader[] = "mailgrid-resolve-batches";

  // Under mu_: the caller waiting for `r`'s answer, with the answer.
  void TakeWaiting(tenant::v1::ResolveStreamResponse& r,
                   std::vector<std::pair<Done, tenant::v1::ResolveResult>>* answered)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = waiting_.find(r.id());
    if (it == waiting_.end()) return;
    answered->emplace_back(std::move(it->second), std::move(*r.mutable_result()));
    waiting_.erase(it);
  }

  enum class Phase {
    kTaking,      // takes requests
    kDraining,    // retired: writes what is queued, then half-closes
    kHalfClosed,  // WritesDone started; answers are still read
    kEnding,      // a write or the read failed: nothing more is written
    kReleased,    // the hold is removed: this side starts no more operations
  };

  // Under mu_: moves the next message's requests to out_ (the first, then
  // up to kMaxBatch - 1 more once tenantd takes batches) when requests may
  // still be written and no write is in flight; true when the caller must
  // StartWrite(&out_).
  bool TakeNextWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (phase_ != Phase::kTaking && phase_ != Phase::kDraining) return false;
    if (writing_ || queue_.empty()) return false;
    out_ = std::move(queue_.front());
    queue_.pop_front();
    while (batch_requests_ && !queue_.empty() && out_.more_size() + 1 < kMaxBatch) {
      *out_.add_more() = std::move(queue_.front());
      queue_.pop_front();
    }
    writing_ = true;
    messages_->fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  // Under mu_: the call is ending; queued requests are never written (their
  // callers learn it in OnDone).
  void EndWrites() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (phase_ == Phase::kTaking || phase_ == Phase::kDraining) phase_ = Phase::kEnding;
    queue_.clear();
  }

  // After a write (or a retirement, or the end of reads): the next write,
  // the half-close of a retired stream, or the release of the hold.
  void AfterWrite(bool retire) {
    enum { kNothing, kWrite, kWritesDone, kRelease } next = kNothing;
    {
      absl::MutexLock lock(&mu_);
      if (retire && phase_ == Phase::kTaking) phase_ = Phase::kDraining;
      if (TakeNextWrite()) {
        next = kWrite;
      } else if (writing_ || phase_ == Phase::kTaking || phase_ == Phase::kReleased) {
        // a write in flight, or nothing to do
      } else if (phase_ == Phase::kDraining) {
        phase_ = Phase::kHalfClosed;
        writing_ = true;  // WritesDone is this side's last write
        next = kWritesDone;
      } else {  // half-closed or ending, no write in flight
        phase_ = Phase::kReleased;
        next = kRelease;
      }
    }
    if (next == kWrite) StartWrite(&out_);
    if (next == kWritesDone) StartWritesDone();
    if (next == kRelease) RemoveHold();
  }

  const std::string header_;
  const bool batches_;
  std::atomic<int64_t>* const messages_;  // ResolveStreams::messages_
  grpc::ClientContext ctx_;
  tenant::v1::ResolveStreamResponse in_;  // the read in flight
  tenant::v1::ResolveStreamRequest out_;  // the write in flight
  std::shared_ptr<Stream> self_;
  grpc::Status status_;
  absl::Notification ended_;
  absl::Mutex mu_;
  std::atomic<uint64_t> next_id_{0};
  std::deque<tenant::v1::ResolveStreamRequest> queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Done> waiting_ ABSL_GUARDED_BY(mu_);
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kTaking;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;  // a write (or WritesDone) in flight
  bool batch_requests_ ABSL_GUARDED_BY(mu_) = false;  // tenantd takes `more`
};

ResolveStreams::ResolveStreams(ChannelFn channel, AuthFn authorization, size_t replicas,
                               const ResolveStreamsOptions& options)
    : channel_(std::move(channel)), authorization_(std::move(authorization)),
      replicas_(std::max<size_t>(1, replicas)), batches_(options.batches) {
  slots_.resize(std::max<size_t>(1, options.streams));
  for (size_t i = 0; i < slots_.size(); ++i)
    slots_[i].replica = (options.first_replica + i) % replicas_;
}

ResolveStreams::~ResolveStreams() {
  std::vector<std::shared_ptr<Stream>> live;
  {
    absl::MutexLock lock(&mu_);
    live.swap(live_);
    slots_.clear();
  }
  for (auto& s : live) s->Cancel();
  for (auto& s : live) s->WaitEnded();
}

std::shared_ptr<ResolveStreams::Stream> ResolveStreams::StreamFor(
    Slot& slot, const std::string& header, std::shared_ptr<Stream>* retired) {
  const absl::Time now = absl::Now();
  if (slot.stream != nullptr) {
    if (slot.stream->taking()) {
      if (slot.stream->header() == header) return slot.stream;
      *retired = slot.stream;  // a refreshed token: the old stream drains and ends
    } else if (!slot.stream->ended()) {
      return nullptr;  // ending: once it has ended, its status says what next
    } else if (const grpc::Status st = slot.stream->status(); !st.ok()) {
      // It failed: pause, then the next replica.
      slot.reopen_at = now + (st.error_code() == grpc::StatusCode::UNIMPLEMENTED
                                  ? kReopenUnimplementedAfter
                                  : kReopenAfter);
      slot.replica = (slot.replica + 1) % replicas_;
    }
    slot.stream = nullptr;
  }
  // Forget streams that ended; keep the others for the destructor.
  live_.erase(std::remove_if(live_.begin(), live_.end(),
                             [](const std::shared_ptr<Stream>& s) { return s->ended(); }),
              live_.end());
  if (now < slot.reopen_at) return nullptr;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> ch = channel_(slot.replica);
  if (!ch.ok()) {
    slot.reopen_at = now + kReopenAfter;
    return nullptr;
  }
  slot.stream = std::make_shared<Stream>(header, batches_, &messages_);
  slot.stream->Open(slot.stream, *std::move(ch));
  live_.push_back(slot.stream);
  opened_.fetch_add(1);
  return slot.stream;
}

void ResolveStreams::Start(const tenant::v1::ResolveRequest& request, Done done) {
  absl::StatusOr<std::string> header =
      authorization_ ? authorization_() : absl::StatusOr<std::string>(std::string());
  if (!header.ok()) {
    done(header.status());
    return;
  }
  std::shared_ptr<Stream> stream, retired;
  {
    absl::MutexLock lock(&mu_);
    if (!slots_.empty())
      stream = StreamFor(slots_[next_.fetch_add(1) % slots_.size()], *header, &retired);
  }
  if (retired != nullptr) retired->Retire();  // outside mu_: gRPC calls
  if (stream != nullptr && stream->Send(request, done)) {
    sent_.fetch_add(1);
    return;
  }
  done(absl::UnavailableError("no ResolveStream to tenantd now"));
}

absl::StatusOr<tenant::v1::ResolveResult> ResolveStreams::Resolve(
    const tenant::v1::ResolveRequest& request, absl::Time deadline) {
  // Shared with the callback, which may run after a timed-out wait returned.
  struct Wait {
    absl::Notification done;
    absl::StatusOr<tenant::v1::ResolveResult> result;
  };
  auto wait = std::make_shared<Wait>();
  Start(request, [wait](absl::StatusOr<tenant::v1::ResolveResult> r) {
    wait->result = std::move(r);
    wait->done.Notify();
  });
  if (!wait->done.WaitForNotificationWithDeadline(deadline)) {
    return absl::DeadlineExceededError("tenantd did not answer Resolve in time");
  }
  return std::move(wait->result);
}

namespace {
// One ResolveResult as Resolve's own answer (its error with its details).
absl::StatusOr<tenant::v1::ResolveResponse> AnswerOf(tenant::v1::ResolveResult r) {
  if (r.status().code() == 0) return std::move(*r.mutable_response());
  absl::Status st(static_cast<absl::StatusCode>(r.status().code()), r.status().message());
  return rpc::WithDetails(st, r.status());
}
}  // namespace

// ---- GrpcBackend -------------------------------------------------------------

absl::StatusOr<std::unique_ptr<GrpcBackend>> GrpcBackend::Create(const Options& options,
                                                                 const std::string& tls_cert,
                                                                 const std::string& tls_key) {
  std::unique_ptr<GrpcBackend> b(new GrpcBackend());
  b->options_ = options;
  // Peers speak TLS only in the chart's mTLS mode, where this daemon has its
  // own certificate too; the local launcher exports MAILGRID_TLS_CA (the CA
  // of the public listener certificate) to everyone while gRPC stays plain.
  if (tls_cert.empty()) b->options_.tls_ca.clear();
  b->tls_cert_ = tls_cert;
  b->tls_key_ = tls_key;
  if (!options.token_signing_key.empty()) {
    ASSIGN_OR_RETURN(b->tokens_,
                     auth::ServiceTokenSource::FromPemFile(options.token_signing_key, "relayd"));
  } else {
    log::Warn("no --token-signing-key: calls to peer services carry no service token");
  }
  auto init = [](Group& g, std::string service, const std::vector<std::string>& addrs,
                 const char* flag) {
    g.service = std::move(service);
    g.addresses = addrs;
    g.channels.resize(addrs.size());
    if (addrs.empty()) log::Warn("peer not configured: its calls fail UNAVAILABLE", {{"flag", flag}});
  };
  {
    absl::MutexLock lock(&b->mu_);
    init(b->tenantd_, "mailgrid.tenant.v1.DirectoryService", options.tenantd, "--tenantd");
    init(b->identityd_, "mailgrid.identity.v1.AuthService", options.identityd, "--identityd");
    b->domains_.service = "mailgrid.tenant.v1.DomainService";
    b->domains_.addresses = options.tenantd;
    b->domains_.channels.resize(options.tenantd.size());
  }
  if (options.mailstored.empty()) {
    log::Warn("peer not configured: deliveries fail UNAVAILABLE (451)", {{"flag", "--mailstored"}});
  } else {
    mailstore_client::ClientOptions mo;
    ASSIGN_OR_RETURN(mo.shards, mailstore_client::ShardMap::Parse(options.mailstored));
    mo.service_tokens = b->tokens_;
    mo.timeout = options.rpc_timeout;
    mo.tls_ca_file = b->options_.tls_ca;
    if (!b->options_.tls_ca.empty()) {
      mo.tls_cert_file = tls_cert;
      mo.tls_key_file = tls_key;
    }
    ASSIGN_OR_RETURN(b->mailstore_, mailstore_client::MailstoreClient::Create(std::move(mo)));
  }
  b->StartResolveStreams();
  if (!options.redis.empty()) {
    ASSIGN_OR_RETURN(redis::Options ro, redis::Options::FromAddress(options.redis, options.redis_tls));
    ro.pool_size = 8;
    ro.command_timeout = absl::Seconds(1);
    b->redis_ = std::make_unique<redis::Client>(ro);
  } else {
    log::Warn("no --redis: submission rate limits are off");
  }
  return b;
}

void GrpcBackend::StartResolveStreams() {
  size_t replicas = 0;
  {
    absl::MutexLock lock(&mu_);
    replicas = tenantd_.addresses.size();
  }
  if (replicas == 0) return;
  auto channel = [this](size_t i) -> absl::StatusOr<std::shared_ptr<grpc::Channel>> {
    absl::MutexLock lock(&mu_);
    return ChannelFor(tenantd_, i);
  };
  auto authorization = [this]() -> absl::StatusOr<std::string> {
    if (!tokens_) return std::string();
    return tokens_->AuthorizationHeader();
  };
  // One stream (ResolveStreamsOptions says why) on a replica picked at
  // random: several relayds spread over the group; a failed stream moves
  // to the next replica.
  ResolveStreamsOptions shape;
  shape.first_replica = std::random_device{}() % replicas;
  resolve_streams_ = std::make_unique<ResolveStreams>(channel, authorization, replicas, shape);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> GrpcBackend::ChannelFor(Group& g, size_t i) {
  if (g.channels[i]) return g.channels[i];
  rpc::ClientOptions co;
  co.target = g.addresses[i];
  co.tls_ca_file = options_.tls_ca;
  if (!options_.tls_ca.empty()) {
    co.tls_cert_file = tls_cert_;
    co.tls_key_file = tls_key_;
  }
  co.services = {g.service};
  // tenantd's calls (every RCPT's Resolve first) go through CallGroup,
  // which already retries UNAVAILABLE on the next replica within the
  // deadline, so gRPC's own transparent retry of a call that never reached
  // tenantd adds nothing but ~15 us of client CPU per call.
  if (&g == &tenantd_ || &g == &domains_) co.transparent_retries = false;
  ASSIGN_OR_RETURN(g.channels[i], rpc::MakeChannel(co));
  return g.channels[i];
}

absl::Status GrpcBackend::Authorize(grpc::ClientContext* ctx) {
  if (!tokens_) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string header, tokens_->AuthorizationHeader());
  ctx->AddMetadata("authorization", header);
  return absl::OkStatus();
}

template <typename Fn>
absl::Status GrpcBackend::CallGroup(Group& g, Fn call) {
  std::vector<std::string> addresses;
  size_t start;
  {
    absl::MutexLock lock(&mu_);
    addresses = g.addresses;
    start = g.preferred;
  }
  if (addresses.empty()) {
    return absl::UnavailableError(absl::StrCat(g.service, ": peer not configured"));
  }
  absl::Time deadline = absl::Now() + options_.rpc_timeout;
  absl::Status last;
  size_t idx = start % addresses.size();
  // Each replica at most twice (a redirect may point back to one tried).
  for (size_t attempt = 0; attempt < 2 * addresses.size() + 1; ++attempt) {
    std::shared_ptr<grpc::Channel> channel;
    {
      absl::MutexLock lock(&mu_);
      auto c = ChannelFor(g, idx);
      if (!c.ok()) return c.status();
      channel = *c;
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(deadline));
    RETURN_IF_ERROR(Authorize(&ctx));
    grpc::Status st = call(channel, &ctx);
    if (st.ok()) {
      absl::MutexLock lock(&mu_);
      g.preferred = idx;
      return absl::OkStatus();
    }
    last = rpc::FromGrpc(st);
    if (st.error_code() != grpc::StatusCode::UNAVAILABLE || absl::Now() >= deadline) return last;
    // Follow a leader hint when one is given, else the next replica.
    size_t next = (idx + 1) % addresses.size();
    const auto& trailers = ctx.GetServerTrailingMetadata();
    auto it = trailers.find("mailgrid-leader");
    if (it != trailers.end()) {
      std::string leader(it->second.data(), it->second.size());
      for (size_t i = 0; i < addresses.size(); ++i) {
        if (addresses[i] == leader) next = i;
      }
    }
    if (next == idx) absl::SleepFor(absl::Milliseconds(100));
    idx = next;
  }
  return last;
}

absl::StatusOr<tenant::v1::ResolveResponse> GrpcBackend::Resolve(
    const tenant::v1::ResolveRequest& request) {
  if (resolve_streams_ != nullptr) {
    absl::StatusOr<tenant::v1::ResolveResult> r =
        resolve_streams_->Resolve(request, absl::Now() + options_.rpc_timeout);
    if (r.ok()) return AnswerOf(*std::move(r));
    if (absl::IsDeadlineExceeded(r.status())) return r.status();
    // No stream now (tenantd restarting, an older tenantd): one unary call.
  }
  return UnaryResolve(request);
}

absl::StatusOr<tenant::v1::ResolveResponse> GrpcBackend::UnaryResolve(
    const tenant::v1::ResolveRequest& request) {
  tenant::v1::ResolveResponse resp;
  RETURN_IF_ERROR(CallGroup(tenantd_, [&](const std::shared_ptr<grpc::Channel>& ch,
                                          grpc::ClientContext* ctx) {
    resp.Clear();
    return tenant::v1::DirectoryService::NewStub(ch)->Resolve(ctx, request, &resp);
  }));
  return resp;
}

absl::StatusOr<tenant::v1::ResolveManyResponse> GrpcBackend::ResolveMany(
    const tenant::v1::ResolveManyRequest& request) {
  tenant::v1::ResolveManyResponse resp;
  RETURN_IF_ERROR(CallGroup(tenantd_, [&](const std::shared_ptr<grpc::Channel>& ch,
                                          grpc::ClientContext* ctx) {
    resp.Clear();
    return tenant::v1::DirectoryService::NewStub(ch)->ResolveMany(ctx, request, &resp);
  }));
  return resp;
}

absl::StatusOr<bool> GrpcBackend::CanSendAs(const std::string& user_id,
                                            const std::string& address) {
  tenant::v1::CanSendAsRequest req;
  req.set_user_id(user_id);
  req.set_address(address);
  tenant::v1::CanSendAsResponse resp;
  RETURN_IF_ERROR(CallGroup(tenantd_, [&](const std::shared_ptr<grpc::Channel>& ch,
                                          grpc::ClientContext* ctx) {
    return tenant::v1::DirectoryService::NewStub(ch)->CanSendAs(ctx, req, &resp);
  }));
  return resp.allowed();
}

absl::StatusOr<identity::v1::CheckSaslResponse> GrpcBackend::CheckSasl(
    const identity::v1::CheckSaslRequest& request) {
  identity::v1::CheckSaslResponse resp;
  RETURN_IF_ERROR(CallGroup(identityd_, [&](const std::shared_ptr<grpc::Channel>& ch,
                                            grpc::ClientContext* ctx) {
    resp.Clear();
    return identity::v1::AuthService::NewStub(ch)->CheckSasl(ctx, request, &resp);
  }));
  return resp;
}

absl::StatusOr<mailstore::v1::DeliverBatchResponse> GrpcBackend::Deliver(
    uint32_t shard, const mailstore::v1::DeliverBatchRequest& request) {
  if (!mailstore_) return absl::UnavailableError("mailstored not configured");
  // DeliverBatch is idempotent by delivery_id, so the client's retries
  // across a leader change cannot store a message twice.
  return mailstore_->DeliverBatch(shard, request);
}

absl::StatusOr<tenant::v1::GetDkimSigningKeyResponse> GrpcBackend::GetDkimSigningKey(
    const std::string& domain) {
  tenant::v1::GetDkimSigningKeyRequest req;
  req.set_domain(domain);
  tenant::v1::GetDkimSigningKeyResponse resp;
  RETURN_IF_ERROR(CallGroup(domains_, [&](const std::shared_ptr<grpc::Channel>& ch,
                                          grpc::ClientContext* ctx) {
    resp.Clear();
    return tenant::v1::DomainService::NewStub(ch)->GetDkimSigningKey(ctx, req, &resp);
  }));
  return resp;
}

absl::StatusOr<tenant::v1::SieveScript> GrpcBackend::GetSieveScript(const std::string& user_id) {
  tenant::v1::GetSieveScriptRequest req;
  req.set_user_id(user_id);
  tenant::v1::SieveScript resp;
  RETURN_IF_ERROR(CallGroup(tenantd_, [&](const std::shared_ptr<grpc::Channel>& ch,
                                          grpc::ClientContext* ctx) {
    resp.Clear();
    return tenant::v1::DirectoryService::NewStub(ch)->GetSieveScript(ctx, req, &resp);
  }));
  return resp;
}

// The tenant's mail policies and the directory reads their conditions need.
absl::StatusOr<tenant::v1::AuditPolicy> GrpcBackend::GetAuditPolicy(const std::string& tenant_id) {
  tenant::v1::GetAuditPolicyRequest req;
  req.set_tenant_id(tenant_id);
  tenant::v1::AuditPolicy resp;
  RETURN_IF_ERROR(CallGroup(tenantd_, [&](const std::shared_ptr<grpc::Channel>& ch,
                                          grpc::ClientContext* ctx) {
    resp.Clear();
    return tenant::v1::DirectoryService::NewStub(ch)->GetAuditPolicy(ctx, req, &resp);
  }));
  return resp;
}

absl::StatusOr<tenant::v1::MonitoringPolicy> GrpcBackend::GetMonitoringPolicy(
    const std::string& tenant_id) {
  tenant::v1::GetMonitoringPolicyRequest req;
  req.set_tenant_id(tenant_id);
  tenant::v1::MonitoringPolicy resp;
  RETURN_IF_ERROR(CallGroup(tenantd_, [&](const std::shared_ptr<grpc::Channel>& ch,
                                          grpc::ClientContext* ctx) {
    resp.Clear();
    return tenant::v1::DirectoryService::NewStub(ch)->GetMonitoringPolicy(ctx, req, &resp);
  }));
  return resp;
}

absl::StatusOr<tenant::v1::User> GrpcBackend::GetUser(const std::string& user_id) {
  tenant::v1::GetUserRequest req;
  req.set_user_id(user_id);
  tenant::v1::User resp;
  RETURN_IF_ERROR(CallGroup(tenantd_, [&](const std::shared_ptr<grpc::Channel>& ch,
                                          grpc::ClientContext* ctx) {
    resp.Clear();
    return tenant::v1::DirectoryService::NewStub(ch)->GetUser(ctx, req, &resp);
  }));
  return resp;
}

absl::StatusOr<tenant::v1::Department> GrpcBackend::GetDepartment(
    const std::string& department_id) {
  tenant::v1::GetDepartmentRequest req;
  req.set_department_id(department_id);
  tenant::v1::Department resp;
  RETURN_IF_ERROR(CallGroup(tenantd_, [&](const std::shared_ptr<grpc::Channel>& ch,
                                          grpc::ClientContext* ctx) {
    resp.Clear();
    return tenant::v1::DirectoryService::NewStub(ch)->GetDepartment(ctx, req, &resp);
  }));
  return resp;
}

absl::Status GrpcBackend::AppendAdminAuditLog(const tenant::v1::AdminAuditEntry& entry) {
  tenant::v1::AppendAdminAuditLogRequest req;
  *req.mutable_entry() = entry;
  tenant::v1::AdminAuditEntry resp;
  return CallGroup(tenantd_, [&](const std::shared_ptr<grpc::Channel>& ch,
                                 grpc::ClientContext* ctx) {
    resp.Clear();
    return tenant::v1::DirectoryService::NewStub(ch)->AppendAdminAuditLog(ctx, req, &resp);
  });
}

absl::StatusOr<bool> GrpcBackend::SetOnce(const std::string& key, absl::Duration ttl) {
  if (!redis_) return absl::UnavailableError("no --redis");
  redis::SetOptions so;
  so.ttl = ttl;
  so.if_absent = true;
  return redis_->Set(key, "1", so);
}

void GrpcBackend::Forget(const std::string& key) {
  if (redis_) (void)redis_->Del(key);
}

absl::Status GrpcBackend::CountSubmission(const std::string& tenant_id,
                                          const std::string& user_id) {
  return CountSubmissionRoom(tenant_id, user_id).status();
}

namespace {
// Both hourly counters in one round trip: INCR each key and give a new key
// its expiry, atomically (a counter can never be left without one).
constexpr std::string_view kCountScript = R"lua(
local out = {}
for i, k in ipairs(KEYS) do
  out[i] = redis.call('INCR', k)
  if redis.call('PTTL', k) < 0 then redis.call('PEXPIRE', k, ARGV[1]) end
end
return out
)lua";
}  // namespace

absl::StatusOr<int64_t> GrpcBackend::CountSubmissionRoom(const std::string& tenant_id,
                                                         const std::string& user_id) {
  int64_t room = std::numeric_limits<int64_t>::max();
  if (!redis_) return room;
  int64_t hour = absl::ToUnixSeconds(absl::Now()) / 3600;
  struct Limit {
    std::string key;
    int max;
    const char* what;
  };
  std::vector<Limit> limits;
  if (options_.rate_user_per_hour > 0)
    limits.push_back({absl::StrCat("relay:rate:u:", user_id, ":", hour),
                      options_.rate_user_per_hour, "user"});
  if (options_.rate_tenant_per_hour > 0)
    limits.push_back({absl::StrCat("relay:rate:t:", tenant_id, ":", hour),
                      options_.rate_tenant_per_hour, "tenant"});
  if (limits.empty()) return room;
  std::vector<std::string> keys;
  for (const Limit& l : limits) keys.push_back(l.key);
  absl::StatusOr<redis::Reply> r = redis_->Eval(
      kCountScript, std::move(keys),
      {std::to_string(absl::ToInt64Milliseconds(absl::Hours(2)))});
  if (!r.ok() || !r->is_array() || r->elements().size() != limits.size()) {
    log::Warn("rate limit not checked: redis unavailable",
              {{"status", r.ok() ? absl::InternalError("unexpected reply") : r.status()}});
    return int64_t{0};  // counted nowhere: the next MAIL asks again
  }
  for (size_t i = 0; i < limits.size(); ++i) {
    const redis::Reply& n = r->elements()[i];
    if (!n.is_integer()) return int64_t{0};
    if (n.as_integer() > limits[i].max) {
      return absl::ResourceExhaustedError(
          absl::StrCat("hourly sending limit of the ", limits[i].what, " exceeded"));
    }
    room = std::min<int64_t>(room, limits[i].max - n.as_integer());
  }
  return room;
}

}  // namespace mailgrid::relay
