// Runs the deterministic simulation over many seeds. MAILGRID_SIM_SEEDS
// sets how many (default below); MAILGRID_SIM_SEED_BASE where to start, so
// a failure found by a long bench run is replayed with
//   MAILGRID_SIM_SEED_BASE=<seed> MAILGRID_SIM_SEEDS=1 raft_sim_test
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "gtest/gtest.h"
#include "libs/raft/sim/simulation.h"

namespace mailgrid::raft::sim {
namespace {

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

struct Totals {
  uint64_t seeds = 0, ops = 0, puts = 0, gets = 0, unknown = 0, crashes = 0, snapshots = 0;
  uint64_t conf_changes = 0, transfers = 0, messages = 0, max_term = 0;
  void Add(const SimStats& s) {
    ++seeds;
    ops += s.ops;
    puts += s.puts_acked;
    gets += s.gets_ok;
    unknown += s.unknown;
    crashes += s.crashes;
    snapshots += s.snapshots_installed;
    conf_changes += s.conf_changes_applied;
    transfers += s.transfers;
    messages += s.messages;
    max_term = std::max<uint64_t>(max_term, s.max_term);
  }
  void Print(const char* name) const {
    std::printf(
        "[%s] seeds=%lu ops=%lu acked_puts=%lu reads=%lu unknown=%lu crashes=%lu "
        "snapshots_installed=%lu conf_changes=%lu transfers=%lu messages=%lu max_term=%lu\n",
        name, seeds, ops, puts, gets, unknown, crashes, snapshots, conf_changes, transfers,
        messages, max_term);
  }
};

void RunSeeds(const char* name, SimOptions base, uint64_t count) {
  const uint64_t first = EnvOr("MAILGRID_SIM_SEED_BASE", 1);
  count = std::max<uint64_t>(count, 1);
  Totals totals;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    SimOptions o = base;
    o.seed = seed;
    SimResult r = RunSimulation(o);
    totals.Add(r.stats);
    ASSERT_TRUE(r.ok()) << "[" << name << "] replay with MAILGRID_SIM_SEED_BASE=" << seed
                        << " MAILGRID_SIM_SEEDS=1\n"
                        << r.failure;
  }
  totals.Print(name);
  // The runs must actually exercise the system, not idle through it.
  EXPECT_GT(totals.puts, totals.seeds);
  EXPECT_GT(totals.gets, totals.seeds);
}

TEST(Simulation, ThreeNodes) {
  SimOptions o;
  o.nodes = 3;
  RunSeeds("3 nodes", o, EnvOr("MAILGRID_SIM_SEEDS", 2000));
}

TEST(Simulation, FiveNodes) {
  SimOptions o;
  o.nodes = 5;
  o.clients = 4;
  RunSeeds("5 nodes", o, EnvOr("MAILGRID_SIM_SEEDS", 2000) / 2);
}

TEST(Simulation, SingleNode) {
  SimOptions o;
  o.nodes = 1;
  o.membership_change_rate = 0;
  RunSeeds("1 node", o, EnvOr("MAILGRID_SIM_SEEDS", 2000) / 10);
}

// The strict driver order (every message only after the fsync), which is
// what a driver that does not split its Ready messages does.
TEST(Simulation, ThreeNodesStrictDriver) {
  SimOptions o;
  o.nodes = 3;
  o.leader_sends_early = false;
  RunSeeds("3 nodes, strict driver", o, EnvOr("MAILGRID_SIM_SEEDS", 2000) / 4);
}

// The replica's driver: a commit advance alone is not broadcast at once
// (raft::Config::defer_commit_broadcast), SendCommit after a delay.
TEST(Simulation, ThreeNodesDeferredCommitBroadcast) {
  SimOptions o;
  o.nodes = 3;
  o.defer_commit_ms = 5;
  RunSeeds("3 nodes, deferred commit broadcast", o, EnvOr("MAILGRID_SIM_SEEDS", 2000) / 4);
}

// Very lossy, slow network, frequent faults and snapshots: stresses the
// recovery paths (probing, snapshot retries, elections) rather than
// throughput.
TEST(Simulation, HarshNetwork) {
  SimOptions o;
  o.nodes = 3;
  o.drop_rate = 0.2;
  o.dup_rate = 0.1;
  o.slow_rate = 0.2;
  o.slow_max_ms = 200;
  o.fault_interval_ms = 80;
  o.snapshot_interval = 6;
  o.heal_ms = 8000;
  RunSeeds("harsh", o, EnvOr("MAILGRID_SIM_SEEDS", 2000) / 10);
}

TEST(Simulation, SameSeedSameRun) {
  SimOptions o;
  o.seed = 42;
  SimResult a = RunSimulation(o);
  SimResult b = RunSimulation(o);
  ASSERT_EQ(a.history.size(), b.history.size());
  for (size_t i = 0; i < a.history.size(); ++i) {
    EXPECT_EQ(a.history[i].value, b.history[i].value);
    EXPECT_EQ(a.history[i].invoke, b.history[i].invoke);
    EXPECT_EQ(a.history[i].ret, b.history[i].ret);
  }
  EXPECT_EQ(a.stats.messages, b.stats.messages);
}

// The harness must be able to fail: a driver that sends its acks before
// the fsync, with crashes losing the unsynced entries, breaks durability,
// and some seed must expose it.
TEST(Simulation, CatchesADriverThatAcksBeforeFsync) {
  SimOptions o;
  o.unsafe_send_before_persist = true;
  o.fsync_min_ms = 5;
  o.fsync_max_ms = 30;
  o.fault_interval_ms = 60;
  int failures = 0;
  std::string example;
  for (uint64_t seed = 1; seed <= 300 && failures == 0; ++seed) {
    o.seed = seed;
    SimResult r = RunSimulation(o);
    if (!r.ok()) {
      ++failures;
      example = r.failure;
    }
  }
  EXPECT_GT(failures, 0);
  std::printf("example failure found:\n%s\n", example.substr(0, 600).c_str());
}

}  // namespace
}  // namespace mailgrid::raft::sim
