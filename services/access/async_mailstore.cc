#include "services/access/async_mailstore.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/rpc/status.h"

namespace mailgrid::access {

absl::StatusOr<std::shared_ptr<AsyncMailstore>> AsyncMailstore::Create(
    const mailstore_client::ShardMap& shards, const rpc::ClientOptions& tls,
    absl::Duration timeout) {
  std::shared_ptr<AsyncMailstore> a(new AsyncMailstore());
  a->timeout_ = timeout;
  for (const auto& [n, addresses] : shards.shards) {
    auto s = std::make_unique<Shard>();
    for (const std::string& address : addresses) {
      rpc::ClientOptions o = tls;
      o.target = address;
      absl::StatusOr<std::shared_ptr<grpc::Channel>> ch = rpc::MakeChannel(o);
      if (!ch.ok()) return ch.status();
      s->addresses.push_back(address);
      s->stubs.push_back(ms::MailboxService::NewStub(*ch));
    }
    if (!s->stubs.empty()) a->shards_[n] = std::move(s);
  }
  return a;
}

void AsyncMailstore::Learn(Shard& shard, size_t tried, const std::string& hint) {
  size_t next = (tried + 1) % shard.stubs.size();
  for (size_t i = 0; i < shard.addresses.size(); ++i) {
    if (!hint.empty() && shard.addresses[i] == hint) next = i;
  }
  // Only the first caller that saw `tried` fail moves the shard on.
  shard.leader.compare_exchange_strong(tried, next, std::memory_order_relaxed);
}

template <typename Req, typename Resp, typename Start>
void AsyncMailstore::Call(uint32_t shard_no, const std::string& authorization, const Req& r,
                          bool idempotent, Start start, Done<Resp> done) {
  auto it = shards_.find(shard_no);
  // MailstoreClient answers an unknown shard with its own error.
  if (it == shards_.end()) return done(absl::UnavailableError("shard"), true);
  Shard* shard = it->second.get();
  size_t tried = shard->leader.load(std::memory_order_relaxed) % shard->stubs.size();
  struct State {
    grpc::ClientContext ctx;
    Req request;
    Resp response;
  };
  auto st = std::make_shared<State>();
  st->request = r;
  st->ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  if (!authorization.empty()) st->ctx.AddMetadata("authorization", authorization);
  in_flight_.fetch_add(1);
  start(shard->stubs[tried].get(), &st->ctx, &st->request, &st->response,
        [self = shared_from_this(), st, shard, tried, idempotent,
         done = std::move(done)](grpc::Status s) {
          if (s.ok()) {
            done(std::move(st->response), false);
          } else {
            const auto& md = st->ctx.GetServerTrailingMetadata();
            bool not_leader = md.find("mailgrid-not-leader") != md.end();
            bool fall_back = s.error_code() == grpc::StatusCode::UNIMPLEMENTED;
            if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
              std::string hint;
              if (auto h = md.find("mailgrid-leader"); h != md.end()) {
                hint.assign(h->second.data(), h->second.size());
              }
              Learn(*shard, tried, hint);
              fall_back = idempotent || not_leader;
            }
            done(fall_back ? absl::UnavailableError("retry") : rpc::FromGrpc(s), fall_back);
          }
          self->in_flight_.fetch_sub(1);
        });
}

void AsyncMailstore::SelectFolder(uint32_t shard, const std::string& authorization,
                                  const ms::SelectFolderRequest& r,
                                  Done<ms::SelectFolderResponse> done) {
  Call<ms::SelectFolderRequest, ms::SelectFolderResponse>(
      shard, authorization, r, !r.claim_recent(),
      [](Stub* stub, grpc::ClientContext* ctx, const ms::SelectFolderRequest* req,
         ms::SelectFolderResponse* resp, std::function<void(grpc::Status)> cb) {
        stub->async()->SelectFolder(ctx, req, resp, std::move(cb));
      },
      std::move(done));
}

void AsyncMailstore::StoreFlags(uint32_t shard, const std::string& authorization,
                                const ms::StoreFlagsRequest& r,
                                Done<ms::StoreFlagsResponse> done) {
  Call<ms::StoreFlagsRequest, ms::StoreFlagsResponse>(
      shard, authorization, r, /*idempotent=*/true,
      [](Stub* stub, grpc::ClientContext* ctx, const ms::StoreFlagsRequest* req,
         ms::StoreFlagsResponse* resp, std::function<void(grpc::Status)> cb) {
        stub->async()->StoreFlags(ctx, req, resp, std::move(cb));
      },
      std::move(done));
}

void AsyncMailstore::ChangesSince(uint32_t shard, const std::string& authorization,
                                  const ms::ChangesSinceRequest& r,
                                  Done<ms::ChangesSinceResponse> done) {
  Call<ms::ChangesSinceRequest, ms::ChangesSinceResponse>(
      shard, authorization, r, /*idempotent=*/true,
      [](Stub* stub, grpc::ClientContext* ctx, const ms::ChangesSinceRequest* req,
         ms::ChangesSinceResponse* resp, std::function<void(grpc::Status)> cb) {
        stub->async()->ChangesSince(ctx, req, resp, std::move(cb));
      },
      std::move(done));
}

}  // namespace mailgrid::access
