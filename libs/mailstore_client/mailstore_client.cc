#include "libs/mailstore_client/mailstore_client.h"

#include <random>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/base/status.h"
#include "libs/rpc/client.h"
#include "libs/rpc/status.h"

namespace mailgrid::mailstore_client {

// ---------------------------------------------------------------- ShardMap

absl::StatusOr<ShardMap> ShardMap::Parse(std::string_view text_in) {
  absl::string_view text(text_in.data(), text_in.size());
  ShardMap map;
  text = absl::StripAsciiWhitespace(text);
  if (text.empty()) return map;
  bool numbered = text.find('=') != absl::string_view::npos;
  for (absl::string_view group : absl::StrSplit(text, ';', absl::SkipWhitespace())) {
    group = absl::StripAsciiWhitespace(group);
    uint32_t number = 0;
    absl::string_view list = group;
    if (numbered) {
      size_t eq = group.find('=');
      if (eq == absl::string_view::npos ||
          !absl::SimpleAtoi(absl::StripAsciiWhitespace(group.substr(0, eq)), &number))
        return absl::InvalidArgumentError(
            absl::StrCat("mailstored: \"", group, "\" is not shard=host:port,..."));
      list = group.substr(eq + 1);
    } else if (!map.shards.empty()) {
      return absl::InvalidArgumentError("mailstored: several groups need shard numbers (0=...;1=...)");
    }
    if (map.shards.count(number))
      return absl::InvalidArgumentError(absl::StrCat("mailstored: shard ", number, " given twice"));
    std::vector<std::string> addresses;
    for (absl::string_view a : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
      a = absl::StripAsciiWhitespace(a);
      if (a.find(':') == absl::string_view::npos)
        return absl::InvalidArgumentError(absl::StrCat("mailstored: \"", a, "\" is not host:port"));
      addresses.emplace_back(a);
    }
    if (addresses.empty())
      return absl::InvalidArgumentError(absl::StrCat("mailstored: shard ", number, " has no address"));
    map.shards[number] = std::move(addresses);
  }
  return map;
}

std::string ShardMap::ToString() const {
  std::vector<std::string> groups;
  for (const auto& [n, a] : shards) groups.push_back(absl::StrCat(n, "=", absl::StrJoin(a, ",")));
  return absl::StrJoin(groups, ";");
}

// ---------------------------------------------------------------- WatchControl

void WatchControl::Cancel() {
  cancelled_ = true;
  absl::MutexLock lock(&mu_);
  if (ctx_ != nullptr) ctx_->TryCancel();
}

std::string WatchControl::cursor() const {
  absl::MutexLock lock(&mu_);
  return cursor_;
}

void WatchControl::SetContext(grpc::ClientContext* ctx) {
  absl::MutexLock lock(&mu_);
  ctx_ = ctx;
  if (ctx != nullptr && cancelled_) ctx->TryCancel();
}

void WatchControl::SetCursor(std::string cursor) {
  absl::MutexLock lock(&mu_);
  cursor_ = std::move(cursor);
}

// ---------------------------------------------------------------- Shard

struct MailstoreClient::Shard {
  std::vector<std::string> addresses;
  const ClientOptions* options = nullptr;
  absl::Mutex mu;
  std::string leader ABSL_GUARDED_BY(mu);
  size_t rotation ABSL_GUARDED_BY(mu) = 0;
  std::map<std::string, std::unique_ptr<v1::MailboxService::Stub>> stubs ABSL_GUARDED_BY(mu);

