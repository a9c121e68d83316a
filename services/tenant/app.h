// tenantd's wiring: the store, the token verifier, the gRPC services and
// the background loop (domain recheck, purge of deleted tenants).
#pragma once

#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "libs/rpc/service_main.h"
#include "libs/store/store.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"
#include "services/tenant/authz.h"
#include "services/tenant/config.h"
#include "services/tenant/directory_service.h"
#include "services/tenant/domain_service.h"
#include "services/tenant/replicated_store.h"
#include "services/tenant/tenant_service.h"
#include "services/tenant/tenant_store.h"

namespace mailgrid::tenant {

class TenantApp final : public rpc::ServiceApp {
 public:
  static absl::StatusOr<std::unique_ptr<TenantApp>> Create(
      const rpc::CommonConfig& common, Options options,
      std::shared_ptr<prometheus::Registry> registry);
  ~TenantApp() override;

  std::vector<grpc::Service*> Services() override;
  absl::Status Start(const rpc::RunContext& ctx) override;
  // SERVING only once this process's replica has a leader and has caught up.
  bool Ready(std::string* reason) override { return replicated_ == nullptr || replicated_->Ready(reason); }
  void Drain() override;
  void Stop() override;

  // One round of the background work (also called by tests).
  void BackgroundRound();

 private:
  TenantApp() = default;
  void Loop();

  Options options_;
  std::unique_ptr<store::Store> local_store_;    // --store=local
  std::unique_ptr<ReplicatedStore> replicated_;  // --store=replicated
  store::Store* store_ = nullptr;                // whichever is in use
  std::unique_ptr<TenantStore> tenant_store_;
  std::unique_ptr<TenantStore> resolve_reads_;  // the local replica, STALE (replicated mode)
  std::unique_ptr<ReplicaFreshness> freshness_;  // of that replica (replicated mode)
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<TenantServiceImpl> tenants_;
  std::unique_ptr<DomainServiceImpl> domains_;
  std::unique_ptr<DirectoryPeers> peers_;
  std::unique_ptr<DirectoryServiceImpl> directory_;
  absl::Time last_recheck_ = absl::InfinitePast();

  prometheus::Counter* rechecks_ok_ = nullptr;
  prometheus::Counter* rechecks_failed_ = nullptr;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread loop_;
};

// Registers tenantd's flags and builds the app (main.cc).
rpc::ServiceDef ServiceDefinition();

}  // namespace mailgrid::tenant
