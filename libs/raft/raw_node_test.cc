// The RawNode / Ready contract, exercised directly (no test network).
#include "libs/raft/raw_node.h"

#include <memory>

#include "gtest/gtest.h"
#include "libs/raft/storage.h"

namespace mailgrid::raft {
namespace {

Config Cfg(NodeId id) {
  Config c;
  c.id = id;
  c.random = [](uint64_t n) { return n / 2; };
  return c;
}

void Persist(MemoryStorage& s, const Ready& rd) {
  if (rd.snapshot) {
    ASSERT_TRUE(s.ApplySnapshot(*rd.snapshot).ok());
  }
  ASSERT_TRUE(s.Append(rd.entries).ok());
  if (rd.hard_state) s.SetHardState(*rd.hard_state);
}

TEST(RawNode, RejectsBadConfig) {
  MemoryStorage s;
  EXPECT_TRUE(absl::IsInvalidArgument(RawNode::Create(Cfg(0), &s).status()));
  Config c = Cfg(1);
  c.election_tick = 1;
  EXPECT_TRUE(absl::IsInvalidArgument(RawNode::Create(c, &s).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(RawNode::Create(Cfg(1), nullptr).status()));
  c = Cfg(1);
  c.applied = 5;  // beyond the (empty) log's commit index
  EXPECT_FALSE(RawNode::Create(c, &s).ok());
}

TEST(RawNode, BootstrapMembershipIsAppliedFromTheLog) {
  MemoryStorage s;
  ASSERT_TRUE(s.Bootstrap({1, 2, 3}).ok());
  auto node = RawNode::Create(Cfg(1), &s);
  ASSERT_TRUE(node.ok());
  RawNode& n = **node;
  EXPECT_TRUE(n.conf_state().voters.empty());  // not applied yet
  ASSERT_TRUE(n.HasReady());
  Ready rd = n.GetReady();
  ASSERT_EQ(rd.committed.size(), 3u);
  EXPECT_EQ(rd.committed[0].type, Entry::Type::kConfChange);
  EXPECT_TRUE(rd.entries.empty());  // already durable
  n.Advance(rd);
  EXPECT_EQ(n.conf_state().voters, (std::vector<NodeId>{1, 2, 3}));
  EXPECT_EQ(n.Status().applied, 3u);
  EXPECT_FALSE(n.HasReady());
}

// The leader may send its appends before its own fsync, so it must not
// count an entry towards the quorum until the Ready holding it advanced.
TEST(RawNode, LeaderCountsItsOwnEntryOnlyOnceDurable) {
  MemoryStorage s;
  ASSERT_TRUE(s.Bootstrap({1}).ok());
  auto node = RawNode::Create(Cfg(1), &s);
  RawNode& n = **node;
  n.Advance(n.GetReady());
  ASSERT_TRUE(n.Campaign().ok());
  Ready rd = n.GetReady();
  ASSERT_EQ(rd.entries.size(), 1u);
  const Index noop = rd.entries[0].index;
  EXPECT_TRUE(rd.committed.empty());  // a quorum of one, but not durable yet
  EXPECT_LT(n.Status().commit, noop);
  Persist(s, rd);
  n.Advance(rd);
  EXPECT_EQ(n.Status().commit, noop);
  ASSERT_TRUE(n.HasReady());
  rd = n.GetReady();
  ASSERT_EQ(rd.committed.size(), 1u);
  EXPECT_EQ(rd.committed[0].index, noop);
  n.Advance(rd);
  EXPECT_FALSE(n.HasReady());
}

TEST(RawNode, MaySendBeforePersistOnlyLeaderTrafficOfADurableTerm) {
  Message m;
  m.term = 3;
  m.type = Message::Type::kAppend;
  EXPECT_TRUE(MaySendBeforePersist(m, 3));
  EXPECT_FALSE(MaySendBeforePersist(m, 2));  // the term itself is not on disk yet
  m.type = Message::Type::kHeartbeat;
  EXPECT_TRUE(MaySendBeforePersist(m, 3));
  for (auto t : {Message::Type::kAppendResp, Message::Type::kVote, Message::Type::kVoteResp,
                 Message::Type::kPreVoteResp, Message::Type::kHeartbeatResp,
                 Message::Type::kSnapshot, Message::Type::kTimeoutNow}) {
    m.type = t;
    EXPECT_FALSE(MaySendBeforePersist(m, 3)) << static_cast<int>(t);
  }
}

TEST(RawNode, ReadyCarriesOnlyChanges) {
  MemoryStorage s;
  ASSERT_TRUE(s.Bootstrap({1}).ok());
  auto node = RawNode::Create(Cfg(1), &s);
  RawNode& n = **node;
  n.Advance(n.GetReady());
  ASSERT_TRUE(n.Campaign().ok());
  Ready rd = n.GetReady();
  ASSERT_TRUE(rd.soft_state.has_value());
  EXPECT_EQ(rd.soft_state->role, Role::kLeader);
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(rd.hard_state->vote, 1u);
  ASSERT_EQ(rd.entries.size(), 1u);
  EXPECT_EQ(rd.entries[0].type, Entry::Type::kNoop);
  Persist(s, rd);
  n.Advance(rd);
  auto pos = n.Propose("data");
  ASSERT_TRUE(pos.ok());
  rd = n.GetReady();
  EXPECT_FALSE(rd.soft_state.has_value());  // unchanged
  ASSERT_EQ(rd.entries.size(), 1u);
  EXPECT_EQ(rd.entries[0].index, pos->index);
  EXPECT_EQ(rd.entries[0].term, pos->term);
  EXPECT_EQ(rd.entries[0].data, "data");
  // The no-op committed when its Ready advanced; the new entry commits
  // (a single voter) once this Ready is durable, and applies from the next.
  ASSERT_EQ(rd.committed.size(), 1u);
  EXPECT_EQ(rd.committed[0].type, Entry::Type::kNoop);
  Persist(s, rd);
  n.Advance(rd);
  ASSERT_TRUE(n.HasReady());
  rd = n.GetReady();
  EXPECT_TRUE(rd.entries.empty());
  ASSERT_EQ(rd.committed.size(), 1u);
  EXPECT_EQ(rd.committed[0].data, "data");
  n.Advance(rd);
  EXPECT_FALSE(n.HasReady());
  // Ticking a lone leader produces nothing to do.
  n.Tick();
  EXPECT_FALSE(n.HasReady());
}

TEST(RawNode, MisaddressedMessagesAreRefused) {
  MemoryStorage s;
  auto node = RawNode::Create(Cfg(1), &s);
  Message m;
  m.from = 2;
  m.to = 3;
  EXPECT_TRUE(absl::IsInvalidArgument((*node)->Step(m)));
  m.to = 1;
  m.from = 1;
  EXPECT_TRUE(absl::IsInvalidArgument((*node)->Step(m)));
}

TEST(RawNode, RestartResumesFromAppliedIndex) {
  MemoryStorage s;
  ASSERT_TRUE(s.Bootstrap({1}).ok());
  {
    auto node = RawNode::Create(Cfg(1), &s);
    RawNode& n = **node;
    n.Advance(n.GetReady());
    ASSERT_TRUE(n.Campaign().ok());
    ASSERT_TRUE(n.Propose("a").ok());
    ASSERT_TRUE(n.Propose("b").ok());
    while (n.HasReady()) {
      Ready rd = n.GetReady();
      Persist(s, rd);
      n.Advance(rd);
    }
  }
  // The state machine had applied through "a" (index 3: bootstrap 1, no-op 2)
  // when it stopped.
  Config c = Cfg(1);
  c.applied = 3;
  auto node = RawNode::Create(c, &s);
  ASSERT_TRUE(node.ok()) << node.status();
  Ready rd = (*node)->GetReady();
  ASSERT_EQ(rd.committed.size(), 1u);
  EXPECT_EQ(rd.committed[0].data, "b");
  EXPECT_EQ((*node)->term(), s.hard_state().term);
}

// A snapshot restored while older committed entries are being applied (the
// driver Steps between GetReady and Advance) must win over the conf changes
// among those older entries.
TEST(RawNode, SnapshotDuringApplyKeepsTheSnapshotMembership) {
  MemoryStorage s;
  ASSERT_TRUE(s.Bootstrap({1, 2, 3}).ok());
  auto node = RawNode::Create(Cfg(2), &s);
  RawNode& n = **node;
  Ready rd = n.GetReady();  // applies "add 1, add 2, add 3"
  Message snap;
  snap.type = Message::Type::kSnapshot;
  snap.from = 1;
  snap.to = 2;
  snap.term = 5;
  snap.snapshot = SnapshotMeta{20, 4, ConfState{{1, 2}, {}}};  // 3 was removed by then
  ASSERT_TRUE(n.Step(snap).ok());
  n.Advance(rd);
  EXPECT_EQ(n.conf_state().voters, (std::vector<NodeId>{1, 2}));
  Ready rd2 = n.GetReady();
  ASSERT_TRUE(rd2.snapshot.has_value());
  EXPECT_EQ(rd2.snapshot->index, 20u);
  Persist(s, rd2);
  n.Advance(rd2);
  EXPECT_EQ(n.Status().applied, 20u);
  EXPECT_EQ(n.conf_state().voters, (std::vector<NodeId>{1, 2}));
}

}  // namespace
}  // namespace mailgrid::raft
