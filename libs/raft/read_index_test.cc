// ReadIndex: linearizable reads confirmed by a heartbeat quorum.
#include <algorithm>
#include <string>

#include "gtest/gtest.h"
#include "libs/raft/raw_node.h"
#include "libs/raft/testing/test_network.h"

namespace mailgrid::raft {
namespace {

using testing::TestNetwork;

TestNetwork ThreeNodesWithLeader1() {
  TestNetwork net;
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  return net;
}

TEST(ReadIndex, LeaderConfirmsWithQuorumAndReturnsCommitIndex) {
  TestNetwork net = ThreeNodesWithLeader1();
  ASSERT_TRUE(net.Propose(1, "x").ok());
  const Index commit = net.node(1).Status().commit;
  ASSERT_TRUE(net.node(1).ReadIndex("r1").ok());
  net.Stabilize();
  ASSERT_EQ(net.read_states(1).size(), 1u);
  EXPECT_EQ(net.read_states(1)[0], (ReadState{commit, "r1"}));
}

TEST(ReadIndex, FollowerReadIsForwardedToTheLeader) {
  TestNetwork net = ThreeNodesWithLeader1();
  ASSERT_TRUE(net.Propose(1, "x").ok());
  ASSERT_TRUE(net.node(2).ReadIndex("f1").ok());
  net.Stabilize();
  ASSERT_EQ(net.read_states(2).size(), 1u);
  EXPECT_EQ(net.read_states(2)[0].context, "f1");
  EXPECT_EQ(net.read_states(2)[0].index, net.node(1).Status().commit);
  EXPECT_TRUE(net.read_states(1).empty());
}

TEST(ReadIndex, PartitionedLeaderCannotConfirmReads) {
  TestNetwork net = ThreeNodesWithLeader1();
  net.Isolate(1);
  ASSERT_EQ(net.node(1).role(), Role::kLeader);  // it does not know yet
  ASSERT_TRUE(net.node(1).ReadIndex("stale?").ok());
  net.Stabilize();
  EXPECT_TRUE(net.read_states(1).empty());
  // Meanwhile the majority moves on; the old leader's read never confirms.
  net.TickAll(30);
  EXPECT_TRUE(net.read_states(1).empty());
}

TEST(ReadIndex, NewLeaderWaitsForItsFirstCommit) {
  TestNetwork net = ThreeNodesWithLeader1();
  // A new leader is elected but its no-op cannot commit yet.
  net.drop_if = [](const Message& m) { return m.from != 1 && m.type == Message::Type::kAppend; };
  net.Isolate(1);
  net.TickAll(30);
  const NodeId leader = net.node(2).role() == Role::kLeader ? 2 : 3;
  ASSERT_EQ(net.node(leader).role(), Role::kLeader);
  ASSERT_TRUE(net.node(leader).ReadIndex("early").ok());
  net.Stabilize();
  EXPECT_TRUE(net.read_states(leader).empty());
  net.Heal();
  net.TickAll(2);
  ASSERT_EQ(net.read_states(leader).size(), 1u);
  // The read index includes the new leader's no-op.
  EXPECT_EQ(net.read_states(leader)[0].index, net.node(leader).Status().commit);
}

TEST(ReadIndex, ConcurrentReadsShareOneHeartbeatRound) {
  TestNetwork net = ThreeNodesWithLeader1();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(net.node(1).ReadIndex("c" + std::to_string(i)).ok());
  Ready rd = net.node(1).GetReady();
  const auto heartbeats =
      std::count_if(rd.messages.begin(), rd.messages.end(),
                    [](const Message& m) { return m.type == Message::Type::kHeartbeat; });
  EXPECT_EQ(heartbeats, 2);  // one per follower, not one per read
  std::vector<Message> msgs = rd.messages;
  net.node(1).Advance(rd);
  net.Send(std::move(msgs));
  ASSERT_EQ(net.read_states(1).size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(net.read_states(1)[i].context, "c" + std::to_string(i));
}

TEST(ReadIndex, SingleNodeAnswersAtOnce) {
  TestNetwork net;
  net.Bootstrap({1});
  net.Stabilize();
  net.Campaign(1);
  ASSERT_TRUE(net.node(1).ReadIndex("solo").ok());
  net.Stabilize();
  ASSERT_EQ(net.read_states(1).size(), 1u);
  EXPECT_EQ(net.read_states(1)[0].index, net.node(1).Status().commit);
}

TEST(ReadIndex, NoLeaderKnownIsAnError) {
  TestNetwork net;
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  EXPECT_TRUE(absl::IsFailedPrecondition(net.node(2).ReadIndex("x")));
  EXPECT_TRUE(absl::IsInvalidArgument(net.node(2).ReadIndex("")));
}

}  // namespace
}  // namespace mailgrid::raft
