#include "services/identity/app.h"

#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/auth/key_id.h"
#include "libs/base/file.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/replica/client_store.h"
#include "libs/store/local_store.h"

namespace mailgrid::identity {
namespace {

absl::StatusOr<redis::Options> RedisOptions(const std::string& value,
                                            const redis::TlsOptions& tls) {
  ASSIGN_OR_RETURN(redis::Options o, redis::Options::FromAddress(value, tls));
  o.pool_size = 16;
  RETURN_IF_ERROR(o.Validate());
  return o;
}

Options g_options;

}  // namespace

absl::StatusOr<std::unique_ptr<IdentityApp>> IdentityApp::Create(
    const rpc::CommonConfig& common, Options o, std::shared_ptr<prometheus::Registry> registry) {
  std::unique_ptr<IdentityApp> app(new IdentityApp());
  if (!common.data_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(common.data_dir, ec);
    if (ec)
      return absl::InvalidArgumentError(
          absl::StrCat("--data-dir ", common.data_dir, ": ", ec.message()));
  }
  // Storage.
  if (o.store == "replicated") {
    if (o.raft.peers.empty()) {
      // A group of one: this process, at its --listen address.
      if (absl::EndsWith(common.listen, ":0"))
        return absl::InvalidArgumentError(
            "--store=replicated needs --raft-peers, or a fixed --listen port");
      if (o.raft.id == 0) o.raft.id = 1;
      o.raft.peers = absl::StrCat(o.raft.id, "=", common.listen);
    }
    if (o.raft.group == "default") o.raft.group = "identityd";
    rpc::CommonConfig c = common;
    c.data_dir = common.data_dir + "/replica";
    ASSIGN_OR_RETURN(replica::ReplicaOptions ro, replica::MakeReplicaOptions(o.raft, c, registry));
    std::vector<std::string> addresses;
    for (const auto& [id, address] : ro.peers) addresses.push_back(address);
    // The store's KV channels go to the same listeners as Raft: same TLS.
    const replica::ReplicaTls store_tls = ro.peer_tls;
    ASSIGN_OR_RETURN(app->replica_, replica::ReplicaServer::Open(std::move(ro)));
    ASSIGN_OR_RETURN(app->store_, replica::ClientStore::Connect(addresses, store_tls));
    log::Info("store is REPLICATED", {{"peers", absl::StrJoin(addresses, ",")}});
  } else if (o.store == "local") {
    if (common.data_dir.empty())
      return absl::InvalidArgumentError("--data-dir is required with --store=local");
    ASSIGN_OR_RETURN(auto local, store::LocalStore::Open(common.data_dir + "/kv"));
    app->store_ = std::move(local);
    log::Warn("store is LOCAL: one unreplicated RocksDB in --data-dir (not for production)");
  } else {
    return absl::InvalidArgumentError("--store: replicated or local");
  }
  app->identity_store_ = std::make_unique<IdentityStore>(app->store_.get());

  // Redis (dialed on demand: identityd starts while Redis is down).
  ASSIGN_OR_RETURN(redis::Options ro, RedisOptions(o.redis, o.redis_tls));
  app->redis_ = std::make_unique<redis::Client>(ro);

  // Tokens.
  CoreOptions core_options;
  if (!o.token_signing_key.empty()) {
    ASSIGN_OR_RETURN(std::string pem, file::ReadAll(o.token_signing_key));
    ASSIGN_OR_RETURN(std::string kid, auth::KeyIdOfPrivatePem(pem));
    ASSIGN_OR_RETURN(app->signer_, auth::TokenSigner::FromPrivatePem(kid, pem));
    // With a separate service key the user key never signs a service token,
    // so verifiers can hold it as "user:" (libs/auth KeyUse).
    std::string service_pem = pem;
    if (!o.service_token_key.empty()) {
      ASSIGN_OR_RETURN(service_pem, file::ReadAll(o.service_token_key));
    }
    ASSIGN_OR_RETURN(app->service_tokens_,
                     auth::ServiceTokenSource::FromPem(service_pem, "identityd", o.token_issuer));
  } else {
    ASSIGN_OR_RETURN(auto generated, auth::TokenSigner::Generate("ephemeral"));
    ASSIGN_OR_RETURN(std::string pem, generated->PrivatePem());
    ASSIGN_OR_RETURN(std::string kid, auth::KeyIdOfPrivatePem(pem));
    ASSIGN_OR_RETURN(app->signer_, auth::TokenSigner::FromPrivatePem(kid, pem));
    if (!o.service_token_key.empty()) {
      ASSIGN_OR_RETURN(std::string service_pem, file::ReadAll(o.service_token_key));
      ASSIGN_OR_RETURN(app->service_tokens_, auth::ServiceTokenSource::FromPem(
                                                 service_pem, "identityd", o.token_issuer));
    }
    log::Warn(
        "no --token-signing-key: signing with an ephemeral key; other services cannot "
        "verify these tokens and tenantd cannot be called");
  }
  app->verifier_ = std::make_unique<auth::TokenVerifier>(o.token_issuer);
  ASSIGN_OR_RETURN(std::string own_pem, app->signer_->PublicPem());
  RETURN_IF_ERROR(app->verifier_->AddPublicPem(
      app->signer_->key_id(), own_pem,
      o.service_token_key.empty() ? auth::KeyUse::kAny : auth::KeyUse::kUserOnly));
  core_options.public_keys.push_back({app->signer_->key_id(), own_pem});
  // "service:PATH" keys (the other daemons' service-token key) verify only
  // service tokens and are not published: GetPublicKeys lists the keys
  // that sign tokens users hold.
  for (const std::string& entry : o.token_public_keys) {
    ASSIGN_OR_RETURN(auth::TokenKeySpec spec, auth::ParseTokenKeySpec(entry));
    ASSIGN_OR_RETURN(std::string pem, file::ReadAll(spec.path));
    ASSIGN_OR_RETURN(std::string kid, auth::KeyIdOfPublicPem(pem));
    if (kid == app->signer_->key_id()) continue;
    RETURN_IF_ERROR(app->verifier_->AddPublicPem(kid, pem, spec.use));
    if (spec.use != auth::KeyUse::kServiceOnly) core_options.public_keys.push_back({kid, pem});
  }

  // The directory.
  if (o.tenantd.empty())
    log::Warn("no --tenantd: every sign-in fails UNAVAILABLE until configured");
  // Peer channels: TLS when --tls-ca is set, presenting this daemon's own
  // certificate when it has one (the chart's mTLS mode).
  rpc::ClientOptions peer_tls;
  peer_tls.tls_ca_file = o.tls_ca;
  if (!o.tls_ca.empty()) {
    peer_tls.tls_cert_file = common.tls_cert;
    peer_tls.tls_key_file = common.tls_key;
  }
  ASSIGN_OR_RETURN(auto dir, GrpcDirectory::Create(o.tenantd, app->service_tokens_.get(), peer_tls));
  app->directory_ = std::move(dir);
  if (o.relayd.empty())
    log::Warn("no --relayd: password-reset tokens and security notices are not mailed");
  else {
    RelayNoticesOptions notice_options;
    notice_options.registry = registry.get();
    ASSIGN_OR_RETURN(app->notices_,
                     RelayNotices::Create(o.relayd, app->service_tokens_.get(), peer_tls,
                                          app->directory_.get(), notice_options));
    core_options.notices = app->notices_.get();
  }

  // Passwords, sessions, throttle.
  int concurrency = o.hash_concurrency > 0
                        ? o.hash_concurrency
                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  HashParams hp;
  hp.ops_limit = static_cast<uint64_t>(o.argon2_ops);
  hp.mem_kib = static_cast<uint64_t>(o.argon2_mem_kib);
  app->hasher_ = std::make_unique<PasswordHasher>(hp, concurrency);
  SessionOptions so;
  so.issuer = o.token_issuer;
  so.access_ttl = o.access_token_ttl;
  so.refresh_ttl = o.refresh_token_ttl;
  app->sessions_ = std::make_unique<SessionManager>(app->redis_.get(), app->signer_.get(), so);
  app->throttle_ = std::make_unique<Throttler>(app->redis_.get(), o.throttle);
  CommonPasswords common_list = CommonPasswords::Builtin();
  if (!o.common_passwords_file.empty())
    RETURN_IF_ERROR(common_list.LoadFile(o.common_passwords_file));
  log::Info("common-password list loaded", {{"entries", static_cast<int64_t>(common_list.size())}});

  core_options.issuer = o.token_issuer;
  core_options.totp_issuer = o.totp_issuer;
  core_options.qr_host = o.qr_host;
#ifdef MAILGRID_TEST_HOOKS
  if (!o.test_hook_dir.empty()) {
    std::string dir_path = o.test_hook_dir;
    log::Warn("TEST HOOK: password-reset tokens are written to files", {{"dir", dir_path}});
    core_options.reset_token_sink = [dir_path](const std::string& address,
                                               const std::string& token) {
      std::ofstream(dir_path + "/" + address + ".token") << token;
    };
  }
#endif
  app->core_ =
      std::make_unique<Core>(app->identity_store_.get(), app->directory_.get(), app->hasher_.get(),
                             app->sessions_.get(), app->throttle_.get(), app->redis_.get(),
                             std::move(common_list), app->verifier_.get(), core_options);
  app->auth_service_ = MakeAuthService(app->core_.get());
  app->credential_service_ = MakeCredentialService(app->core_.get());
  app->sso_service_ = MakeSsoService(app->core_.get());
  app->options_ = std::move(o);
  return app;
}

IdentityApp::~IdentityApp() { Stop(); }

std::vector<grpc::Service*> IdentityApp::Services() {
  std::vector<grpc::Service*> out = {auth_service_.get(), credential_service_.get(),
                                     sso_service_.get()};
  if (replica_)
    for (grpc::Service* s : replica_->Services()) out.push_back(s);
  return out;
}

absl::Status IdentityApp::Start(const rpc::RunContext&) {
  if (replica_) RETURN_IF_ERROR(replica_->Start());
  return absl::OkStatus();
}

bool IdentityApp::Ready(std::string* reason) {
  return replica_ == nullptr || replica_->replica().Ready(reason);
}

void IdentityApp::Drain() {
  if (replica_) replica_->Drain();
}

void IdentityApp::Stop() {
  if (replica_) {
    replica_->Stop();
  }
}

rpc::ServiceDef ServiceDefinition() {
  rpc::ServiceDef def;
  def.name = "identityd";
  def.add_flags = [](config::Flags& flags) { AddFlags(flags, g_options); };
  def.create = [](const rpc::CommonConfig& common, std::shared_ptr<prometheus::Registry> registry)
      -> absl::StatusOr<std::unique_ptr<rpc::ServiceApp>> {
    ASSIGN_OR_RETURN(auto app, IdentityApp::Create(common, g_options, std::move(registry)));
    return std::unique_ptr<rpc::ServiceApp>(std::move(app));
  };
  return def;
}

}  // namespace mailgrid::identity
