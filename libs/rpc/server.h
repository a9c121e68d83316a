// One call builds a gRPC server the way every mailgrid service serves:
// grpc.health.v1 health, server reflection, a metrics interceptor
// (grpc_server_handled_total{grpc_service,grpc_method,grpc_code} and
// grpc_server_handling_seconds), a message size limit, and optional TLS or
// mTLS from PEM files (re-read while serving, so renewed certificates are
// picked up without a restart), an optional per-method peer-certificate ACL.
// Bad options (a missing TLS file, a port in use) fail
// Start() with a status naming the problem, before anything is served.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "libs/rpc/peer_acl.h"
#include "prometheus/registry.h"

namespace mailgrid::rpc {

struct ServerOptions {
  std::string service_name;  // logs and metrics
  std::string listen = "127.0.0.1:0";
  // TLS: both cert and key, or neither. A client CA turns on mTLS (clients
  // must present a certificate signed by it).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // How often the TLS files are re-read (tls_watch.h): new handshakes use the
  // renewed certificate, key and client CA. Zero: read once at Start.
  absl::Duration tls_reload_interval = absl::Minutes(1);
  // Which client certificate may call which methods (peer_acl.h); needs
  // mTLS. Empty: any certificate from the client CA may call anything.
  std::vector<PeerAclRule> peer_acl;
  // A second, plain-text listener that serves only grpc.health.v1, mirroring
  // the main one: Kubernetes probes cannot present a client certificate, so
  // with mTLS on they need a port of their own. Empty: none.
  std::string health_listen;
  int max_message_bytes = 64 << 20;
  std::shared_ptr<prometheus::Registry> registry;  // nullptr: no RPC metrics
};

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options,
                                                       const std::vector<grpc::Service*>& services);
  ~Server();

  int port() const { return port_; }
  std::string address() const { return address_; }
  // host:port of the health-only listener ("" when there is none).
  std::string health_address() const { return health_address_; }

  // Health as seen by grpc.health.v1 for "" and every registered service.
  // SetServingStatus(bool) covers them all, which is what probes ask for.
  void SetServing(bool serving);

  // Graceful drain: health goes NOT_SERVING, new calls are refused, calls in
  // flight get until `grace` to finish, then are cancelled.
  void Shutdown(absl::Duration grace);

 private:
  Server() = default;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> health_server_;
  std::string address_;
  std::string health_address_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace mailgrid::rpc
