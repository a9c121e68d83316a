// Internal to the simulation: the event loop, the simulated network, the
// per-node driver, clients and the fault/operator schedule. Split by topic:
//   simulation.cc  event loop, driver (Ready handling), invariants
//   sim_clients.cc client operations and their history
//   sim_faults.cc  partitions, crashes, restarts, membership, liveness
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "libs/raft/raw_node.h"
#include "libs/raft/sim/kv_machine.h"
#include "libs/raft/sim/rng.h"
#include "libs/raft/sim/simulation.h"
#include "libs/raft/storage.h"

namespace mailgrid::raft::sim {

// A message on the wire. Snapshot data rides beside a kSnapshot message,
// as the real transport streams the checkpoint out of band.
struct InFlight {
  int64_t at = 0;
  uint64_t seq = 0;
  uint64_t to_incarnation = 0;  // a crash loses what was in flight to it
  Message msg;
  std::shared_ptr<const KvState> snapshot_data;
};

struct PendingPut {
  int op = 0;
  Term term = 0;
};

struct PendingRead {
  int op = 0;
  std::optional<Index> index;  // set once the ReadState arrives
};

struct SimNode {
  NodeId id = kNoNode;
  bool up = false;
  bool removed = false;  // taken out of the group for good
  uint64_t incarnation = 0;
  // Durable: survives crashes.
  MemoryStorage storage;
  std::map<Index, std::shared_ptr<const KvState>> snapshots;
  // Volatile.
  std::unique_ptr<RawNode> raw;
  KvState kv;
  bool persisting = false;  // a Ready is being fsync'd
  bool commit_send_scheduled = false;  // SimOptions::defer_commit_ms
  Ready ready;
  std::map<Index, std::shared_ptr<const KvState>> staged;  // received snapshot data
  std::map<Index, PendingPut> puts;                        // by log index
  std::map<std::string, PendingRead> reads;                // by ReadIndex ctx
};

struct Client {
  int id = 0;
  bool busy = false;
  int op = -1;
  NodeId node = kNoNode;  // where the current op waits
  NodeId target = kNoNode;
  uint64_t seq = 0;
};

enum class OpState { kPending, kDone, kFailed, kUnknown };

class Simulation {
 public:
  explicit Simulation(const SimOptions& options);
  SimResult Run();

 private:
  // ----- simulation.cc -----
  void Schedule(int64_t at, std::function<void()> fn);
  bool RunOne();
  void AddNode(NodeId id, const std::vector<NodeId>& bootstrap);
  void StartNode(SimNode& n);
  void CrashNode(SimNode& n);
  void OnInput(SimNode& n);
  void MaybeStartReady(SimNode& n);
  void FinishReady(NodeId id, uint64_t incarnation);
  void Persist(SimNode& n, const Ready& rd);
  void InstallSnapshot(SimNode& n, const SnapshotMeta& meta);
  void ApplyCommitted(SimNode& n, const std::vector<Entry>& entries);
  void MaybeCompact(SimNode& n);
  void SendAll(SimNode& n, std::vector<Message> msgs);
  void NetSend(Message m, std::shared_ptr<const KvState> data);
  void ReportSnapshotLater(NodeId from, NodeId to, bool ok);
  void Deliver(InFlight f);
  void TickNode(NodeId id);
  void CheckLeader(SimNode& n);
  void CheckApplied(const SimNode& n, const Entry& e, uint64_t hash);
  void CheckDurableLogsAgree();
  void Fail(const std::string& why);
  SimNode* Find(NodeId id);
  SimNode* CurrentLeader();
  std::string DescribeNodes();

  // ----- sim_clients.cc -----
  void ClientWake(int c);
  void StartPut(Client& cl, SimNode& n);
  void StartGet(Client& cl, SimNode& n);
  int Record(testing::KvOp op);
  void Finish(int op, OpState state);
  void OnPutApplied(SimNode& n, const Entry& e);
  void OnReadState(SimNode& n, const ReadState& rs);
  void CompleteReads(SimNode& n);
  void TimeoutOp(int c, int op);
  void AbandonOps(SimNode& n);
  NodeId RandomNodeId();
  SimResult Finalize();

  // ----- sim_faults.cc -----
  void FaultWake();
  void Partition();
  void TransferLeader();
  void OperatorWake();
  void EndChaos();
  void LivenessCheck();

  SimOptions o_;
  Rng rng_;
  int64_t now_ = 0;
  uint64_t seq_ = 0;
  bool failed_ = false;
  bool done_ = false;
  std::string failure_;
  SimStats stats_;

  struct Event {
    int64_t at;
    uint64_t seq;
    std::function<void()> fn;
  };
  std::vector<Event> events_;   // min-heap by (at, seq)
  std::vector<InFlight> wire_;  // min-heap by (at, seq)

  std::map<NodeId, std::unique_ptr<SimNode>> nodes_;
  std::set<std::pair<NodeId, NodeId>> blocked_;  // (from, to)
  bool chaos_ = true;

  // Invariant state.
  std::map<Term, NodeId> leaders_;      // election safety
  std::vector<uint64_t> applied_hash_;  // by index: running hash (0 = unknown)

  // Clients and history.
  std::vector<Client> clients_;
  std::vector<testing::KvOp> history_;
  std::vector<OpState> op_state_;

  // Operator replacing a replica.
  int op_stage_ = 0;  // 0 idle, 1 add learner, 2 promote, 3 remove, 4 done
  NodeId old_node_ = kNoNode;
  NodeId new_node_ = kNoNode;

  // Liveness after the faults stop.
  int64_t heal_start_ = -1;
  Index live_index_ = 0;
};

}  // namespace mailgrid::raft::sim
