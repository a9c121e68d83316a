// accessd's wiring: flags, the identityd and mailstored clients, the worker
// pool, and the netserver listeners for IMAP (143 STARTTLS, 993 TLS) and
// POP3 (110 STLS, 995 TLS). accessd is stateless: every mailbox read and
// write goes to mailstored, every credential check to identityd.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "libs/metrics/cert_expiry.h"
#include "libs/rpc/client.h"
#include "libs/netserver/server.h"
#include "libs/rpc/service_main.h"
#include "services/access/connections.h"
#include "services/access/fetch_cache.h"
#include "services/access/metrics.h"
#include "services/access/worker_pool.h"

namespace mailgrid::access {

struct Options {
  std::string imap_listen;   // MAILGRID_IMAP_LISTEN, e.g. 0.0.0.0:143
  std::string imaps_listen;  // MAILGRID_IMAPS_LISTEN (993)
  std::string pop3_listen;   // MAILGRID_POP3_LISTEN (110)
  std::string pop3s_listen;  // MAILGRID_POP3S_LISTEN (995)
  std::string public_tls_cert;
  std::string public_tls_key;
  std::vector<std::string> identityd;
  std::string mailstored;  // shard map (libs/mailstore_client syntax)
  std::vector<std::string> tenantd;  // reserved: CheckSasl already returns the mailboxes
  std::string token_signing_key;
  std::string hostname = "localhost";
  int worker_threads = 16;
  int io_threads = 2;
  int max_connections = 20000;
  int max_connections_per_ip = 100;
  bool allow_plaintext_auth = false;  // benchmarks and tests on loopback only
  absl::Duration imap_idle_timeout = absl::Minutes(30);
  absl::Duration pop3_idle_timeout = absl::Minutes(10);
  // FetchCache (fetch_cache.h): immutable message data in MiB, and flags of
  // at most this many messages in all; 0 turns that part off.
  int fetch_cache_mb = 64;
  int flag_cache_messages = 1'000'000;
  // SelectFolder, StoreFlags, ChangesSince on gRPC's callback API
  // (async_mailstore.h); false: every call on a pool thread, as before.
  bool async_mailstore = true;
  // TLS towards identityd and mailstored: --tls-ca (MAILGRID_TLS_CA), used
  // only when this daemon's own gRPC listener has a certificate (mTLS
  // mode), which its clients then present; otherwise plain text.
  std::string tls_ca;
  rpc::ClientOptions peer_tls;  // derived in ServiceDefinition
};

void AddFlags(config::Flags& flags, Options& options);

class AccessApp final : public rpc::ServiceApp {
 public:
  static absl::StatusOr<std::unique_ptr<AccessApp>> Create(Options options);
  ~AccessApp() override;

  std::vector<grpc::Service*> Services() override { return {}; }
  absl::Status Start(const rpc::RunContext& ctx) override;
  void Drain() override;
  void Stop() override;

  int port(std::string_view listener) const { return server_ ? server_->port(listener) : 0; }

 private:
  AccessApp() = default;

  Options options_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<AccessMetrics> metrics_;
  std::unique_ptr<metrics::CertificateExpiry> cert_expiry_;
  std::unique_ptr<WatchHub> watch_hub_;
  std::unique_ptr<FetchCache> fetch_cache_;
  Shared shared_;
  std::unique_ptr<netserver::Server> server_;
};

rpc::ServiceDef ServiceDefinition();

}  // namespace mailgrid::access
