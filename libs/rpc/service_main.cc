#include "libs/rpc/service_main.h"

#include <atomic>
#include <cstdio>
#include <iostream>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "libs/base/log.h"
#include "libs/base/runtime.h"
#include "libs/base/shutdown.h"
#include "libs/base/status.h"
#include "libs/metrics/cert_expiry.h"
#include "libs/metrics/metrics.h"
#include "libs/rpc/server.h"
#include "libs/rpc/ssl_reloader.h"

namespace mailgrid::rpc {

void AddCommonFlags(config::Flags& flags, CommonConfig& c) {
  flags.String("listen", &c.listen, "gRPC listen address host:port (port 0 picks a free port)");
  flags.String("metrics-listen", &c.metrics_listen, "Prometheus /metrics listen address host:port");
  flags.String("log-level", &c.log_level, "debug, info, warn or error");
  flags.String("data-dir", &c.data_dir, "directory for this replica's persistent data");
  flags.String("tls-cert", &c.tls_cert, "PEM certificate for the gRPC listener (enables TLS)");
  flags.String("tls-key", &c.tls_key, "PEM private key for --tls-cert");
  flags.String("tls-client-ca", &c.tls_client_ca, "PEM CA that client certificates must chain to (enables mTLS)");
  flags.Duration("tls-reload-interval", &c.tls_reload_interval,
                 "how often --tls-cert, --tls-key and the CAs are re-read for new connections "
                 "(0: read once at start)");
  flags.String("peer-acl", &c.peer_acl,
               "restrict gRPC methods to client certificates by name (needs mTLS): "
               "PREFIX=NAME,NAME;... e.g. mailgrid.raft.v1.=tenantd;mailgrid.kv.v1.=tenantd,relayd "
               "(the longest prefix decides; uncovered methods: any CA-signed client)");
  flags.String("kv-scope", &c.kv_scope,
               "limit KvService keys per client certificate name (needs mTLS; daemons serving "
               "KV only): NAME=PREFIX,...;... with PREFIX global:SPACE, global:SPACE*, tenant:ID "
               "or hex:BYTES, e.g. relayd=global:outq*");
  flags.String("health-listen", &c.health_listen,
               "plain-text gRPC health-only listener host:port for probes (empty: none)");
  flags.Duration("drain-timeout", &c.drain_timeout, "how long in-flight calls may run after SIGTERM");
}

namespace {

std::atomic<KvScopeInstaller> kv_scope_installer{nullptr};

// Errors at start are one line on stderr and a non-zero exit: an operator
// reading `kubectl logs` sees exactly what to fix.
int Fail(const std::string& service, const absl::Status& status, int code) {
  log::Error("cannot start", {{"service", service}, {"error", std::string(status.message())}});
  return code;
}

void LogEffectiveConfig(const config::Flags& flags) {
  for (const auto& e : flags.EffectiveValues()) {
    log::Info("config", {{"option", e.name}, {"value", e.value}, {"source", e.source}});
  }
}

}  // namespace

void SetKvScopeInstaller(KvScopeInstaller installer) { kv_scope_installer.store(installer); }

int RunService(const ServiceDef& def, int argc, char** argv) {
  log::SetServiceName(def.name);
  // Debian's Abseil leaves mutex deadlock detection on (about 2% of a Raft
  // leader's CPU in bench/raft); it is a debugging aid, not for production.
  base::DisableMutexDeadlockDetection();
  shutdown::Install();
  CommonConfig common;
  config::Flags flags(def.name);
  AddCommonFlags(flags, common);
  if (def.add_flags) def.add_flags(flags);
  if (absl::Status s = flags.Parse(argc, argv); !s.ok()) return Fail(def.name, s, 2);
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  if (!flags.Positional().empty()) {
    return Fail(def.name, absl::InvalidArgumentError("unexpected argument \"" + flags.Positional()[0] + "\""), 2);
  }
  if (absl::Status s = log::SetMinLevelByName(common.log_level); !s.ok()) return Fail(def.name, s, 2);
  auto peer_acl = ParsePeerAcl(common.peer_acl);
  if (!peer_acl.ok()) return Fail(def.name, peer_acl.status(), 2);
  if (!common.kv_scope.empty()) {
    KvScopeInstaller install = kv_scope_installer.load();
    if (install == nullptr)
      return Fail(def.name, absl::InvalidArgumentError("--kv-scope: this daemon serves no KvService"), 2);
    if (absl::Status s = install(common); !s.ok()) return Fail(def.name, s, 2);
  }
  // The public listeners (libs/netserver) reload at the same interval.
  SslCertificateReloader::SetProcessRefresh(common.tls_reload_interval);
  LogEffectiveConfig(flags);

  auto registry = metrics::Registry();
  auto exposer = metrics::HttpExposer::Start(common.metrics_listen, registry, def.name);
  if (!exposer.ok()) return Fail(def.name, exposer.status(), 1);
  log::Info("metrics serving", {{"url", (*exposer)->url()}});

  auto app = def.create(common, registry);
  if (!app.ok()) return Fail(def.name, app.status(), 1);

  ServerOptions server_options;
  server_options.service_name = def.name;
  server_options.listen = common.listen;
  server_options.tls_cert_file = common.tls_cert;
  server_options.tls_key_file = common.tls_key;
  server_options.tls_client_ca_file = common.tls_client_ca;
  server_options.health_listen = common.health_listen;
  server_options.tls_reload_interval = common.tls_reload_interval;
  server_options.peer_acl = *std::move(peer_acl);
  server_options.registry = registry;
  auto server = Server::Start(server_options, (*app)->Services());
  if (!server.ok()) return Fail(def.name, server.status(), 1);
  // After Server::Start, whose errors name the flags, has read the files.
  // The gauge re-reads the file as the server does, so it shows the
  // certificate new connections get.
  metrics::CertificateExpiry cert_expiry(
      registry, common.tls_reload_interval > absl::ZeroDuration() ? common.tls_reload_interval
                                                                  : absl::Minutes(1));
  if (!common.tls_cert.empty()) {
    if (absl::Status s = cert_expiry.Watch("grpc", common.tls_cert); !s.ok()) {
      (*server)->Shutdown(absl::ZeroDuration());
      return Fail(def.name, s, 1);
    }
  }

  RunContext ctx{(*server)->address(), registry};
  if (absl::Status s = (*app)->Start(ctx); !s.ok()) {
    (*server)->Shutdown(absl::ZeroDuration());
    return Fail(def.name, s, 1);
  }
  log::Info("started", {{"service", def.name}, {"grpc", (*server)->address()}, {"metrics", (*exposer)->url()}});

  // Health follows readiness until shutdown is requested; checked once at
  // once, so a probe never sees SERVING before the app was asked.
  bool serving = true;
  auto follow_readiness = [&] {
    std::string why;
    bool ready = (*app)->Ready(&why);
    if (ready != serving) {
      (*server)->SetServing(ready);
      log::Info(ready ? "ready" : "not ready", {{"reason", why}});
      serving = ready;
    }
  };
  follow_readiness();
  while (!shutdown::WaitFor(absl::Milliseconds(200))) follow_readiness();
  std::string reason = shutdown::Wait();
  log::Info("draining", {{"reason", reason}, {"timeout", absl::FormatDuration(common.drain_timeout)}});
  (*server)->SetServing(false);
  (*app)->Drain();
  (*server)->Shutdown(common.drain_timeout);
  (*app)->Stop();
  log::Info("stopped", {{"service", def.name}});
  return 0;
}

}  // namespace mailgrid::rpc
