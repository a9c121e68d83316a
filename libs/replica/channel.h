// Channels to replicas (peer to peer, and KvClient to a group), built with
// rpc::MakeChannel: plain text, or TLS / mTLS when a CA is given.
//
// On top of rpc::MakeChannel's defaults: a replica that is killed and
// restarted must be reachable again within a heartbeat or two, so the
// reconnect backoff is capped at one second (while a connection attempt,
// TLS handshake included, may take 5 s); keepalive notices a dead peer in
// seconds; and every channel gets its own connection, so a snapshot stream
// never shares a TCP connection's flow control with another member's
// heartbeats, even inside one test process.
//
// Callers drop a channel whose call failed UNAVAILABLE and make a new one
// (Transport, KvClient, replicactl): with TLS, a gRPC 1.51 channel whose
// first attempt found the replica down kept failing its handshakes
// ("Handshake read failed") after the replica came up, while a new channel
// connected at once. Not understood further; plain text is not affected.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"

namespace mailgrid::replica {

// TLS towards replicas. Replicas talk to each other on their gRPC listener,
// so when that listener is TLS (--tls-cert) the peers' channels must be too;
// with --tls-client-ca on the listeners (mTLS) each replica must present a
// certificate from that CA, normally its own listener certificate.
struct ReplicaTls {
  std::string ca_file;      // verify the replicas' certificates; set = TLS on
  std::string cert_file;    // with key_file: our client certificate (mTLS)
  std::string key_file;
  std::string server_name;  // name checked in the certificates instead of the host
  bool enabled() const { return !ca_file.empty(); }
};

// InvalidArgument if a TLS file cannot be read. `keepalive_ms`: the ping
// interval while calls are open (a long-lived stream whose server sends
// nothing must ping less often than every 5 minutes, see transport.cc).
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeReplicaChannel(const std::string& address,
                                                                  const ReplicaTls& tls = {},
                                                                  int keepalive_ms = 10000);

}  // namespace mailgrid::replica
