#include "services/mailstore/config.h"

#include "absl/strings/str_cat.h"

namespace mailgrid::mailstore {

void AddFlags(config::Flags& f, Options& o) {
  f.String("store", &o.store,
           "replicated (this process is a replica of the shard's Raft group, --raft-*) or local "
           "(one unreplicated RocksDB in --data-dir, for tests)");
  f.Int("shard", &o.shard, "the shard this process serves (its Raft group is --raft-peers)");
  replica::AddRaftFlags(f, &o.raft);
  f.String("tls-ca", &o.tls_ca,
           "the cluster CA (PEM) for replica-to-replica TLS when --raft-tls-ca is not given "
           "(used only when the listener has TLS: mTLS mode)");
  f.StringList("token-public-key", &o.token_public_keys,
               "PEM files of the Ed25519 public keys that verify access tokens (comma list)");
  f.String("token-issuer", &o.token_issuer, "the issuer (iss) access tokens must carry");
  f.Int64("max-message-bytes", &o.max_message_bytes, "largest message accepted (TOO_LARGE)");
  f.Int("max-mime-parts", &o.max_parts, "most MIME parts in a message (TOO_MANY_PARTS)");
  f.Int("max-mime-depth", &o.max_depth, "deepest MIME nesting (TOO_DEEP)");
  f.Int64("max-header-line-bytes", &o.max_header_line_bytes,
          "longest header line of a message (HEADER_TOO_LONG)");
  f.Int64("feed-keep", &o.feed_keep, "change-feed events kept per mailbox (Watch resume window)");
  f.Duration("archive-interval", &o.archive_interval, "how often archive jobs advance a batch");
  f.Duration("retention-interval", &o.retention_interval, "how often retention rules run");
  f.Duration("watch-heartbeat", &o.heartbeat_interval, "HEARTBEAT period of Watch streams");
  f.Bool("combine-appends", &o.combine_appends,
         "concurrent appends and deliveries to one mailbox share one replicated write (group UID "
         "allocation); false: one write each (for comparison)");
  f.Int64("block-cache-mb", &o.block_cache_mb,
          "the replica's RocksDB block cache in MiB, memtables included (0: libs/kv's default)");
  f.Bool("deferred-index", &o.deferred_index,
         "folders created from now on keep their search postings as per-term UID blocks that the "
         "leader's background indexer writes in batches, off the delivery's write (search stays "
         "complete: unindexed messages are matched from their stored terms); false: one posting "
         "per term per message in the delivery's write");
  f.Duration("index-interval", &o.index_interval,
             "with --deferred-index: the leader's indexer's pause between rounds when it has no "
             "backlog (1ms to 1m; a backlog is indexed back to back)");
  f.String("reads", &o.reads, "leader reads: local (applied state) or linearizable (ReadIndex)");
}

absl::Status Finish(Options& o) {
  if (o.store != "local" && o.store != "replicated")
    return absl::InvalidArgumentError("--store: must be local or replicated");
  if (o.shard < 0) return absl::InvalidArgumentError("--shard: must be >= 0");
  if (o.reads != "local" && o.reads != "linearizable")
    return absl::InvalidArgumentError("--reads: must be local or linearizable");
  if (o.max_message_bytes <= 0 || o.max_message_bytes > (1LL << 30))
    return absl::InvalidArgumentError("--max-message-bytes: 1 byte to 1 GiB");
  if (o.max_parts < 1 || o.max_depth < 1 || o.max_depth > 128)
    return absl::InvalidArgumentError("--max-mime-parts/--max-mime-depth: out of range");
  if (o.block_cache_mb < 0 || o.block_cache_mb > (1 << 20))
    return absl::InvalidArgumentError("--block-cache-mb: 0 to 1048576");
  if (o.feed_keep < 100) return absl::InvalidArgumentError("--feed-keep: at least 100");
  if (o.index_interval < absl::Milliseconds(1) || o.index_interval > absl::Minutes(1))
    return absl::InvalidArgumentError("--index-interval: 1ms to 1m");
  if (o.raft.group == "default") o.raft.group = absl::StrCat("mailstore-", o.shard);
  return absl::OkStatus();
}

}  // namespace mailgrid::mailstore
