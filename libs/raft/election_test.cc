// Leader election, PreVote and CheckQuorum.
#include <string>

#include "gtest/gtest.h"
#include "libs/raft/raw_node.h"
#include "libs/raft/testing/test_network.h"

namespace mailgrid::raft {
namespace {

using testing::NodeOptions;
using testing::TestNetwork;

NodeOptions Plain() {
  NodeOptions o;
  o.pre_vote = false;
  o.check_quorum = false;
  return o;
}

TEST(Election, SingleNodeElectsItselfOnTimeout) {
  TestNetwork net;
  net.Bootstrap({1});
  net.Stabilize();  // apply the bootstrap membership
  net.Tick(1, 20);
  EXPECT_EQ(net.node(1).role(), Role::kLeader);
  EXPECT_EQ(net.node(1).leader(), 1u);
  // Its no-op commits at once.
  EXPECT_EQ(net.node(1).Status().commit, net.node(1).Status().last_index);
}

TEST(Election, ThreeNodesElectExactlyOneLeader) {
  TestNetwork net;
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.TickAll(30);
  const NodeId leader = net.Leader();
  ASSERT_NE(leader, kNoNode);
  int leaders = 0;
  for (NodeId id : {1, 2, 3}) {
    leaders += net.node(id).role() == Role::kLeader ? 1 : 0;
    EXPECT_EQ(net.node(id).leader(), leader);
    EXPECT_EQ(net.node(id).term(), net.node(leader).term());
  }
  EXPECT_EQ(leaders, 1);
}

TEST(Election, CampaignWinsWithMajorityAndBumpsTerm) {
  TestNetwork net(Plain());
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  const Term before = net.node(1).term();
  net.Isolate(3);
  net.Campaign(1);
  EXPECT_EQ(net.node(1).role(), Role::kLeader);
  EXPECT_EQ(net.node(1).term(), before + 1);
  EXPECT_EQ(net.node(2).Status().vote, 1u);
}

TEST(Election, CandidateWithoutMajorityStaysCandidate) {
  TestNetwork net(Plain());
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Isolate(1);
  net.Campaign(1);
  EXPECT_EQ(net.node(1).role(), Role::kCandidate);
}

TEST(Election, VoterRefusesCandidateWithStaleLog) {
  TestNetwork net(Plain());
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  ASSERT_EQ(net.node(1).role(), Role::kLeader);
  // 3 misses an entry that 1 and 2 have.
  net.Isolate(3);
  ASSERT_TRUE(net.Propose(1, "x").ok());
  net.Heal();
  net.Isolate(1);
  // 3 has the shorter log: 2 must refuse it (§5.4.1), so 3 cannot win.
  net.Campaign(3);
  EXPECT_NE(net.node(3).role(), Role::kLeader);
  // 2 has the full log and wins with 3's vote.
  net.Campaign(2);
  EXPECT_EQ(net.node(2).role(), Role::kLeader);
}

TEST(Election, VoteIsPersistedBeforeTheResponseIsSent) {
  TestNetwork net(Plain());
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Isolate(3);
  net.Campaign(1);
  // 2 voted for 1 and its storage says so (the response left after that).
  EXPECT_EQ(net.storage(2).hard_state().vote, 1u);
  EXPECT_EQ(net.storage(2).hard_state().term, net.node(1).term());
  // Restarted, 2 still refuses a competing candidate in that term.
  net.Crash(2);
  net.Restart(2);
  EXPECT_EQ(net.node(2).Status().vote, 1u);
}

TEST(PreVote, PartitionedNodeDoesNotInflateTerms) {
  TestNetwork net;
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  ASSERT_EQ(net.node(1).role(), Role::kLeader);
  const Term term = net.node(1).term();
  net.Isolate(3);
  net.Tick(3, 200);                     // many election timeouts alone
  EXPECT_EQ(net.node(3).term(), term);  // PreVote never succeeds, term unchanged
  EXPECT_EQ(net.node(3).role(), Role::kPreCandidate);
  net.Heal();
  net.TickAll(5);
  // It rejoins without disturbing the leader.
  EXPECT_EQ(net.node(1).role(), Role::kLeader);
  EXPECT_EQ(net.node(1).term(), term);
  EXPECT_EQ(net.node(3).leader(), 1u);
}

TEST(PreVote, WithoutPreVoteAReturningNodeForcesAnElection) {
  // The contrast case: without PreVote and CheckQuorum the isolated node
  // raises its term and disrupts the leader when it returns.
  TestNetwork net(Plain());
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  const Term term = net.node(1).term();
  net.Isolate(3);
  net.Tick(3, 100);
  EXPECT_GT(net.node(3).term(), term);
  net.Heal();
  net.TickAll(40);
  EXPECT_GT(net.node(1).term(), term);
}

TEST(PreVote, PreCandidateWinsThenRunsRealElection) {
  TestNetwork net;
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  const Term term = net.node(1).term();
  net.Campaign(1);
  EXPECT_EQ(net.node(1).role(), Role::kLeader);
  EXPECT_EQ(net.node(1).term(), term + 1);  // only the real election bumps
}

TEST(CheckQuorum, LeaderStepsDownWhenCutOffFromMajority) {
  TestNetwork net;
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  ASSERT_EQ(net.node(1).role(), Role::kLeader);
  net.Isolate(1);
  net.Tick(1, 25);  // two election timeouts without answers
  EXPECT_EQ(net.node(1).role(), Role::kFollower);
  EXPECT_EQ(net.node(1).leader(), kNoNode);
}

TEST(CheckQuorum, FollowersWithLiveLeaderIgnoreVoteRequests) {
  TestNetwork net;
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  const Term term = net.node(1).term();
  // 3 campaigns while 1 is healthy: 2 heard from 1 recently (lease) and
  // ignores it; the leader stays.
  ASSERT_TRUE(net.node(3).Campaign().ok());
  net.Stabilize();
  EXPECT_EQ(net.node(1).role(), Role::kLeader);
  EXPECT_EQ(net.node(1).term(), term);
  EXPECT_EQ(net.node(2).leader(), 1u);
}

TEST(CheckQuorum, FollowersElectNewLeaderAfterLeaderDies) {
  TestNetwork net;
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  net.Crash(1);
  net.TickAll(40);
  const NodeId leader = net.Leader();
  EXPECT_TRUE(leader == 2 || leader == 3) << leader;
}

TEST(Election, LearnerNeverCampaigns) {
  TestNetwork net;
  net.Bootstrap({1});
  net.AddEmptyNode(2);
  net.Stabilize();
  net.Campaign(1);
  ASSERT_TRUE(net.node(1).ProposeConfChange({ConfChange::Type::kAddLearner, 2}).ok());
  net.Stabilize();
  net.TickAll(3);
  ASSERT_EQ(net.applied_conf(2).learners, std::vector<NodeId>{2});
  net.Crash(1);
  net.Tick(2, 100);
  EXPECT_EQ(net.node(2).role(), Role::kFollower);
  EXPECT_FALSE(net.node(2).Campaign().ok());
}

}  // namespace
}  // namespace mailgrid::raft
