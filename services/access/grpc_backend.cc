#include "services/access/grpc_backend.h"

#include <atomic>
#include <thread>

#include "absl/time/clock.h"
#include "libs/rpc/client.h"
#include "libs/rpc/status.h"

namespace mailgrid::access {

namespace idv1 = ::mailgrid::identity::v1;

// ---- identityd ---------------------------------------------------------------

absl::StatusOr<std::shared_ptr<IdentityClient>> IdentityClient::Create(
    const std::vector<std::string>& addresses, std::shared_ptr<auth::ServiceTokenSource> tokens,
    const rpc::ClientOptions& tls) {
  auto c = std::make_shared<IdentityClient>();
  for (const std::string& a : addresses) {
    rpc::ClientOptions o = tls;
    o.target = a;
    o.services = {"mailgrid.identity.v1.AuthService"};
    absl::StatusOr<std::shared_ptr<grpc::Channel>> ch = rpc::MakeChannel(o);
    if (!ch.ok()) return ch.status();
    c->stubs_.push_back(idv1::AuthService::NewStub(*ch));
  }
  c->tokens_ = std::move(tokens);
  return c;
}

absl::StatusOr<idv1::CheckSaslResponse> IdentityClient::CheckSasl(const idv1::CheckSaslRequest& r) {
  absl::Status last = absl::UnavailableError("identityd not configured");
  for (auto& stub : stubs_) {
    std::unique_ptr<grpc::ClientContext> ctx = rpc::ContextWithDeadline(absl::Seconds(10));
    if (tokens_) {
      absl::StatusOr<std::string> h = tokens_->AuthorizationHeader();
      if (!h.ok()) return h.status();
      ctx->AddMetadata("authorization", *h);
    }
    idv1::CheckSaslResponse resp;
    grpc::Status st = stub->CheckSasl(ctx.get(), r, &resp);
    if (st.ok()) return resp;
    last = rpc::FromGrpc(st);
    // Only a replica that could not be reached is worth another try; a
    // refusal is the answer.
    if (st.error_code() != grpc::StatusCode::UNAVAILABLE) return last;
  }
  return last;
}

void GrpcAuthenticator::CheckSasl(const imap::SaslCredentials& c, common::v1::Protocol protocol,
                                  const std::string& client_ip, Callback<Principal> done) {
  if (!client_) {
    return post_([done] { done(absl::UnavailableError("identityd not configured")); });
  }
  idv1::CheckSaslRequest req;
  switch (c.mechanism) {
    case imap::SaslMechanism::kPlain: req.set_mechanism(idv1::SASL_MECHANISM_PLAIN); break;
    case imap::SaslMechanism::kLogin: req.set_mechanism(idv1::SASL_MECHANISM_LOGIN); break;
    case imap::SaslMechanism::kXoauth2: req.set_mechanism(idv1::SASL_MECHANISM_XOAUTH2); break;
    case imap::SaslMechanism::kOauthBearer:
      req.set_mechanism(idv1::SASL_MECHANISM_OAUTHBEARER);
      break;
  }
  req.set_authzid(c.authzid);
  req.set_authcid(c.authcid);
  req.set_password(c.password);
  req.set_bearer_token(c.bearer_token);
  req.set_protocol(protocol);
  req.mutable_client()->set_ip(client_ip.empty() ? "0.0.0.0" : client_ip);
  req.mutable_client()->set_protocol(protocol);
  req.set_issue_session(true);
  pool_->Submit([client = client_, req, done, post = post_] {
    absl::StatusOr<idv1::CheckSaslResponse> r = client->CheckSasl(req);
    absl::StatusOr<Principal> p;
    if (!r.ok()) {
      p = r.status();
    } else {
      Principal out;
      out.tenant_id = r->tenant_id();
      out.user_id = r->user_id();
      out.address = r->address();
      out.authorization = "Bearer " + r->session().access_token();
      out.mailboxes.assign(r->mailboxes().begin(), r->mailboxes().end());
      p = std::move(out);
    }
    post([done, p = std::move(p)]() mutable { done(std::move(p)); });
  });
}

// ---- mailstored ----------------------------------------------------------------

template <typename Resp, typename Call>
void GrpcMailBackend::Run(Call call, Callback<Resp> done) {
  if (!client_) {
    return post_([done] { done(absl::UnavailableError("mailstored not configured")); });
  }
  pool_->Submit([client = client_, call = std::move(call), done = std::move(done), post = post_] {
    absl::StatusOr<Resp> r = call(*client);
    post([done, r = std::move(r)]() mutable { done(std::move(r)); });
  });
}

template <typename Resp, typename Start, typename Call>
void GrpcMailBackend::RunAsync(Start start, Call call, Callback<Resp> done) {
  if (!async_ || !client_) return Run<Resp>(std::move(call), std::move(done));
  start([client = client_, pool = pool_, post = post_, call = std::move(call),
         done = std::move(done)](absl::StatusOr<Resp> r, bool fall_back) {
    if (!fall_back) {
      post([done, r = std::move(r)]() mutable { done(std::move(r)); });
      return;
    }
    // The full client (leader hints, retries, older mailstored) on the pool.
    // AsyncMailstore counts this completion as in flight until it returns,
    // so the pool is still there (AccessApp::Stop waits for it).
    pool->Submit([client, call, done, post] {
      absl::StatusOr<Resp> r = call(*client);
      post([done, r = std::move(r)]() mutable { done(std::move(r)); });
    });
  });
}

#define MAILGRID_UNARY(Method, Req, Resp)                                                   \
  void GrpcMailBackend::Method(const CallTarget& t, const Req& r, Callback<Resp> done) {    \
    mailstore_client::CallOptions o;                                                        \
    o.authorization = t.authorization;                                                      \
    uint32_t shard = t.shard;                                                               \
    Run<Resp>([shard, r, o](mailstore_client::MailstoreClient& c) {                         \
      return c.Method(shard, r, o);                                                         \
    }, std::move(done));                                                                    \
  }

MAILGRID_UNARY(ListFolders, ms::ListFoldersRequest, ms::ListFoldersResponse)
MAILGRID_UNARY(FolderStatus, ms::FolderStatusRequest, ms::FolderStatusResponse)
MAILGRID_UNARY(CreateFolder, ms::CreateFolderRequest, ms::Folder)
MAILGRID_UNARY(RenameFolder, ms::RenameFolderRequest, ms::Folder)
MAILGRID_UNARY(DeleteFolder, ms::DeleteFolderRequest, ms::DeleteFolderResponse)
MAILGRID_UNARY(SubscribeFolder, ms::SubscribeFolderRequest, ms::SubscribeFolderResponse)
MAILGRID_UNARY(Append, ms::AppendRequest, ms::AppendResponse)
MAILGRID_UNARY(Copy, ms::CopyRequest, ms::CopyResponse)
MAILGRID_UNARY(Move, ms::MoveRequest, ms::MoveResponse)
MAILGRID_UNARY(Expunge, ms::ExpungeRequest, ms::ExpungeResponse)
MAILGRID_UNARY(Search, ms::SearchRequest, ms::SearchResponse)
MAILGRID_UNARY(GetQuota, ms::GetQuotaRequest, ms::Quota)
#undef MAILGRID_UNARY

// The calls of the usual client loop: through AsyncMailstore when there is one.
#define MAILGRID_ASYNC_UNARY(Method, Req, Resp)                                            \
  void GrpcMailBackend::Method(const CallTarget& t, const Req& r, Callback<Resp> done) {    \
    mailstore_client::CallOptions o;                                                        \
    o.authorization = t.authorization;                                                      \
    uint32_t shard = t.shard;                                                               \
    RunAsync<Resp>(                                                                         \
        [&](AsyncMailstore::Done<Resp> cb) {                                                \
          async_->Method(shard, t.authorization, r, std::move(cb));                         \
        },                                                                                  \
        [shard, r, o](mailstore_client::MailstoreClient& c) { return c.Method(shard, r, o); }, \
        std::move(done));                                                                   \
  }

MAILGRID_ASYNC_UNARY(StoreFlags, ms::StoreFlagsRequest, ms::StoreFlagsResponse)
MAILGRID_ASYNC_UNARY(ChangesSince, ms::ChangesSinceRequest, ms::ChangesSinceResponse)
#undef MAILGRID_ASYNC_UNARY

namespace {

// When mailstored last answered UNIMPLEMENTED to SelectFolder (an older
// replica during a rolling upgrade): FolderStatus + ChangesSince for a
// while, then SelectFolder is tried again.
std::atomic<int64_t> select_folder_missing_until{0};

absl::StatusOr<ms::SelectFolderResponse> SelectFolderInTwoCalls(
    mailstore_client::MailstoreClient& c, uint32_t shard, const ms::SelectFolderRequest& r,
    const mailstore_client::CallOptions& o) {
  ms::FolderStatusRequest fs;
  fs.set_mailbox_id(r.mailbox_id());
  *fs.mutable_folder() = r.folder();
  fs.set_claim_recent(r.claim_recent());
  fs.set_include_uids(r.include_uids());
  absl::StatusOr<ms::FolderStatusResponse> st = c.FolderStatus(shard, fs, o);
  if (!st.ok()) return st.status();
  ms::SelectFolderResponse out;
  *out.mutable_status() = std::move(*st);
  const ms::Folder& f = out.status().folder();
  if (!r.has_changes() || (r.changes().uidvalidity() != 0 &&
                           r.changes().uidvalidity() != f.uidvalidity())) {
    return out;
  }
  ms::ChangesSinceRequest cs = r.changes();
  cs.set_mailbox_id(r.mailbox_id());
  cs.mutable_folder()->set_folder_id(f.folder_id());
  cs.set_uidvalidity(f.uidvalidity());
  absl::StatusOr<ms::ChangesSinceResponse> ch = c.ChangesSince(shard, cs, o);
  if (!ch.ok()) return ch.status();
  *out.mutable_changes() = std::move(*ch);
  return out;
}

}  // namespace

void GrpcMailBackend::SelectFolder(const CallTarget& t, const ms::SelectFolderRequest& r,
                                   Callback<ms::SelectFolderResponse> done) {
  mailstore_client::CallOptions o;
  o.authorization = t.authorization;
  uint32_t shard = t.shard;
  auto call = [shard, r, o](mailstore_client::MailstoreClient& c)
      -> absl::StatusOr<ms::SelectFolderResponse> {
    int64_t now = absl::ToUnixSeconds(absl::Now());
    if (now >= select_folder_missing_until.load(std::memory_order_relaxed)) {
      absl::StatusOr<ms::SelectFolderResponse> one = c.SelectFolder(shard, r, o);
      if (one.ok() || one.status().code() != absl::StatusCode::kUnimplemented) return one;
      select_folder_missing_until.store(now + 60, std::memory_order_relaxed);
    }
    return SelectFolderInTwoCalls(c, shard, r, o);
  };
  // An older mailstored without SelectFolder: straight to the two calls.
  if (absl::ToUnixSeconds(absl::Now()) <
      select_folder_missing_until.load(std::memory_order_relaxed)) {
    return Run<ms::SelectFolderResponse>(std::move(call), std::move(done));
  }
  RunAsync<ms::SelectFolderResponse>(
      [&](AsyncMailstore::Done<ms::SelectFolderResponse> cb) {
        async_->SelectFolder(shard, t.authorization, r, std::move(cb));
      },
      std::move(call), std::move(done));
}

void GrpcMailBackend::Fetch(const CallTarget& t, const ms::FetchRequest& r,
                            Callback<std::vector<ms::FetchResponse>> done) {
  mailstore_client::CallOptions o;
  o.authorization = t.authorization;
  uint32_t shard = t.shard;
  Run<std::vector<ms::FetchResponse>>(
      [shard, r, o](mailstore_client::MailstoreClient& c) { return c.FetchAll(shard, r, o); },
      std::move(done));
}

namespace {

// One thread per feed: the client's Watch blocks until cancelled.
class ThreadWatch : public WatchHandle {
 public:
  ~ThreadWatch() override {
    Cancel();
    if (thread_.joinable()) thread_.join();
  }
  void Cancel() override {
    cancelled_->store(true);
    control_->Cancel();
  }

