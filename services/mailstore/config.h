// mailstored's options (beyond rpc::CommonConfig), each also MAILGRID_<NAME>.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "libs/base/config.h"
#include "libs/replica/replica_flags.h"

namespace mailgrid::mailstore {

struct Options {
  std::string store = "replicated";  // or "local" (one unreplicated RocksDB; tests)
  int shard = 0;
  replica::RaftFlags raft;
  std::string tls_ca;  // fallback for --raft-tls-ca (MAILGRID_TLS_CA)
  std::vector<std::string> token_public_keys;
  std::string token_issuer = "mailgrid";
  int64_t max_message_bytes = 50 << 20;
  int max_parts = 10000;
  int max_depth = 32;
  int64_t max_header_line_bytes = 64 << 10;
  int64_t feed_keep = 100000;
  absl::Duration archive_interval = absl::Seconds(2);
  absl::Duration retention_interval = absl::Hours(1);
  absl::Duration heartbeat_interval = absl::Seconds(30);
  // Reads on the leader: "local" (its applied state; every acknowledged
  // write is there) or "linearizable" (ReadIndex round per read).
  std::string reads = "local";
  // Concurrent appends/deliveries to one mailbox share one write.
  bool combine_appends = true;
  // The replica's RocksDB block cache (memtables are charged to it); 0 =
  // libs/kv's default. A large folder's index and filter blocks must fit.
  int64_t block_cache_mb = 0;
  // New folders keep search postings as per-term UID blocks written by the
  // leader's background indexer, off the delivery's write (StoreOptions.deferred_index).
  bool deferred_index = true;
  // The indexer's pause between rounds when there is no backlog
  // (StoreOptions.index_interval): how long a delivery waits to reach the
  // blocks. Search is complete either way; a backlog is indexed back to back.
  absl::Duration index_interval = absl::Milliseconds(200);
};

void AddFlags(config::Flags& flags, Options& options);
absl::Status Finish(Options& options);

}  // namespace mailgrid::mailstore
