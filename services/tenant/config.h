// tenantd's own options (beyond rpc::CommonConfig), registered on the
// shared Flags object so each is also MAILGRID_<NAME> and a config-file key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/base/config.h"

namespace mailgrid::tenant {

struct MxHost {
  std::string host;
  uint32_t priority = 10;
};

struct Options {
  // Storage: "replicated" (this process hosts a libs/replica replica) or "local".
  std::string store = "replicated";
  int raft_id = 0;
  std::string raft_peers;  // "1=host:port,2=host:port,3=host:port"
  bool raft_join = false;
  bool raft_wire = true;  // replica::ReplicaOptions::wire (the raft wire, without TLS)

  // Tokens: PEM public key files (comma list) and the expected issuer.
  std::vector<std::string> token_public_keys;
  std::string token_issuer = "mailgrid";
  absl::Duration onboarding_token_ttl = absl::Hours(24 * 30);

  // Documents.
  int64_t max_document_bytes = 20 << 20;

  // Domains and DNS.
  std::vector<std::string> mx_hosts_raw = {};  // "host:priority" items
  std::vector<MxHost> mx_hosts;                // parsed; default: cluster_hostname:10
  std::string cluster_hostname = "mail.mailgrid.test";
  std::string spf_include;   // default: _spf.<cluster_hostname>
  std::string dns_resolver;  // host:port; empty: system resolver
  absl::Duration dns_timeout = absl::Seconds(3);
  absl::Duration domain_recheck_interval = absl::Hours(1);
  std::string dkim_master_key_file;
  std::string dkim_master_key;        // hex or base64 of 32 bytes (secret)
  std::string dkim_master_key_bytes;  // resolved 32 raw bytes; empty: DKIM disabled

  // Directory (issue 5).
  std::string tls_ca;                   // peers' CA in mTLS mode (MAILGRID_TLS_CA)
  std::vector<std::string> identityd;   // identityd replicas (MAILGRID_IDENTITYD)
  std::vector<std::string> mailstored;  // mailstored shard map (MAILGRID_MAILSTORED, peers.h)
  std::vector<std::string> relayd;      // relayd instances (MAILGRID_RELAYD): welcome notices
  // Where employees sign in, for the welcome notice ("" : mail.<their domain>,
  // the CNAME the domain's generated records publish).
  std::string login_host;
  int mailstore_shards = 1;             // shards mailboxes are placed on
  std::string token_signing_key;        // PEM (Ed25519) for service tokens to peers
  // Resolve answers from this replica's in-memory index only while the
  // replica is shown current within this bound (resolve_cache.h); beyond
  // it, through the leader.
  absl::Duration resolve_max_staleness = absl::Seconds(1);
  // How often the Resolve index proves this replica current and re-reads
  // stamps while Resolve calls arrive or a directory stamp moves (idle: a quarter
  // of resolve_max_staleness). Changes made through other replicas show in
  // about this long; each round is a linearizable read at the leader.
  absl::Duration resolve_index_period = absl::Milliseconds(25);
  int64_t resolve_cache_entries = 200000;
  // The replica's RocksDB block cache (memtables, half of it, are charged
  // to it). Resolve answers from the index, not the store, and a 100k-user
  // tenant's whole store (~85 MB) sat in libs/kv's 128 MiB default after
  // the warm-up's scans; the OS page cache still holds the files.
  int64_t store_cache_mb = 32;
  absl::Duration user_grace_period = absl::Hours(24 * 30);
};

void AddFlags(config::Flags& flags, Options& options);

// Parses the raw values (MX list, master key) after flags are read.
absl::Status Finish(Options& options);

}  // namespace mailgrid::tenant
