// relayd's wiring: the peer backend, the worker pool, the SMTP listeners on
// libs/netserver, and the RelayService gRPC service.
#pragma once

#include <memory>

#include "libs/auth/token.h"
#include "libs/mailauth/dns.h"
#include "libs/metrics/cert_expiry.h"
#include "libs/store/store.h"
#include "libs/netserver/server.h"
#include "libs/rpc/service_main.h"
#include "services/relay/backend.h"
#include "services/relay/audit_holds.h"
#include "services/relay/config.h"
#include "services/relay/mail_policy.h"
#include "services/relay/outbound.h"
#include "services/relay/rcpt_cache.h"
#include "services/relay/relay_service.h"
#include "services/relay/smtp_session.h"
#include "services/relay/worker_pool.h"

namespace mailgrid::relay {

class RelayApp final : public rpc::ServiceApp {
 public:
  // Binds the SMTP listeners now (a port in use fails the start); they
  // accept once Start() runs.
  static absl::StatusOr<std::unique_ptr<RelayApp>> Create(
      const rpc::CommonConfig& common, Options options,
      std::shared_ptr<prometheus::Registry> registry);
  // The same with a given backend (tests).
  static absl::StatusOr<std::unique_ptr<RelayApp>> CreateWithBackend(
      Options options, std::unique_ptr<Backend> backend,
      std::shared_ptr<prometheus::Registry> registry,
      std::unique_ptr<mailauth::Resolver> dns = nullptr,
      std::unique_ptr<store::Store> queue_store = nullptr,
      std::unique_ptr<mailauth::Resolver> mx_dns = nullptr);
  ~RelayApp() override;

  std::vector<grpc::Service*> Services() override { return {&relay_service_}; }
  absl::Status Start(const rpc::RunContext& ctx) override;
  // SMTP sessions say 421 and close (a delivery in flight is answered first).
  void Drain() override;
  void Stop() override;

  int port(std::string_view listener) const { return server_->port(listener); }
  Outbound* outbound() { return outbound_.get(); }
  AuditHolds* audit() { return audit_.get(); }
  netserver::Stats smtp_stats() const { return server_->stats(); }

 private:
  RelayApp() = default;
  absl::Status Listen();

  Options options_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<mailauth::Resolver> dns_;  // the cache, over c-ares or the test's
  std::unique_ptr<Outbound> outbound_;  // queue, runner, internal submission
  std::unique_ptr<PolicyCache> policies_;   // tenant audit/monitoring policies
  std::unique_ptr<AuditHolds> audit_;       // audit holds and held-mail expiry
  std::unique_ptr<RcptCache> rcpt_cache_;   // RCPT Resolve answers (--rcpt-cache-ttl)
  std::shared_ptr<auth::TokenVerifier> verifier_;
  std::unique_ptr<WorkerPool> workers_;
  std::unique_ptr<InlineGate> inline_gate_;  // --smtp-inline-calls
  std::unique_ptr<RelayMetrics> metrics_;
  RelayContext context_;
  std::unique_ptr<netserver::Server> server_;
  std::unique_ptr<metrics::CertificateExpiry> cert_expiry_;
  RelayServiceImpl relay_service_;
  bool stopped_ = false;
};

rpc::ServiceDef ServiceDefinition();

}  // namespace mailgrid::relay
