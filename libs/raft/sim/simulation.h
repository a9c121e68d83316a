// Deterministic simulation of a Raft group: N RawNodes over MemoryStorage
// in one thread, a simulated clock and network, seeded randomness.
//
// The network loses, duplicates, delays and reorders messages and is
// partitioned at random (also one-way). Nodes crash and restart; a crash
// loses everything the simulated driver had not yet persisted (a Ready is
// durable only when its simulated fsync completes) and every message in
// flight to the node. Clients put unique values and read with ReadIndex
// against a replicated key-value map; their histories (timeouts as unknown
// outcomes) are checked for linearizability. Optionally an operator
// replaces one replica (learner, promote, remove the old one).
//
// Checked during and after each run: at most one leader per term; no
// applied entry ever differs between replicas (a running hash per index);
// each replica applies a gap-free prefix of the same sequence; terms and
// commit indexes never go back on disk; linearizability; and liveness:
// once the faults stop, a leader is elected and a new write commits and is
// applied by every live member.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "libs/raft/testing/linearizability.h"

namespace mailgrid::raft::sim {

struct SimOptions {
  uint64_t seed = 1;
  int nodes = 3;
  int clients = 3;
  int keys = 3;
  int64_t tick_ms = 10;
  int election_tick = 10;
  int64_t chaos_ms = 2000;  // faults happen during this phase
  int64_t heal_ms = 5000;   // then the cluster must recover within this
  // Network.
  double drop_rate = 0.05;
  double dup_rate = 0.02;
  int64_t delay_min_ms = 1;
  int64_t delay_max_ms = 8;
  double slow_rate = 0.05;  // a message takes up to slow_max_ms
  int64_t slow_max_ms = 80;
  // Simulated fsync latency of the driver.
  int64_t fsync_min_ms = 1;
  int64_t fsync_max_ms = 4;
  // Mean time between faults (partition, heal, crash, restart).
  int64_t fault_interval_ms = 150;
  // Replace one replica during the run (with this probability).
  double membership_change_rate = 0.3;
  // Snapshot and compact the log every this many applied entries.
  int snapshot_interval = 25;
  int64_t op_timeout_ms = 500;
  // Fault injection to prove the harness catches broken drivers: send a
  // Ready's messages BEFORE persisting it (acks can then be lost).
  bool unsafe_send_before_persist = false;
  // The real driver's optimisation: a leader's appends and heartbeats go
  // out before its own fsync (raft::MaySendBeforePersist).
  bool leader_sends_early = true;
  // >= 0: Config::defer_commit_broadcast, and the driver calls SendCommit
  // this many ms after a commit is owed (what the replica loop does).
  int64_t defer_commit_ms = -1;
};

struct SimStats {
  int ops = 0;         // operations in the history
  int puts_acked = 0;  // puts with a known success
  int gets_ok = 0;
  int unknown = 0;  // puts whose outcome is unknown
  int crashes = 0;
  int partitions = 0;
  int snapshots_installed = 0;
  int conf_changes_applied = 0;  // on the leader that proposed them
  int transfers = 0;             // leadership transfers started
  uint64_t max_term = 0;
  uint64_t messages = 0;
  uint64_t committed = 0;  // highest index any replica applied
};

struct SimResult {
  std::string failure;  // empty when every check passed
  SimStats stats;
  std::vector<testing::KvOp> history;
  bool ok() const { return failure.empty(); }
};

SimResult RunSimulation(const SimOptions& options);

}  // namespace mailgrid::raft::sim
