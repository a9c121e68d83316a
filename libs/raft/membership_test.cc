// Single-server membership changes.
#include <string>

#include "gtest/gtest.h"
#include "libs/raft/raw_node.h"
#include "libs/raft/testing/test_network.h"

namespace mailgrid::raft {
namespace {

using testing::TestNetwork;

using CC = ConfChange::Type;

TEST(ConfChangeCodec, RoundTripsAndRejectsGarbage) {
  ConfChange cc{CC::kAddLearner, 0x0102030405060708ULL};
  auto decoded = DecodeConfChange(EncodeConfChange(cc));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, cc);
  EXPECT_FALSE(DecodeConfChange("").ok());
  EXPECT_FALSE(DecodeConfChange(std::string(9, '\x07')).ok());
  EXPECT_FALSE(DecodeConfChange(EncodeConfChange({CC::kAddVoter, 0})).ok());
}

TEST(ConfChangeCodec, ApplyIsIdempotentAndKeepsSetsDisjoint) {
  ConfState c{{1, 2, 3}, {}};
  c = ApplyConfChange(c, {CC::kAddLearner, 4});
  EXPECT_EQ(c.learners, std::vector<NodeId>{4});
  c = ApplyConfChange(c, {CC::kAddVoter, 4});
  EXPECT_EQ(c.voters, (std::vector<NodeId>{1, 2, 3, 4}));
  EXPECT_TRUE(c.learners.empty());
  EXPECT_EQ(ApplyConfChange(c, {CC::kAddVoter, 4}), c);
  EXPECT_EQ(ApplyConfChange(c, {CC::kAddLearner, 4}), c);  // no silent demotion
  c = ApplyConfChange(c, {CC::kRemoveNode, 2});
  EXPECT_EQ(c.voters, (std::vector<NodeId>{1, 3, 4}));
  EXPECT_EQ(ApplyConfChange(c, {CC::kRemoveNode, 2}), c);
}

class Membership : public ::testing::Test {
 protected:
  void SetUp() override {
    net.Bootstrap({1, 2, 3});
    net.Stabilize();
    net.Campaign(1);
  }
  void Change(ConfChange cc) {
    ASSERT_TRUE(net.node(1).ProposeConfChange(cc).ok());
    net.TickAll(3);
  }
  TestNetwork net;
};

TEST_F(Membership, ReplaceAReplicaThroughALearner) {
  net.AddEmptyNode(4);
  Change({CC::kAddLearner, 4});
  EXPECT_EQ(net.node(1).conf_state().learners, std::vector<NodeId>{4});
  EXPECT_EQ(net.applied_index(4), net.applied_index(1));  // caught up
  Change({CC::kAddVoter, 4});
  EXPECT_EQ(net.node(1).conf_state().voters, (std::vector<NodeId>{1, 2, 3, 4}));
  Change({CC::kRemoveNode, 3});
  net.Crash(3);
  for (NodeId id : {1, 2, 4}) {
    EXPECT_EQ(net.applied_conf(id).voters, (std::vector<NodeId>{1, 2, 4})) << id;
  }
  // The new group commits with 2 of {1, 2, 4}.
  net.Isolate(2);
  ASSERT_TRUE(net.Propose(1, "after").ok());
  net.TickAll(1);
  EXPECT_EQ(net.applied_data(4).back(), "after");
}

TEST_F(Membership, QuorumGrowsWithTheVoterSet) {
  net.AddEmptyNode(4);
  net.AddEmptyNode(5);
  Change({CC::kAddVoter, 4});
  Change({CC::kAddVoter, 5});
  // 5 voters: 1 and 2 alone (2 of 5) must not commit.
  net.Isolate(3);
  net.Isolate(4);
  net.Isolate(5);
  const Index commit = net.node(1).Status().commit;
  ASSERT_TRUE(net.Propose(1, "x").ok());
  EXPECT_EQ(net.node(1).Status().commit, commit);
  net.Heal();
  net.Isolate(4);
  net.Isolate(5);
  net.TickAll(1);  // with 3 it is 3 of 5
  EXPECT_GT(net.node(1).Status().commit, commit);
}

TEST_F(Membership, OnlyOneChangeAtATime) {
  net.AddEmptyNode(4);
  ASSERT_TRUE(net.node(1).ProposeConfChange({CC::kAddLearner, 4}).ok());
  auto second = net.node(1).ProposeConfChange({CC::kRemoveNode, 3});
  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  net.TickAll(2);
  EXPECT_TRUE(net.node(1).ProposeConfChange({CC::kRemoveNode, 3}).ok());
}

TEST_F(Membership, InvalidChangesAreRefused) {
  EXPECT_TRUE(absl::IsAlreadyExists(net.node(1).ProposeConfChange({CC::kAddVoter, 2}).status()));
  EXPECT_TRUE(
      absl::IsFailedPrecondition(net.node(1).ProposeConfChange({CC::kAddLearner, 2}).status()));
  EXPECT_TRUE(absl::IsNotFound(net.node(1).ProposeConfChange({CC::kRemoveNode, 9}).status()));
  EXPECT_TRUE(
      absl::IsFailedPrecondition(net.node(2).ProposeConfChange({CC::kAddVoter, 9}).status()));
}

TEST_F(Membership, NewLeaderWaitsForItsNoopBeforeChanging) {
  // 1's entries to others are dropped, so its no-op cannot commit.
  net.Crash(1);
  net.drop_if = [](const Message& m) { return m.type == Message::Type::kAppend; };
  net.TickAll(30);
  const NodeId leader = net.node(2).role() == Role::kLeader ? 2 : 3;
  ASSERT_EQ(net.node(leader).role(), Role::kLeader);
  EXPECT_TRUE(absl::IsFailedPrecondition(
      net.node(leader).ProposeConfChange({CC::kRemoveNode, 1}).status()));
  net.Heal();
  net.TickAll(2);
  EXPECT_TRUE(net.node(leader).ProposeConfChange({CC::kRemoveNode, 1}).ok());
}

TEST_F(Membership, RemovedLeaderStepsDownAndTheRestElect) {
  Change({CC::kRemoveNode, 1});
  EXPECT_NE(net.node(1).role(), Role::kLeader);
  net.TickAll(40);
  const NodeId leader = net.Leader();
  EXPECT_TRUE(leader == 2 || leader == 3) << leader;
  EXPECT_EQ(net.node(leader).conf_state().voters, (std::vector<NodeId>{2, 3}));
  // 1 is out of the group and does not campaign.
  EXPECT_FALSE(net.node(1).Campaign().ok());
}

TEST_F(Membership, RemovedNodeDoesNotDisruptTheGroup) {
  Change({CC::kRemoveNode, 3});
  const Term term = net.node(1).term();
  net.TickAll(50);
  EXPECT_EQ(net.node(1).role(), Role::kLeader);
  EXPECT_EQ(net.node(1).term(), term);
  EXPECT_EQ(net.node(3).role(), Role::kFollower);
}

}  // namespace
}  // namespace mailgrid::raft
