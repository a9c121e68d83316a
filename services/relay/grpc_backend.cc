#include "services/relay/grpc_backend.h"

#include <algorithm>
#include <limits>
#include <string_view>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/rpc/client.h"
#include "libs/rpc/status.h"

namespace mailgrid::relay {

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
