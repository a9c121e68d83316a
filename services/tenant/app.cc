#include "services/tenant/app.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/store/local_store.h"
#include "libs/auth/key_id.h"

namespace mailgrid::tenant {
namespace {

absl::StatusOr<std::unique_ptr<store::Store>> OpenLocal(const rpc::CommonConfig& common) {
  if (common.data_dir.empty())
    return absl::InvalidArgumentError("--data-dir is required with --store=local");
  ASSIGN_OR_RETURN(auto local, store::LocalStore::Open(common.data_dir + "/kv"));
  log::Warn("store is LOCAL: one unreplicated RocksDB in --data-dir (not for production)",
            {{"dir", common.data_dir + "/kv"}});
  return std::unique_ptr<store::Store>(std::move(local));
}

Options g_options;

}  // namespace

absl::StatusOr<std::unique_ptr<TenantApp>> TenantApp::Create(
    const rpc::CommonConfig& common, Options options,
    std::shared_ptr<prometheus::Registry> registry) {
  RETURN_IF_ERROR(Finish(options));
  if (!common.data_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(common.data_dir, ec);
    if (ec)
      return absl::InvalidArgumentError(
          absl::StrCat("--data-dir ", common.data_dir, ": ", ec.message()));
  }
  std::unique_ptr<TenantApp> app(new TenantApp());
  app->options_ = std::move(options);
  const Options& o = app->options_;
  if (o.store == "replicated") {
    ASSIGN_OR_RETURN(app->replicated_, ReplicatedStore::Open(common, o, registry));
    app->store_ = app->replicated_->store();
  } else {
    ASSIGN_OR_RETURN(app->local_store_, OpenLocal(common));
    app->store_ = app->local_store_.get();
  }
  app->tenant_store_ = std::make_unique<TenantStore>(app->store_);
  ASSIGN_OR_RETURN(auto verifier, auth::VerifierFromPemFiles(o.token_issuer, o.token_public_keys));
  if (!verifier)
    log::Warn("no --token-public-key: only onboarding tokens and anonymous calls are accepted");
  app->auth_ = std::make_unique<Authenticator>(std::move(verifier), app->tenant_store_.get());
  std::optional<KeySealer> sealer;
  if (!o.dkim_master_key_bytes.empty()) {
    ASSIGN_OR_RETURN(KeySealer s, KeySealer::Create(o.dkim_master_key_bytes));
    sealer = std::move(s);
  } else {
    log::Warn(
        "no DKIM master key (--dkim-master-key-file / MAILGRID_DKIM_MASTER_KEY): domains cannot be "
        "added");
  }
  app->tenants_ = std::make_unique<TenantServiceImpl>(app->tenant_store_.get(), app->auth_.get(),
                                                      &app->options_);
  app->domains_ = std::make_unique<DomainServiceImpl>(
      app->tenant_store_.get(), app->auth_.get(), &app->options_,
      std::make_unique<CaresResolver>(o.dns_resolver, o.dns_timeout), std::move(sealer));
  // Peer channels use TLS when this daemon's own listener does (the chart's
  // mTLS mode): the cluster CA (--tls-ca), our certificate.
  rpc::ClientOptions peer_tls;
  if (!o.tls_ca.empty() && !common.tls_cert.empty()) {
    peer_tls.tls_ca_file = o.tls_ca;
    peer_tls.tls_cert_file = common.tls_cert;
    peer_tls.tls_key_file = common.tls_key;
  }
  ASSIGN_OR_RETURN(app->peers_, MakeGrpcPeers(o, peer_tls));
  if (app->replicated_) {
    // Resolve (relayd, every RCPT) reads this replica's own state: no
    // network hop, as fresh as replication (README, Resolve cache).
    app->resolve_reads_ = std::make_unique<TenantStore>(
        app->replicated_->local_reads(), absl::Seconds(10), kv::v1::STALE);
    app->freshness_ = std::make_unique<ReplicaFreshness>(app->replicated_->store(),
                                                         app->replicated_->local_reads());
  }
  app->directory_ = std::make_unique<DirectoryServiceImpl>(
      app->tenant_store_.get(), app->auth_.get(), &app->options_, app->peers_.get(),
      app->resolve_reads_.get(), app->freshness_.get());
  if (registry) {
    auto& family = prometheus::BuildCounter()
                       .Name("mailgrid_tenant_domain_rechecks_total")
                       .Help("Background DNS recheck rounds of all domains, by result")
                       .Register(*registry);
    app->rechecks_ok_ = &family.Add({{"result", "ok"}});
    app->rechecks_failed_ = &family.Add({{"result", "failed"}});
  }
  return app;
}

TenantApp::~TenantApp() { Stop(); }

std::vector<grpc::Service*> TenantApp::Services() {
  std::vector<grpc::Service*> out = {tenants_.get(), domains_.get(), directory_.get()};
  if (replicated_) {
    for (grpc::Service* s : replicated_->Services()) out.push_back(s);
  }
  return out;
}

absl::Status TenantApp::Start(const rpc::RunContext&) {
  if (replicated_) RETURN_IF_ERROR(replicated_->Start());
  last_recheck_ = absl::Now();  // the first DNS recheck one interval after start
  directory_->StartResolveIndex();
  loop_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void TenantApp::BackgroundRound() {
  // One replica does the rounds (the others would only lose the races).
  if (replicated_ && !replicated_->IsLeader()) return;
  const absl::Time now = absl::Now();
  if (options_.domain_recheck_interval > absl::ZeroDuration() &&
      now - last_recheck_ >= options_.domain_recheck_interval) {
    last_recheck_ = now;
    auto checked = domains_->RecheckAll();
    if (checked.ok()) {
      if (rechecks_ok_) rechecks_ok_->Increment();
      log::Debug("domains rechecked", {{"count", *checked}});
    } else {
      if (rechecks_failed_) rechecks_failed_->Increment();
      log::Warn("domain recheck round failed", {{"status", checked.status()}});
    }
  }
  if (absl::Status s = tenants_->PurgeExpired(absl::Now()); !s.ok())
    log::Warn("purge failed", {{"status", s}});
  // Pending mailboxes and users past their grace period (directory).
  if (absl::Status s = directory_->BackgroundRound(absl::Now()); !s.ok())
    log::Warn("directory round failed", {{"status", s}});
}

void TenantApp::Loop() {
  // Rechecks are idempotent conditional writes, so every replica may run
  // them; the loser of a race re-reads and finds nothing left to change.
  // Every 30 s: the directory's pending work is retried promptly; the DNS
  // recheck inside a round keeps its own --domain-recheck-interval.
  absl::Duration period = absl::Seconds(30);
  absl::MutexLock lock(&mu_);
  for (;;) {
    auto stopping = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
    mu_.AwaitWithTimeout(absl::Condition(&stopping), period);
    if (stopping_) return;
    mu_.Unlock();
    BackgroundRound();
    mu_.Lock();
  }
}

void TenantApp::Drain() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

void TenantApp::Stop() {
  Drain();
  if (loop_.joinable()) loop_.join();
  directory_->StopResolveIndex();
  if (replicated_) replicated_->Stop();
}

rpc::ServiceDef ServiceDefinition() {
  rpc::ServiceDef def;
  def.name = "tenantd";
  def.add_flags = [](config::Flags& flags) { AddFlags(flags, g_options); };
  def.create = [](const rpc::CommonConfig& common, std::shared_ptr<prometheus::Registry> registry)
      -> absl::StatusOr<std::unique_ptr<rpc::ServiceApp>> {
    ASSIGN_OR_RETURN(auto app, TenantApp::Create(common, g_options, std::move(registry)));
    return std::unique_ptr<rpc::ServiceApp>(std::move(app));
  };
  return def;
}

}  // namespace mailgrid::tenant
