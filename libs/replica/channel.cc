#include "libs/replica/channel.h"

#include <atomic>

#include "grpcpp/support/channel_arguments.h"
#include "libs/rpc/client.h"

namespace mailgrid::replica {

namespace {
std::atomic<int> next_channel_id{1};
}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeReplicaChannel(const std::string& address,
                                                                  const ReplicaTls& tls,
                                                                  int keepalive_ms) {
  rpc::ClientOptions o;
  o.target = address;
  o.tls_ca_file = tls.ca_file;
  o.tls_cert_file = tls.cert_file;
  o.tls_key_file = tls.key_file;
  o.tls_server_name = tls.server_name;
  o.max_message_bytes = 64 << 20;
  // No retry policy: raft messages are not worth resending blindly (Raft
  // retransmits what matters), and KvClient retries writes itself with
  // their idempotency keys.
  o.min_reconnect_backoff = absl::Milliseconds(100);
  o.max_reconnect_backoff = absl::Seconds(1);
  // gRPC also takes GRPC_ARG_MIN_RECONNECT_BACKOFF_MS as the minimum time a
  // connection attempt (TCP + TLS handshake) may take before it is
  // cancelled ("tcp handshaker shutdown"); at 100 ms, gRPC traces on a busy
  // machine showed attempts cancelled that way. The first retry still comes
  // after 100 ms (GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS).
  o.channel_int_args = {{GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000},
                        {GRPC_ARG_KEEPALIVE_TIME_MS, keepalive_ms},
                        {GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000},
                        // A connection of its own (see channel.h): gRPC shares
                        // subchannels by address AND arguments, so a unique
                        // argument keeps this channel's apart (the effect of
                        // GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, used before).
                        {"mailgrid.replica_channel_id", next_channel_id.fetch_add(1)}};
  return rpc::MakeChannel(o);
}

}  // namespace mailgrid::replica