  std::shared_ptr<std::atomic<bool>> cancelled_ = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<mailstore_client::WatchControl> control_ =
      std::make_shared<mailstore_client::WatchControl>();
  std::thread thread_;
};

}  // namespace

std::unique_ptr<WatchHandle> GrpcMailBackend::Watch(
    const CallTarget& t, const ms::WatchRequest& r,
    std::function<void(const ms::WatchEvent&)> on_event, std::function<void(absl::Status)> on_end) {
  if (hub_ != nullptr) return hub_->Watch(t, r, post_, std::move(on_event), std::move(on_end));
  auto h = std::make_unique<ThreadWatch>();
  if (!client_) {
    post_([on_end] { on_end(absl::UnavailableError("mailstored not configured")); });
    return h;
  }
  mailstore_client::CallOptions o;
  o.authorization = t.authorization;
  o.timeout = absl::Hours(24);
  h->thread_ = std::thread([client = client_, shard = t.shard, r, o, on_event, on_end,
                            post = post_, cancelled = h->cancelled_, control = h->control_] {
    absl::Status st = client->Watch(
        shard, r,
        [&](const ms::WatchEvent& e) {
          if (cancelled->load()) return false;
          post([on_event, e, cancelled] {
            if (!cancelled->load()) on_event(e);
          });
          return true;
        },
        control.get(), o);
    if (!cancelled->load()) {
      post([on_end, st, cancelled] {
        if (!cancelled->load()) on_end(st);
      });
    }
  });
  return h;
}

}  // namespace mailgrid::access
