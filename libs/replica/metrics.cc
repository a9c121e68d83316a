#include "libs/replica/metrics.h"

#include <vector>

#include "libs/metrics/metrics.h"

namespace mailgrid::replica {
namespace {

prometheus::Gauge* Gauge(prometheus::Registry& r, const char* name, const char* help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

prometheus::Counter* Counter(prometheus::Registry& r, const char* name, const char* help,
                             const prometheus::Labels& labels = {}) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(r).Add(labels);
}

}  // namespace

ReplicaMetrics::ReplicaMetrics(prometheus::Registry& r) {
  term = Gauge(r, "mailgrid_raft_term", "Current Raft term of this replica");
  role_family = &prometheus::BuildGauge()
                     .Name("mailgrid_raft_role")
                     .Help("1 for the role this replica is in, 0 for the others")
                     .Register(r);
  role_follower = &role_family->Add({{"role", "follower"}});
  role_pre_candidate = &role_family->Add({{"role", "pre_candidate"}});
  role_candidate = &role_family->Add({{"role", "candidate"}});
  role_leader = &role_family->Add({{"role", "leader"}});
  commit_index = Gauge(r, "mailgrid_raft_commit_index", "Highest log index known committed");
  applied_index = Gauge(r, "mailgrid_raft_applied_index", "Highest log index applied");
  apply_lag = Gauge(r, "mailgrid_raft_apply_lag", "Committed entries not yet applied");
  disk_full = Gauge(r, "mailgrid_raft_disk_full", "1 while writes are refused for a full disk");
  proposals = Counter(r, "mailgrid_raft_proposals_total", "Writes proposed to the Raft log");
  proposals_refused = Counter(r, "mailgrid_raft_proposals_refused_total",
                              "Writes refused before proposing (not leader, disk full)");
  // Group commit shows as many entries per fsync under concurrency.
  fsync_seconds = &prometheus::BuildHistogram()
                       .Name("mailgrid_raft_fsync_seconds")
                       .Help("Duration of one synced Raft log write (one per Ready)")
                       .Register(r)
                       .Add({}, metrics::LatencyBuckets());
  entries_per_fsync = &prometheus::BuildHistogram()
                           .Name("mailgrid_raft_entries_per_fsync")
                           .Help("Log entries made durable by one fsync (group commit)")
                           .Register(r)
                           .Add({}, prometheus::Histogram::BucketBoundaries{
                                        0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024});
  auto& sends = prometheus::BuildCounter()
                    .Name("mailgrid_raft_snapshot_sends_total")
                    .Help("Snapshots streamed to a follower, by result")
                    .Register(r);
  snapshot_sends_ok = &sends.Add({{"result", "ok"}});
  snapshot_sends_failed = &sends.Add({{"result", "failed"}});
  snapshots_installed = Counter(r, "mailgrid_raft_snapshots_installed_total",
                                "Snapshots received, verified and installed");
  snapshot_chunks_refused = Counter(r, "mailgrid_raft_snapshot_chunks_refused_total",
                                    "Snapshot chunks or files refused for a checksum mismatch");
  elections = Counter(r, "mailgrid_raft_elections_total", "Elections this replica started");
  leader_changes = Counter(r, "mailgrid_raft_leader_changes_total",
                           "Times the leader known to this replica changed");
  messages_sent = Counter(r, "mailgrid_raft_messages_sent_total", "Raft messages sent to peers");
  messages_dropped = Counter(r, "mailgrid_raft_messages_dropped_total",
                             "Raft messages dropped (peer queue full, peer unreachable)");
  send_failures = Counter(r, "mailgrid_raft_send_failures_total", "Failed Send RPCs to peers");
  send_streams_opened = Counter(r, "mailgrid_raft_send_streams_opened_total",
                                "SendStream calls opened to peers (one per connection)");
  send_stream_fallbacks =
      Counter(r, "mailgrid_raft_send_stream_fallbacks_total",
              "Peers without SendStream (UNIMPLEMENTED), sent to with unary Send calls");
  wire_connections = Counter(r, "mailgrid_raft_wire_connections_total",
                             "Raft wire connections opened to peers (plain TCP beside gRPC)");
  wire_messages_sent =
      Counter(r, "mailgrid_raft_wire_messages_sent_total",
              "Raft messages sent over the raft wire (also counted in messages_sent_total)");
  wire_connect_failures =
      Counter(r, "mailgrid_raft_wire_connect_failures_total",
              "Raft wire connection attempts that failed (gRPC carries the messages meanwhile)");
  log_compactions = Counter(r, "mailgrid_raft_log_compactions_total", "Raft log compactions");
  auto& loop = prometheus::BuildCounter()
                   .Name("mailgrid_raft_loop_seconds_total")
                   .Help("Time the raft-loop thread spent per stage: wait (idle, waiting for "
                         "work), inbox (stepping messages and proposals), apply (state machine), "
                         "persist (the synced log write), ready (the rest of a Ready), publish")
                   .Register(r);
  const char* stages[] = {"wait", "inbox", "apply", "persist", "ready", "publish"};
  for (int i = 0; i < static_cast<int>(Stage::kCount); ++i) {
    loop_seconds[i] = &loop.Add({{"stage", stages[i]}});
  }
  loop_turns = Counter(r, "mailgrid_raft_loop_turns_total", "Iterations of the raft loop");
  auto& write = prometheus::BuildCounter()
                    .Name("mailgrid_raft_write_stage_seconds_total")
                    .Help("Leader: seconds of the writes it answered, by stage: queue (inbox), "
                          "then since the proposal: persist (own append synced), ack (first "
                          "follower ack), commit (committed); apply, answer (completer)")
                    .Register(r);
  const char* write_stages[] = {"queue", "persist", "ack", "commit", "apply", "answer"};
  for (int i = 0; i < static_cast<int>(WriteStage::kCount); ++i) {
    write_stage_seconds[i] = &write.Add({{"stage", write_stages[i]}});
  }
  write_stage_writes = Counter(r, "mailgrid_raft_write_stage_writes_total",
                               "Writes counted in mailgrid_raft_write_stage_seconds_total");
  SetRole(raft::Role::kFollower);
}

void ReplicaMetrics::SetRole(raft::Role role) {
  role_follower->Set(role == raft::Role::kFollower ? 1 : 0);
  role_pre_candidate->Set(role == raft::Role::kPreCandidate ? 1 : 0);
  role_candidate->Set(role == raft::Role::kCandidate ? 1 : 0);
  role_leader->Set(role == raft::Role::kLeader ? 1 : 0);
}

}  // namespace mailgrid::replica