  // The address to try: the known leader, else the next replica in turn.
  std::string Pick() {
    absl::MutexLock lock(&mu);
    if (!leader.empty()) return leader;
    return addresses[rotation++ % addresses.size()];
  }
  void Learned(const std::string& address) {
    absl::MutexLock lock(&mu);
    leader = address;
  }
  void Forget(const std::string& address) {
    absl::MutexLock lock(&mu);
    if (leader == address) leader.clear();
    ++rotation;
  }
  absl::StatusOr<v1::MailboxService::Stub*> Stub(const std::string& address) {
    absl::MutexLock lock(&mu);
    auto it = stubs.find(address);
    if (it != stubs.end()) return it->second.get();
    rpc::ClientOptions co;
    co.target = address;
    co.tls_ca_file = options->tls_ca_file;
    co.tls_cert_file = options->tls_cert_file;
    co.tls_key_file = options->tls_key_file;
    co.max_message_bytes = 128 << 20;
    ASSIGN_OR_RETURN(auto channel, rpc::MakeChannel(co));
    auto stub = v1::MailboxService::NewStub(channel);
    auto* raw = stub.get();
    stubs[address] = std::move(stub);
    return raw;
  }
};

namespace {

// What the server put in the trailers about leadership.
struct LeaderHint {
  bool not_leader = false;  // refused before doing anything
  std::string leader;       // where to go ("" unknown)
};

LeaderHint ReadHint(const grpc::ClientContext& ctx) {
  LeaderHint hint;
  const auto& md = ctx.GetServerTrailingMetadata();
  if (auto it = md.find("mailgrid-not-leader"); it != md.end()) hint.not_leader = true;
  if (auto it = md.find("mailgrid-leader"); it != md.end())
    hint.leader.assign(it->second.data(), it->second.size());
  return hint;
}

absl::Duration Backoff(int attempt) {
  static thread_local std::mt19937 rng(std::random_device{}());
  int64_t base_ms = std::min<int64_t>(1000, 25LL << std::min(attempt, 6));
  std::uniform_int_distribution<int64_t> d(base_ms / 2, base_ms);
  return absl::Milliseconds(d(rng));
}

}  // namespace

// ---------------------------------------------------------------- client

absl::StatusOr<std::unique_ptr<MailstoreClient>> MailstoreClient::Create(ClientOptions options) {
  if (options.shards.shards.empty())
    return absl::InvalidArgumentError("mailstored: no shard configured");
  std::unique_ptr<MailstoreClient> c(new MailstoreClient(std::move(options)));
  for (const auto& [n, addresses] : c->options_.shards.shards) {
    auto s = std::make_unique<Shard>();
    s->addresses = addresses;
    s->options = &c->options_;
    c->shards_[n] = std::move(s);
  }
  return c;
}

absl::StatusOr<std::unique_ptr<MailstoreClient>> MailstoreClient::FromFlag(
    std::string_view mailstored, std::shared_ptr<auth::ServiceTokenSource> service_tokens) {
  ClientOptions o;
  ASSIGN_OR_RETURN(o.shards, ShardMap::Parse(mailstored));
  o.service_tokens = std::move(service_tokens);
  return Create(std::move(o));
}

MailstoreClient::MailstoreClient(ClientOptions options) : options_(std::move(options)) {}
MailstoreClient::~MailstoreClient() = default;

absl::StatusOr<MailstoreClient::Shard*> MailstoreClient::GetShard(uint32_t shard) {
  auto it = shards_.find(shard);
  if (it == shards_.end())
    return absl::UnavailableError(absl::StrCat("mailstore shard ", shard, " is not configured"));
  return it->second.get();
}

absl::Status MailstoreClient::PrepareContext(grpc::ClientContext* ctx, const CallOptions& o,
                                             absl::Time deadline) {
  ctx->set_deadline(absl::ToChronoTime(deadline));
  if (!o.authorization.empty()) {
    ctx->AddMetadata("authorization", o.authorization);
  } else if (options_.service_tokens) {
    ASSIGN_OR_RETURN(std::string header, options_.service_tokens->AuthorizationHeader());
    ctx->AddMetadata("authorization", header);
  }
  return absl::OkStatus();
}

template <typename Req, typename Resp, typename Method>
absl::StatusOr<Resp> MailstoreClient::Unary(uint32_t shard_no, Method method, const Req& request,
                                            const CallOptions& o, bool idempotent) {
  ASSIGN_OR_RETURN(Shard * shard, GetShard(shard_no));
  absl::Duration budget = o.timeout > absl::ZeroDuration() ? o.timeout : options_.timeout;
  absl::Time deadline = absl::Now() + budget;
  absl::Status last = absl::UnavailableError("mailstored: no attempt made");
  for (int attempt = 0;; ++attempt) {
    std::string address = shard->Pick();
    ASSIGN_OR_RETURN(auto* stub, shard->Stub(address));
    grpc::ClientContext ctx;
    RETURN_IF_ERROR(PrepareContext(&ctx, o, deadline));
    Resp response;
    grpc::Status st = (stub->*method)(&ctx, request, &response);
    if (st.ok()) {
      shard->Learned(address);
      return response;
    }
    LeaderHint hint = ReadHint(ctx);
    last = rpc::FromGrpc(st);
    bool retry = st.error_code() == grpc::StatusCode::UNAVAILABLE && (idempotent || hint.not_leader);
    if (!retry) return last;
    if (!hint.leader.empty() && hint.leader != address) {
      shard->Learned(hint.leader);
    } else {
      shard->Forget(address);
    }
    absl::Duration pause = hint.leader.empty() ? Backoff(attempt) : absl::ZeroDuration();
    if (absl::Now() + pause >= deadline) return last;
    absl::SleepFor(pause);
  }
}

#define MS_UNARY(Name, Req, Resp, Idem)                                                     \
  absl::StatusOr<v1::Resp> MailstoreClient::Name(uint32_t shard, const v1::Req& r,         \
                                                 const CallOptions& o) {                   \
    return Unary<v1::Req, v1::Resp>(shard, &v1::MailboxService::Stub::Name, r, o, (Idem)); \
  }

MS_UNARY(CreateMailbox, CreateMailboxRequest, MailboxInfo, true)
MS_UNARY(DeleteMailbox, DeleteMailboxRequest, DeleteMailboxResponse, true)
MS_UNARY(ListFolders, ListFoldersRequest, ListFoldersResponse, true)
MS_UNARY(CreateFolder, CreateFolderRequest, Folder, false)
MS_UNARY(RenameFolder, RenameFolderRequest, Folder, false)
MS_UNARY(DeleteFolder, DeleteFolderRequest, DeleteFolderResponse, false)
MS_UNARY(SubscribeFolder, SubscribeFolderRequest, SubscribeFolderResponse, true)
MS_UNARY(FolderStatus, FolderStatusRequest, FolderStatusResponse, !r.claim_recent())
MS_UNARY(SelectFolder, SelectFolderRequest, SelectFolderResponse, !r.claim_recent())
MS_UNARY(Append, AppendRequest, AppendResponse, !r.idempotency_key().empty())
MS_UNARY(DeliverBatch, DeliverBatchRequest, DeliverBatchResponse, !r.delivery_id().empty())
MS_UNARY(StoreFlags, StoreFlagsRequest, StoreFlagsResponse, true)
MS_UNARY(Copy, CopyRequest, CopyResponse, false)
MS_UNARY(Move, MoveRequest, MoveResponse, false)
MS_UNARY(Expunge, ExpungeRequest, ExpungeResponse, true)
MS_UNARY(ChangesSince, ChangesSinceRequest, ChangesSinceResponse, true)
MS_UNARY(Search, SearchRequest, SearchResponse, true)
MS_UNARY(GetQuota, GetQuotaRequest, Quota, true)
MS_UNARY(SetQuota, SetQuotaRequest, Quota, true)
MS_UNARY(StartArchive, StartArchiveRequest, ArchiveJob, false)
MS_UNARY(GetArchiveJob, GetArchiveJobRequest, ArchiveJob, true)
MS_UNARY(CancelArchiveJob, CancelArchiveJobRequest, ArchiveJob, true)
MS_UNARY(ListRetentionRules, ListRetentionRulesRequest, RetentionRules, true)
#undef MS_UNARY

absl::StatusOr<v1::Quota> MailstoreClient::GetTenantQuota(const std::string& tenant_id,
                                                          const CallOptions& o) {
  v1::Quota total;
  total.set_tenant_id(tenant_id);
  v1::GetQuotaRequest r;
  r.set_tenant_id(tenant_id);
  for (const auto& [n, shard] : shards_) {
    ASSIGN_OR_RETURN(v1::Quota q, GetQuota(n, r, o));
    total.set_usage_bytes(total.usage_bytes() + q.usage_bytes());
    total.set_usage_messages(total.usage_messages() + q.usage_messages());
    if (!total.has_limit()) *total.mutable_limit() = q.limit();
  }
  return total;
}

absl::StatusOr<v1::RetentionRules> MailstoreClient::SetRetentionRules(
    const v1::SetRetentionRulesRequest& r, const CallOptions& o) {
  absl::StatusOr<v1::RetentionRules> first = absl::UnavailableError("no shard");
  bool have_first = false;
  for (const auto& [n, shard] : shards_) {
    auto result = Unary<v1::SetRetentionRulesRequest, v1::RetentionRules>(
        n, &v1::MailboxService::Stub::SetRetentionRules, r, o, true);
    if (!result.ok()) return result.status();
    if (!have_first) first = std::move(result), have_first = true;
  }
  return first;
}

absl::Status MailstoreClient::Fetch(uint32_t shard_no, const v1::FetchRequest& r,
                                    const std::function<bool(v1::FetchResponse&&)>& on_message,
                                    const CallOptions& o) {
  ASSIGN_OR_RETURN(Shard * shard, GetShard(shard_no));
  absl::Duration budget = o.timeout > absl::ZeroDuration() ? o.timeout : options_.timeout;
  absl::Time deadline = absl::Now() + budget;
  absl::Status last;
  for (int attempt = 0;; ++attempt) {
    std::string address = shard->Pick();
    ASSIGN_OR_RETURN(auto* stub, shard->Stub(address));
    grpc::ClientContext ctx;
    RETURN_IF_ERROR(PrepareContext(&ctx, o, deadline));
    auto reader = stub->Fetch(&ctx, r);
    v1::FetchResponse msg;
    bool received = false, stopped = false;
    while (reader->Read(&msg)) {
      received = true;
      if (!on_message(std::move(msg))) {
        stopped = true;
        ctx.TryCancel();
        break;
      }
      msg.Clear();
    }
    grpc::Status st = reader->Finish();
    if (stopped) return absl::OkStatus();
    if (st.ok()) {
      shard->Learned(address);
      return absl::OkStatus();
    }
    LeaderHint hint = ReadHint(ctx);
    last = rpc::FromGrpc(st);
    // set_seen changes flags; a retry is still correct (adding \Seen twice is a no-op).
    if (received || st.error_code() != grpc::StatusCode::UNAVAILABLE) return last;
    if (!hint.leader.empty() && hint.leader != address) shard->Learned(hint.leader);
    else shard->Forget(address);
    absl::Duration pause = hint.leader.empty() ? Backoff(attempt) : absl::ZeroDuration();
    if (absl::Now() + pause >= deadline) return last;
    absl::SleepFor(pause);
  }
}

absl::StatusOr<std::vector<v1::FetchResponse>> MailstoreClient::FetchAll(uint32_t shard,
                                                                         const v1::FetchRequest& r,
                                                                         const CallOptions& o) {
  std::vector<v1::FetchResponse> out;
  RETURN_IF_ERROR(Fetch(shard, r, [&](v1::FetchResponse&& m) {
    out.push_back(std::move(m));
    return true;
  }, o));
  return out;
}

absl::Status MailstoreClient::ExportMbox(
    uint32_t shard_no, const v1::ExportMboxRequest& r,
    const std::function<bool(const v1::ExportMboxResponse&)>& on_chunk, const CallOptions& o) {
  ASSIGN_OR_RETURN(Shard * shard, GetShard(shard_no));
  absl::Duration budget = o.timeout > absl::ZeroDuration() ? o.timeout : absl::Hours(1);
  absl::Time deadline = absl::Now() + budget;
  absl::Status last;
  for (int attempt = 0;; ++attempt) {
    std::string address = shard->Pick();
    ASSIGN_OR_RETURN(auto* stub, shard->Stub(address));
    grpc::ClientContext ctx;
    RETURN_IF_ERROR(PrepareContext(&ctx, o, deadline));
    auto reader = stub->ExportMbox(&ctx, r);
    v1::ExportMboxResponse chunk;
    bool received = false, stopped = false;
    while (reader->Read(&chunk)) {
      received = true;
      if (!on_chunk(chunk)) {
        stopped = true;
        ctx.TryCancel();
        break;
      }
    }
    grpc::Status st = reader->Finish();
    if (stopped) return absl::OkStatus();
    if (st.ok()) return absl::OkStatus();
    LeaderHint hint = ReadHint(ctx);
    last = rpc::FromGrpc(st);
    if (received || st.error_code() != grpc::StatusCode::UNAVAILABLE) return last;
    if (!hint.leader.empty() && hint.leader != address) shard->Learned(hint.leader);
    else shard->Forget(address);
    absl::Duration pause = hint.leader.empty() ? Backoff(attempt) : absl::ZeroDuration();
    if (absl::Now() + pause >= deadline) return last;
    absl::SleepFor(pause);
  }
}

absl::Status MailstoreClient::Watch(uint32_t shard_no, const v1::WatchRequest& r,
                                    const std::function<bool(const v1::WatchEvent&)>& on_event,
                                    WatchControl* control, const CallOptions& o) {
  ASSIGN_OR_RETURN(Shard * shard, GetShard(shard_no));
  v1::WatchRequest request = r;
  // How long to keep trying to reach a leader after the stream broke.
  absl::Duration reconnect_budget =
      o.timeout > absl::ZeroDuration() ? o.timeout : options_.timeout;
  absl::Time give_up = absl::InfiniteFuture();
  for (int attempt = 0;; ++attempt) {
    if (control != nullptr && control->cancelled()) return absl::OkStatus();
    std::string address = shard->Pick();
    ASSIGN_OR_RETURN(auto* stub, shard->Stub(address));
    grpc::ClientContext ctx;
    // No deadline: the stream lives as long as the caller wants.
    RETURN_IF_ERROR(PrepareContext(&ctx, o, absl::InfiniteFuture()));
    if (control != nullptr) control->SetContext(&ctx);
    auto reader = stub->Watch(&ctx, request);
    v1::WatchEvent event;
    bool stopped = false;
    while (reader->Read(&event)) {
      give_up = absl::InfiniteFuture();
      attempt = 0;
      shard->Learned(address);
      if (!event.cursor().empty()) {
        request.set_after_cursor(event.cursor());
        if (control != nullptr) control->SetCursor(event.cursor());
      }
      if (!on_event(event)) {
        stopped = true;
        ctx.TryCancel();
        break;
      }
    }
    grpc::Status st = reader->Finish();
    if (control != nullptr) control->SetContext(nullptr);
    if (stopped || (control != nullptr && control->cancelled())) return absl::OkStatus();
    switch (st.error_code()) {
      case grpc::StatusCode::UNAVAILABLE:
      case grpc::StatusCode::OK:  // server drained the stream
      case grpc::StatusCode::CANCELLED:
      case grpc::StatusCode::DEADLINE_EXCEEDED:
      case grpc::StatusCode::INTERNAL:
      case grpc::StatusCode::UNKNOWN:
        break;
      default:
        return rpc::FromGrpc(st);
    }
    LeaderHint hint = ReadHint(ctx);
    if (!hint.leader.empty() && hint.leader != address) shard->Learned(hint.leader);
    else shard->Forget(address);
    if (give_up == absl::InfiniteFuture()) give_up = absl::Now() + reconnect_budget;
    if (absl::Now() >= give_up) return rpc::FromGrpc(st);
    absl::SleepFor(hint.leader.empty() ? Backoff(attempt) : absl::Milliseconds(5));
  }
}

}  // namespace mailgrid::mailstore_client
