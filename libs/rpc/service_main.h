// The bootstrap every mailgrid daemon runs, so that each services/<name>/
// main.cc is a few lines. In order:
//   1. flags/env/config file (common options below plus the service's own);
//      a bad option prints one line naming it and exits 2;
//   2. logs the effective configuration, one line per option;
//   3. serves /metrics (process metrics included);
//   4. creates the service (Create), serves its gRPC services with health
//      and reflection, then Start()s it; health follows the app's Ready();
//   5. on SIGTERM/SIGINT: health NOT_SERVING, Drain() (stop taking new
//      work), gRPC drain up to --drain-timeout, Stop(), exit 0.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/impl/codegen/service_type.h"
#include "libs/base/config.h"
#include "prometheus/registry.h"

namespace mailgrid::rpc {

struct CommonConfig {
  std::string listen = "127.0.0.1:0";
  std::string metrics_listen = "127.0.0.1:0";
  std::string log_level = "info";
  std::string data_dir;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  std::string health_listen;  // plain-text health-only port for probes ("" = none)
  // TLS files re-read this often (0: once); also the daemon's own clients
  // should pass it to rpc::ClientOptions::tls_reload_interval.
  absl::Duration tls_reload_interval = absl::Minutes(1);
  std::string peer_acl;       // peer_acl.h spec ("" = none)
  // libs/replica/kv_scope.h spec ("" = none); only daemons serving
  // KvService accept it (see SetKvScopeInstaller).
  std::string kv_scope;
  absl::Duration drain_timeout = absl::Seconds(10);
};

// What a daemon's Start() learns about the process it runs in.
struct RunContext {
  std::string grpc_address;  // host:port actually bound
  std::shared_ptr<prometheus::Registry> registry;
};

class ServiceApp {
 public:
  virtual ~ServiceApp() = default;
  // gRPC services to serve; they must outlive the server (owned by the app).
  virtual std::vector<grpc::Service*> Services() = 0;
  // Called once the gRPC server listens: start listeners, background work.
  virtual absl::Status Start(const RunContext& ctx) { return absl::OkStatus(); }
  // Readiness, polled by the bootstrap a few times a second: gRPC health is
  // SERVING only while this is true (a Raft member: has a leader and has
  // caught up). `reason` says why not, for the log.
  virtual bool Ready(std::string* reason) { return true; }
  // Shutdown step 1: stop accepting new work (e.g. SMTP answers 421).
  virtual void Drain() {}
  // Shutdown step 3, after gRPC has drained: release everything.
  virtual void Stop() {}
};

struct ServiceDef {
  std::string name;  // "tenantd"
  // Registers the daemon's own options on the shared Flags object.
  std::function<void(config::Flags&)> add_flags;
  std::function<absl::StatusOr<std::unique_ptr<ServiceApp>>(const CommonConfig&,
                                                            std::shared_ptr<prometheus::Registry>)>
      create;
};

// Runs a daemon to completion; returns the process exit code.
int RunService(const ServiceDef& def, int argc, char** argv);

// --kv-scope is enforced by libs/replica (kv_scope.cc), which rpc cannot
// depend on: kv_scope.cc registers this installer when it is linked into
// the daemon (i.e. the daemon serves KvService). RunService calls it after
// parsing flags (an error exits 2); a non-empty --kv-scope in a daemon
// without one is an error too, rather than a silently ignored restriction.
using KvScopeInstaller = absl::Status (*)(const CommonConfig&);
void SetKvScopeInstaller(KvScopeInstaller installer);

// Registers the common options on `flags` (exposed for tools and tests).
void AddCommonFlags(config::Flags& flags, CommonConfig& common);

}  // namespace mailgrid::rpc
