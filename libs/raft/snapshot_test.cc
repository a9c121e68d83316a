// Snapshots: compaction, sending to lagging followers, restoring, and
// MemoryStorage's contract at the edges.
#include <string>

#include "gtest/gtest.h"
#include "libs/raft/raw_node.h"
#include "libs/raft/storage.h"
#include "libs/raft/testing/test_network.h"

namespace mailgrid::raft {
namespace {

using testing::TestNetwork;

Entry E(Term term, Index index, std::string data = "") {
  return Entry{term, index, Entry::Type::kNormal, std::move(data)};
}

TEST(MemoryStorage, CompactedAndUnavailableAreDistinguishable) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({E(1, 1), E(1, 2), E(2, 3), E(2, 4)}).ok());
  EXPECT_EQ(s.FirstIndex(), 1u);
  EXPECT_EQ(s.LastIndex(), 4u);
  EXPECT_EQ(*s.Term(0), 0u);
  EXPECT_EQ(*s.Term(3), 2u);
  EXPECT_TRUE(IsLogUnavailable(s.Term(5).status()));
  ASSERT_TRUE(s.CreateSnapshot(3, ConfState{{1, 2, 3}, {}}).ok());
  ASSERT_TRUE(s.Compact(3).ok());
  EXPECT_EQ(s.FirstIndex(), 4u);
  EXPECT_TRUE(IsLogCompacted(s.Term(2).status()));
  EXPECT_EQ(*s.Term(3), 2u);  // the snapshot's last term survives
  EXPECT_TRUE(IsLogCompacted(s.Entries(3, 5, UINT64_MAX).status()));
  EXPECT_TRUE(IsLogUnavailable(s.Entries(4, 6, UINT64_MAX).status()));
  EXPECT_EQ(s.Entries(4, 5, UINT64_MAX)->size(), 1u);
  EXPECT_EQ(s.GetInitialState()->conf_state.voters, (std::vector<NodeId>{1, 2, 3}));
}

TEST(MemoryStorage, AppendTruncatesConflictsAndRefusesGaps) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({E(1, 1), E(1, 2), E(1, 3)}).ok());
  ASSERT_TRUE(s.Append({E(2, 2)}).ok());
  EXPECT_EQ(s.LastIndex(), 2u);
  EXPECT_EQ(*s.Term(2), 2u);
  EXPECT_FALSE(s.Append({E(2, 5)}).ok());
}

TEST(MemoryStorage, EntriesRespectSizeLimitButReturnAtLeastOne) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({E(1, 1, std::string(100, 'a')), E(1, 2, std::string(100, 'b'))}).ok());
  EXPECT_EQ(s.Entries(1, 3, 1)->size(), 1u);
  EXPECT_EQ(s.Entries(1, 3, 1000)->size(), 2u);
}

TEST(MemoryStorage, ApplySnapshotReplacesTheLog) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({E(1, 1), E(1, 2)}).ok());
  ASSERT_TRUE(s.ApplySnapshot(SnapshotMeta{10, 3, ConfState{{1}, {}}}).ok());
  EXPECT_EQ(s.FirstIndex(), 11u);
  EXPECT_EQ(s.LastIndex(), 10u);
  EXPECT_EQ(*s.Term(10), 3u);
  EXPECT_FALSE(s.ApplySnapshot(SnapshotMeta{5, 3, {}}).ok());
}

TEST(Snapshot, LaggingFollowerIsSentASnapshotThenEntries) {
  TestNetwork net;
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  net.Crash(3);
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(net.Propose(1, "v" + std::to_string(i)).ok());
  net.CompactLog(1);  // the entries 3 needs are gone from the leader
  const Index snap_index = net.storage(1).FirstIndex() - 1;
  ASSERT_TRUE(net.Propose(1, "after").ok());
  net.Restart(3);
  net.TickAll(3);
  ASSERT_EQ(net.installed_snapshots(3).size(), 1u);
  EXPECT_EQ(net.installed_snapshots(3)[0].index, snap_index);
  EXPECT_EQ(net.installed_snapshots(3)[0].conf.voters, (std::vector<NodeId>{1, 2, 3}));
  EXPECT_EQ(net.storage(3).FirstIndex(), snap_index + 1);
  // Entries after the snapshot are replicated and applied normally.
  EXPECT_EQ(net.applied_data(3), std::vector<std::string>{"after"});
  EXPECT_EQ(net.applied_index(3), net.applied_index(1));
  // And it keeps working as a follower.
  ASSERT_TRUE(net.Propose(1, "more").ok());
  net.TickAll(1);
  EXPECT_EQ(net.applied_data(3).back(), "more");
}

TEST(Snapshot, FailedSnapshotIsRetriedAfterReport) {
  TestNetwork net;
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  net.Crash(3);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(net.Propose(1, "v").ok());
  net.CompactLog(1);
  net.Restart(3);
  net.DropType(Message::Type::kSnapshot);
  net.TickAll(3);
  ASSERT_TRUE(net.installed_snapshots(3).empty());
  bool found = false;
  for (const auto& p : net.node(1).Status().progress) {
    if (p.id == 3) {
      found = true;
      EXPECT_EQ(p.state, PeerProgress::State::kSnapshot);
    }
  }
  ASSERT_TRUE(found);
  // The transport reports the failed stream; the leader retries.
  net.Heal();
  net.node(1).ReportSnapshot(3, false);
  net.TickAll(3);
  EXPECT_EQ(net.installed_snapshots(3).size(), 1u);
  EXPECT_EQ(net.applied_index(3), net.applied_index(1));
}

TEST(Snapshot, NewEmptyReplicaJoinsThroughASnapshot) {
  TestNetwork net;
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(net.Propose(1, "v").ok());
  net.CompactLog(1);
  net.AddEmptyNode(4);
  ASSERT_TRUE(net.node(1).ProposeConfChange({ConfChange::Type::kAddLearner, 4}).ok());
  net.TickAll(3);
  ASSERT_EQ(net.installed_snapshots(4).size(), 1u);
  // The snapshot predates the change; 4 learns it is a learner from the log.
  EXPECT_EQ(net.applied_conf(4).learners, std::vector<NodeId>{4});
  EXPECT_EQ(net.applied_conf(4).voters, (std::vector<NodeId>{1, 2, 3}));
  EXPECT_EQ(net.applied_index(4), net.applied_index(1));
}

TEST(Snapshot, StaleSnapshotIsIgnored) {
  TestNetwork net;
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  ASSERT_TRUE(net.Propose(1, "x").ok());
  const Index commit = net.node(2).Status().commit;
  Message m;
  m.type = Message::Type::kSnapshot;
  m.from = 1;
  m.to = 2;
  m.term = net.node(1).term();
  m.snapshot = SnapshotMeta{commit - 1, 1, ConfState{{1, 2, 3}, {}}};
  net.Send({m});
  EXPECT_TRUE(net.installed_snapshots(2).empty());
  EXPECT_EQ(net.node(2).Status().commit, commit);
}

}  // namespace
}  // namespace mailgrid::raft
