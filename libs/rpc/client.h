// One call builds a client channel: plain or TLS/mTLS from PEM files (re-read
// while the channel lives, so a renewed certificate or CA is used by the
// next connection), a
// message size limit, keepalive, and transparent retries (UNAVAILABLE, with
// backoff) for exactly the methods the protos mark idempotent
// (`option idempotency_level = NO_SIDE_EFFECTS | IDEMPOTENT`). Writes that are
// not marked are never retried by the channel: their callers carry
// idempotency keys and decide.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace mailgrid::rpc {

struct ClientOptions {
  std::string target;  // host:port
  std::string tls_ca_file;       // set to use TLS, verifying the server against this CA
  std::string tls_cert_file;     // with tls_key_file: present a client certificate (mTLS)
  std::string tls_key_file;
  std::string tls_server_name;   // override for the name checked in the server certificate
  // How often the CA, certificate and key are re-read (tls_watch.h): new
  // connections use renewed files. Zero: read once by MakeChannel.
  absl::Duration tls_reload_interval = absl::Minutes(1);
  int max_message_bytes = 64 << 20;
  // Fully qualified services ("mailgrid.tenant.v1.TenantService") whose
  // idempotent methods get a retry policy.
  std::vector<std::string> services;
  int max_attempts = 4;
  // When no method of `services` has a retry policy, gRPC's retry filter
  // still makes transparent retries (a call the server never saw, e.g. one
  // racing a GOAWAY) but costs every call about 15 us of client CPU
  // (bench/directory grpc_floor: 0.066 -> 0.051 ms per empty call). False
  // turns it off on such channels (hot unary paths that handle UNAVAILABLE
  // themselves, such as relayd's Resolve); channels with a retry policy keep it.
  bool transparent_retries = true;
  // Reconnect backoff after a failed connection attempt. gRPC's default
  // grows to 2 minutes, far too long for a restarted peer on a LAN.
  absl::Duration min_reconnect_backoff = absl::Milliseconds(100);
  absl::Duration max_reconnect_backoff = absl::Seconds(2);
  // How long one connection attempt (TCP + TLS handshake + HTTP/2 SETTINGS)
  // may take. gRPC reads GRPC_ARG_MIN_RECONNECT_BACKOFF_MS as this floor, so
  // it is set to max(min_reconnect_backoff, connect_timeout): at 100 ms a
  // TLS handshake on a loaded machine was cancelled ("connection attempt
  // timed out before receiving SETTINGS frame"). A refused connection (a
  // restarting peer) still fails at once and is retried after
  // min_reconnect_backoff.
  absl::Duration connect_timeout = absl::Seconds(5);
  // Further integer channel arguments (GRPC_ARG_* or custom); one naming an
  // argument MakeChannel sets itself replaces it (keepalive, reconnect).
  std::vector<std::pair<std::string, int>> channel_int_args;
};

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ClientOptions& options);

// The retry service config MakeChannel installs (exposed for tests).
std::string RetryServiceConfig(const std::vector<std::string>& services, int max_attempts);

// A ClientContext with a deadline `timeout` from now.
std::unique_ptr<grpc::ClientContext> ContextWithDeadline(absl::Duration timeout);

}  // namespace mailgrid::rpc
