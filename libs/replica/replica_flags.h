// The command-line face of a replica, shared by every daemon that embeds one
// (replicad, tenantd, identityd, mailstored): the --raft-* options (also
// MAILGRID_RAFT_* in the environment, through config::Flags) and the bundle
// of Replica + KvService + RaftService a daemon serves.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/impl/codegen/service_type.h"
#include "libs/base/config.h"
#include "libs/replica/kv_service.h"
#include "libs/replica/raft_service.h"
#include "libs/replica/replica.h"
#include "libs/rpc/service_main.h"

namespace mailgrid::replica {

struct RaftFlags {
  int64_t id = 0;
  std::string peers;  // "1=host:port,2=host:port,3=host:port"
  bool join = false;
  std::string group = "default";
  std::string advertise;  // default: this id's address in peers
  absl::Duration tick = absl::Milliseconds(100);
  int election_tick = 10;
  int64_t compact_entries = 20000;
  int64_t compact_keep = 5000;
  int64_t compact_bytes = 64ll << 20;  // 0: no byte limit
  int64_t snapshot_chunk_bytes = 1 << 20;
  // TLS between replicas (see MakeReplicaOptions).
  std::string tls_ca;
  std::string tls_server_name;
  bool pipeline = true;  // ReplicaOptions::pipeline
  absl::Duration commit_delay = absl::Milliseconds(5);  // ReplicaOptions::commit_broadcast_delay
  bool send_stream = true;  // ReplicaOptions::send_stream
  bool raise_format = true;  // ReplicaOptions::raise_format
  bool wire = true;          // ReplicaOptions::wire (without TLS between replicas)
  int64_t wire_port = 0;     // ReplicaOptions::wire_port (0: any free port)
};

void AddRaftFlags(config::Flags& flags, RaftFlags* raft);

// "1=a:1,2=b:2" -> {1: "a:1", 2: "b:2"}; errors name the bad entry.
absl::StatusOr<std::map<raft::NodeId, std::string>> ParsePeers(const std::string& peers);

// Checks the flags against each other and the common config (the gRPC
// listener must be on this replica's advertised port).
//
// TLS: replicas reach each other on their gRPC listeners, so when the
// listener is TLS (--tls-cert/--tls-key) the channels to the peers are TLS
// too, presenting that same certificate (so --tls-client-ca, mTLS, works
// between replicas) and verifying the peers against --raft-tls-ca, or else
// --tls-client-ca, or else $MAILGRID_TLS_CA (the cluster CA the launcher and
// the chart set). A TLS listener without any of these is an error.
absl::StatusOr<ReplicaOptions> MakeReplicaOptions(const RaftFlags& raft,
                                                  const rpc::CommonConfig& common,
                                                  std::shared_ptr<prometheus::Registry> registry);

// Just the TLS part of that rule, for daemons that build their
// ReplicaOptions themselves (tenantd) and for the ClientStore over the same
// listeners. Empty (plain text) when the listener is plain.
absl::StatusOr<ReplicaTls> PeerTls(const rpc::CommonConfig& common, const std::string& raft_tls_ca,
                                    const std::string& server_name);

// A Replica with the gRPC services over it: what a daemon serves.
class ReplicaServer {
 public:
  static absl::StatusOr<std::unique_ptr<ReplicaServer>> Open(ReplicaOptions options);

  // KvService and RaftService (owned here).
  std::vector<grpc::Service*> Services() { return {&kv_, &raft_}; }
  Replica& replica() { return *replica_; }

  absl::Status Start() { return replica_->Start(); }
  // Graceful step 1: a leader hands leadership to the most caught-up voter
  // so that the group does not wait out an election timeout.
  void Drain();
  void Stop() { replica_->Stop(); }

 private:
  explicit ReplicaServer(std::unique_ptr<Replica> r)
      : replica_(std::move(r)), kv_(replica_.get()), raft_(replica_.get()) {}

  std::unique_ptr<Replica> replica_;
  KvServiceImpl kv_;
  RaftServiceImpl raft_;
};

}  // namespace mailgrid::replica
