#include "libs/replica/replica_flags.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/base/log.h"
#include "libs/base/net.h"
#include "libs/base/status.h"

namespace mailgrid::replica {

void AddRaftFlags(config::Flags& flags, RaftFlags* r) {
  flags.Int64("raft-id", &r->id, "this replica's Raft node id (> 0, never reused)");
  flags.String("raft-peers", &r->peers,
               "the group's voters as id=host:port,... (this replica included)");
  flags.Bool("raft-join", &r->join,
             "start empty and wait to be added by the leader (a new or replacement member)");
  flags.String("raft-group", &r->group, "the Raft group (shard) name; peers must agree");
  flags.String("raft-advertise", &r->advertise,
               "address peers reach this replica at (default: its entry in --raft-peers)");
  flags.Duration("raft-tick", &r->tick, "Raft tick interval (heartbeat = 1 tick)");
  flags.Int("raft-election-tick", &r->election_tick, "ticks without a leader before an election");
  flags.Int64("raft-compact-entries", &r->compact_entries,
              "compact the Raft log when it holds more applied entries than this");
  flags.Int64("raft-compact-keep", &r->compact_keep,
              "entries kept after a compaction (followers lagging less need no snapshot)");
  flags.Int64("raft-compact-bytes", &r->compact_bytes,
              "also compact the Raft log when its applied entries take more bytes than this "
              "(keeps about a quarter of it; 0: no byte limit)");
  flags.Int64("raft-snapshot-chunk-bytes", &r->snapshot_chunk_bytes,
              "bytes per snapshot chunk sent to a follower");
  flags.String("raft-tls-ca", &r->tls_ca,
               "PEM CA the other replicas' certificates must chain to (default: --tls-client-ca, "
               "then $MAILGRID_TLS_CA); used when the gRPC listener has --tls-cert");
  flags.Bool("raft-pipeline", &r->pipeline,
             "send appends before the leader's own fsync and answer writers off the raft loop "
             "(false: the strict persist-send-apply order, for comparison)");
  flags.Duration("raft-commit-delay", &r->commit_delay,
                 "a leader tells the followers a new commit index at most this late when no "
                 "append carries it sooner (0: at once; heartbeats carry it every tick anyway)");
  flags.Bool("raft-send-stream", &r->send_stream,
             "send to each peer on one long-lived SendStream call (false: one unary Send call "
             "per batch of messages, as before; for comparison)");
  flags.Bool("raft-raise-format", &r->raise_format,
             "as leader, raise the group's state-machine format to this binary's once every "
             "member announced it applies it (false: only by hand, mailctl raft set-format)");
  flags.String("raft-tls-server-name", &r->tls_server_name,
               "name checked in the other replicas' certificates instead of their host");
  flags.Bool("raft-wire", &r->wire,
             "also carry raft messages between replicas over plain TCP (the raft wire: fewer "
             "thread hand-offs than gRPC; gRPC remains the fallback). Off with TLS between "
             "replicas, which the wire does not have yet");
  flags.Int64("raft-wire-port", &r->wire_port,
              "the raft wire's port on the --listen host (0: any free port; peers learn it "
              "from this replica's messages)");
}

absl::StatusOr<std::map<raft::NodeId, std::string>> ParsePeers(const std::string& peers) {
  std::map<raft::NodeId, std::string> out;
  for (absl::string_view part : absl::StrSplit(peers, ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(part, absl::MaxSplits('=', 1));
    uint64_t id = 0;
    if (!absl::SimpleAtoi(kv.first, &id) || id == 0 || kv.second.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--raft-peers: '", part, "' is not id=host:port with id > 0"));
    }
    auto hp = net::ParseHostPort(std::string(kv.second));
    if (!hp.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--raft-peers: ", part, ": ", hp.status().message()));
    }
    if (!out.emplace(id, std::string(kv.second)).second) {
      return absl::InvalidArgumentError(absl::StrCat("--raft-peers: id ", id, " listed twice"));
    }
  }
  return out;
}

absl::StatusOr<ReplicaOptions> MakeReplicaOptions(const RaftFlags& r,
                                                  const rpc::CommonConfig& common,
                                                  std::shared_ptr<prometheus::Registry> registry) {
  if (r.id <= 0) return absl::InvalidArgumentError("--raft-id: required (> 0)");
  if (common.data_dir.empty())
    return absl::InvalidArgumentError("--data-dir: required for a replica");
  ASSIGN_OR_RETURN(auto peers, ParsePeers(r.peers));
  ReplicaOptions o;
  o.id = static_cast<raft::NodeId>(r.id);
  o.group_id = r.group;
  o.peers = std::move(peers);
  o.join = r.join;
  o.advertise_address = r.advertise;
  if (o.advertise_address.empty()) {
    auto it = o.peers.find(o.id);
    if (it == o.peers.end()) {
      return absl::InvalidArgumentError(absl::StrCat("--raft-peers: must list this replica (", o.id,
                                                     "=host:port) or give --raft-advertise"));
    }
    o.advertise_address = it->second;
  }
  ASSIGN_OR_RETURN(net::HostPort listen, net::ParseHostPort(common.listen));
  ASSIGN_OR_RETURN(net::HostPort advertised, net::ParseHostPort(o.advertise_address));
  if (listen.port != advertised.port) {
    return absl::InvalidArgumentError(absl::StrCat("--listen: port ", listen.port,
                                                   " differs from this replica's address ",
                                                   o.advertise_address));
  }
  o.data_dir = common.data_dir;
  o.tick_interval = r.tick;
  o.election_tick = r.election_tick;
  if (r.compact_entries <= r.compact_keep || r.compact_keep < 0) {
    return absl::InvalidArgumentError("--raft-compact-keep: must be below --raft-compact-entries");
  }
  o.compact_log_entries = static_cast<uint64_t>(r.compact_entries);
  o.compact_keep_entries = static_cast<uint64_t>(r.compact_keep);
  if (r.compact_bytes != 0 && r.compact_bytes < (1 << 20)) {
    return absl::InvalidArgumentError("--raft-compact-bytes: 0 (off) or at least 1 MiB");
  }
  o.compact_log_bytes = static_cast<uint64_t>(r.compact_bytes);
  if (r.snapshot_chunk_bytes < 1024) {
    return absl::InvalidArgumentError("--raft-snapshot-chunk-bytes: at least 1024");
  }
  o.snapshot_chunk_bytes = static_cast<uint64_t>(r.snapshot_chunk_bytes);
  ASSIGN_OR_RETURN(o.peer_tls, PeerTls(common, r.tls_ca, r.tls_server_name));
  o.pipeline = r.pipeline;
  // (A delay beyond a tick is harmless: heartbeats carry the commit index.)
  if (r.commit_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--raft-commit-delay: 0 (at once) or more");
  }
  o.commit_broadcast_delay = r.commit_delay;
  o.send_stream = r.send_stream;
  o.raise_format = r.raise_format;
  if (r.wire_port < 0 || r.wire_port > 65535) {
    return absl::InvalidArgumentError("--raft-wire-port: 0 (any free port) to 65535");
  }
  o.wire = r.wire && !o.peer_tls.enabled();
  o.wire_host = listen.host;
  o.wire_port = static_cast<int>(r.wire_port);
  o.registry = std::move(registry);
  return o;
}

absl::StatusOr<ReplicaTls> PeerTls(const rpc::CommonConfig& common, const std::string& raft_tls_ca,
                                    const std::string& server_name) {
  ReplicaTls tls;
  if (common.tls_cert.empty()) {
    if (!raft_tls_ca.empty())
      return absl::InvalidArgumentError(
          "--raft-tls-ca: needs --tls-cert and --tls-key (replicas reach each other on the gRPC "
          "listener, which is plain text without them)");
    return tls;
  }
  tls.ca_file = raft_tls_ca;
  if (tls.ca_file.empty()) tls.ca_file = common.tls_client_ca;
  if (tls.ca_file.empty()) {
    const char* env = std::getenv("MAILGRID_TLS_CA");
    if (env != nullptr) tls.ca_file = env;
  }
  if (tls.ca_file.empty())
    return absl::InvalidArgumentError(
        "--raft-tls-ca: the gRPC listener uses TLS (--tls-cert), so the replicas need a CA "
        "to verify each other (--raft-tls-ca, --tls-client-ca or MAILGRID_TLS_CA)");
  tls.cert_file = common.tls_cert;
  tls.key_file = common.tls_key;
  tls.server_name = server_name;
  return tls;
}

absl::StatusOr<std::unique_ptr<ReplicaServer>> ReplicaServer::Open(ReplicaOptions options) {
  ASSIGN_OR_RETURN(std::unique_ptr<Replica> r, Replica::Open(std::move(options)));
  return std::unique_ptr<ReplicaServer>(new ReplicaServer(std::move(r)));
}

void ReplicaServer::Drain() {
  if (!replica_->IsLeader()) return;
  ReplicaStatus st = replica_->Status();
  raft::NodeId best = raft::kNoNode;
  raft::Index best_match = 0;
  for (const raft::PeerProgress& p : st.progress) {
    if (p.id == st.id || p.learner || !p.recent_active) continue;
    if (best == raft::kNoNode || p.match > best_match) {
      best = p.id;
      best_match = p.match;
    }
  }
  if (best == raft::kNoNode) return;
  absl::Status s = replica_->TransferLeadership(best, absl::Now() + absl::Seconds(5));
  log::Info("raft: leadership handed over for shutdown", {{"target", best}, {"result", s}});
}

}  // namespace mailgrid::replica
