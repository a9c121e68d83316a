#include "services/relay/app.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/auth/key_id.h"
#include "libs/base/log.h"
#include "libs/replica/client_store.h"
#include "libs/base/status.h"
#include "libs/mailauth/cares_resolver.h"
#include "services/relay/dns_cache.h"
#include "services/relay/grpc_backend.h"
#include "services/relay/inbox_rules.h"
#include "services/relay/null_backend.h"

namespace mailgrid::relay {
namespace {
Options g_options;
}  // namespace

// The outbound queue lives in an existing replica group's KV service:
// --queue-store, else the tenantd group (README: the key space G("outq*")
// is disjoint from tenantd's). relayd itself stays stateless.
absl::StatusOr<std::unique_ptr<store::Store>> ConnectQueueStore(const Options& o,
                                                               const rpc::CommonConfig& common) {
  std::vector<std::string> addresses = o.queue_store.empty() ? o.tenantd : o.queue_store;
  if (addresses.empty()) return std::unique_ptr<store::Store>();
  replica::KvClientOptions ko;
  ko.addresses = addresses;
  ko.timeout = absl::Seconds(10);
  if (!common.tls_cert.empty() && !o.tls_ca.empty()) {
    ko.tls.ca_file = o.tls_ca;
    ko.tls.cert_file = common.tls_cert;
    ko.tls.key_file = common.tls_key;
  }
  ASSIGN_OR_RETURN(auto client, replica::KvClient::Create(std::move(ko)));
  log::Info("outbound queue store", {{"replicas", absl::StrJoin(addresses, ",")},
                                     {"source", o.queue_store.empty() ? "--tenantd" : "--queue-store"}});
  return std::unique_ptr<store::Store>(std::make_unique<replica::ClientStore>(std::move(client)));
}

absl::StatusOr<std::unique_ptr<RelayApp>> RelayApp::Create(
    const rpc::CommonConfig& common, Options options,
    std::shared_ptr<prometheus::Registry> registry) {
  RETURN_IF_ERROR(Validate(options));
  if (!options.bench_null_backend.empty()) {
    log::Warn("BENCHMARK MODE: every message to the domain is DISCARDED",
              {{"domain", options.bench_null_backend}});
    auto null = std::make_unique<NullBackend>(options.bench_null_backend);
    return CreateWithBackend(std::move(options), std::move(null), std::move(registry));
  }
  ASSIGN_OR_RETURN(auto backend, GrpcBackend::Create(options, common.tls_cert, common.tls_key));
  ASSIGN_OR_RETURN(auto queue_store, ConnectQueueStore(options, common));
  return CreateWithBackend(std::move(options), std::move(backend), std::move(registry), nullptr,
                           std::move(queue_store));
}

absl::StatusOr<std::unique_ptr<RelayApp>> RelayApp::CreateWithBackend(
    Options options, std::unique_ptr<Backend> backend,
    std::shared_ptr<prometheus::Registry> registry, std::unique_ptr<mailauth::Resolver> dns,
    std::unique_ptr<store::Store> queue_store, std::unique_ptr<mailauth::Resolver> mx_dns) {
  RETURN_IF_ERROR(Validate(options));
  std::unique_ptr<RelayApp> app(new RelayApp());
  app->options_ = std::move(options);
  app->backend_ = std::move(backend);
  if (app->options_.inbound_auth) {
    if (!dns) {
      dns = std::make_unique<mailauth::CaresResolver>(app->options_.dns_resolver,
                                                      app->options_.dns_timeout);
    }
    app->dns_ = std::make_unique<CachingResolver>(std::move(dns));
  }
  app->workers_ = std::make_unique<WorkerPool>(app->options_.worker_threads);
  int inline_calls = app->options_.smtp_inline_calls < 0 ? app->options_.smtp_threads - 1
                                                         : app->options_.smtp_inline_calls;
  if (inline_calls > 0) app->inline_gate_ = std::make_unique<InlineGate>(inline_calls);
  if (registry) app->metrics_ = RelayMetrics::Create(*registry);
  if (!mx_dns) {
    // Outbound MX lookups: --dns-server, else the inbound checks' resolver.
    const std::string& server = app->options_.dns_server.empty() ? app->options_.dns_resolver
                                                                  : app->options_.dns_server;
    mx_dns = std::make_unique<mailauth::CaresResolver>(server, app->options_.dns_timeout);
  }
  app->outbound_ = Outbound::Create(app->options_, app->backend_.get(), std::move(queue_store),
                                    std::move(mx_dns), registry.get());
  ASSIGN_OR_RETURN(std::unique_ptr<auth::TokenVerifier> verifier,
                   auth::VerifierFromPemFiles(app->options_.token_issuer,
                                              app->options_.token_public_keys));
  if (!verifier) log::Warn("no --token-public-key: RelayService refuses every call");
  app->verifier_ = std::move(verifier);
  app->relay_service_.Bind(app->outbound_.get(), app->verifier_);
  app->context_ = RelayContext{&app->options_, app->backend_.get(), app->workers_.get(),
                               app->metrics_.get(), app->dns_.get(), app->outbound_.get(),
                               app->outbound_.get()};
  InboxRulesOptions rules_options;
  rules_options.hostname = app->options_.hostname;
  app->context_.inbox_rules = std::make_shared<InboxRules>(
      app->backend_.get(), app->outbound_.get(), std::move(rules_options), registry.get());
  // Tenant mail policies: audit holds and monitoring copies.
  app->policies_ = std::make_unique<PolicyCache>(app->backend_.get(), app->options_.policy_cache_ttl);
  app->audit_ = std::make_unique<AuditHolds>(app->outbound_.get(), app->backend_.get(),
                                             app->policies_.get(), app->options_.hostname,
                                             app->options_.held_sweep_interval);
  app->context_.policies = app->policies_.get();
  app->outbound_->SetPolicies(app->policies_.get());  // copies of queue-delivered mail
  if (app->options_.rcpt_cache_ttl > absl::ZeroDuration()) {
    app->rcpt_cache_ = std::make_unique<RcptCache>(app->options_.rcpt_cache_ttl, 10000,
                                                   app->options_.rcpt_cache_foreign_ttl);
    app->context_.rcpt_cache = app->rcpt_cache_.get();
  }
  app->context_.audit = app->audit_.get();
  app->context_.inline_calls = app->inline_gate_.get();
  app->relay_service_.BindAudit(app->audit_.get());
  netserver::ServerOptions so;
  so.threads = app->options_.smtp_threads;
  so.max_connections = static_cast<size_t>(app->options_.max_connections);
  so.max_connections_per_ip = static_cast<size_t>(app->options_.max_connections_per_ip);
  so.idle_timeout = app->options_.smtp_timeout;
  so.tls_cert_file = app->options_.public_tls_cert;
  so.tls_key_file = app->options_.public_tls_key;
  so.registry = registry;
  ASSIGN_OR_RETURN(app->server_, netserver::Server::Create(so));
  if (!app->server_->tls_configured()) {
    log::Warn("no --public-tls-cert/key: STARTTLS not offered, submission cannot AUTH");
  }
  RETURN_IF_ERROR(app->Listen());
  return app;
}

absl::Status RelayApp::Listen() {
  struct Spec {
    const std::string* address;
    const char* name;
    ListenerKind kind;
  };
  const Spec specs[] = {
      {&options_.smtp_listen, "smtp", ListenerKind::kMx},
      {&options_.submission_listen, "submission", ListenerKind::kSubmission},
      {&options_.submission_tls_listen, "submissions", ListenerKind::kSubmissionTls},
  };
  bool any = false;
  for (const Spec& s : specs) {
    if (s.address->empty()) continue;
    any = true;
    smtp::SessionConfig cfg = MakeSmtpConfig(s.kind, options_, server_->tls_configured());
    RETURN_IF_ERROR(smtp::ValidateConfig(cfg));
    netserver::ListenerConfig lc;
    lc.name = s.name;
    lc.address = *s.address;
    lc.implicit_tls = s.kind == ListenerKind::kSubmissionTls;
    lc.over_capacity_reply =
        absl::StrCat("421 4.7.0 ", options_.hostname, " Error: too many connections\r\n");
    RelayContext* ctx = &context_;
    ListenerKind kind = s.kind;
    lc.factory = [ctx, kind, cfg](std::shared_ptr<netserver::Connection> conn) {
      return std::make_unique<RelaySession>(std::move(conn), ctx, kind, cfg);
    };
    ASSIGN_OR_RETURN(int port, server_->AddListener(std::move(lc)));
    (void)port;
  }
  if (!any) log::Warn("no SMTP listener configured (--smtp-listen, --submission-listen, ...)");
  return absl::OkStatus();
}

RelayApp::~RelayApp() { Stop(); }

absl::Status RelayApp::Start(const rpc::RunContext& ctx) {
  RETURN_IF_ERROR(server_->Start());
  if (!options_.public_tls_cert.empty() && ctx.registry != nullptr) {  // tests may pass none
    cert_expiry_ = std::make_unique<metrics::CertificateExpiry>(ctx.registry);
    for (const auto& [listener, address] :
         {std::pair<const char*, const std::string&>{"smtp", options_.smtp_listen},
          {"submission", options_.submission_listen},
          {"submission_tls", options_.submission_tls_listen}})
      if (!address.empty())
        RETURN_IF_ERROR(cert_expiry_->Watch(listener, options_.public_tls_cert));
  }
  if (outbound_) outbound_->Start();
  if (audit_) audit_->Start();
  return absl::OkStatus();
}

void RelayApp::Drain() {
  if (server_) server_->Shutdown(absl::Seconds(10));
}

void RelayApp::Stop() {
  if (stopped_) return;
  stopped_ = true;
  Drain();
  // Sessions are gone; queued work only posts to closed connections.
  if (workers_) workers_->Stop();
  if (audit_) audit_->Stop();
  if (outbound_) outbound_->Stop();  // waits for deliveries in flight
}

rpc::ServiceDef ServiceDefinition() {
  rpc::ServiceDef def;
  def.name = "relayd";
  def.add_flags = [](config::Flags& flags) { AddFlags(flags, g_options); };
  def.create = [](const rpc::CommonConfig& common, std::shared_ptr<prometheus::Registry> registry)
      -> absl::StatusOr<std::unique_ptr<rpc::ServiceApp>> {
    ASSIGN_OR_RETURN(auto app, RelayApp::Create(common, g_options, std::move(registry)));
    return std::unique_ptr<rpc::ServiceApp>(std::move(app));
  };
  return def;
}

}  // namespace mailgrid::relay
