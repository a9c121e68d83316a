// The replica's Prometheus metrics (the Redpanda "probe"): one struct of
// families and children, created once on the registry the daemon exposes.
#pragma once

#include <memory>

#include "libs/raft/types.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace mailgrid::replica {

struct ReplicaMetrics {
  explicit ReplicaMetrics(prometheus::Registry& registry);

  // Sets mailgrid_raft_role{role=...} to 1 for `role`, 0 for the others.
  void SetRole(raft::Role role);

  prometheus::Gauge* term;
  prometheus::Family<prometheus::Gauge>* role_family;
  prometheus::Gauge* role_follower;
  prometheus::Gauge* role_pre_candidate;
  prometheus::Gauge* role_candidate;
  prometheus::Gauge* role_leader;
  prometheus::Gauge* commit_index;
  prometheus::Gauge* applied_index;
  prometheus::Gauge* apply_lag;
  prometheus::Gauge* disk_full;
  prometheus::Counter* proposals;
  prometheus::Counter* proposals_refused;
  prometheus::Histogram* fsync_seconds;
  prometheus::Histogram* entries_per_fsync;
  prometheus::Counter* snapshot_sends_ok;
  prometheus::Counter* snapshot_sends_failed;
  prometheus::Counter* snapshots_installed;
  prometheus::Counter* snapshot_chunks_refused;
  prometheus::Counter* elections;
  prometheus::Counter* leader_changes;
  prometheus::Counter* messages_sent;
  prometheus::Counter* messages_dropped;
  prometheus::Counter* send_failures;
  prometheus::Counter* send_streams_opened;    // SendStream calls started
  prometheus::Counter* send_stream_fallbacks;  // peers answering UNIMPLEMENTED: unary Send
  prometheus::Counter* wire_connections;       // raft wire connections opened (wire.h)
  prometheus::Counter* wire_messages_sent;     // of messages_sent, those on the wire
  prometheus::Counter* wire_connect_failures;  // attempts that failed (gRPC carries meanwhile)
  prometheus::Counter* log_compactions;

  // Where the raft-loop thread spends its time, in seconds per stage: what
  // a profile of the loop would show, always on (a few clock reads per turn).
  enum class Stage { kWait, kInbox, kApply, kPersist, kReady, kPublish, kCount };
  void AddLoopTime(Stage stage, double seconds) {
    loop_seconds[static_cast<int>(stage)]->Increment(seconds);
  }
  prometheus::Counter* loop_seconds[static_cast<int>(Stage::kCount)];
  prometheus::Counter* loop_turns;

  // Where one replicated write's time goes, on the leader, summed over the
  // writes it answered (mean = seconds / writes): queue (in the inbox until
  // the loop proposes it), then from the proposal: persist (the leader's own
  // synced append done), ack (the first follower's acknowledgement stepped),
  // commit (its Ready with the entry committed starts); apply (commit ->
  // applied), answer (applied -> the completer thread calls back).
  enum class WriteStage { kQueue, kPersist, kAck, kCommit, kApply, kAnswer, kCount };
  void AddWriteStage(WriteStage stage, double seconds) {
    write_stage_seconds[static_cast<int>(stage)]->Increment(seconds);
  }
  prometheus::Counter* write_stage_seconds[static_cast<int>(WriteStage::kCount)];
  prometheus::Counter* write_stage_writes;
};

}  // namespace mailgrid::replica
