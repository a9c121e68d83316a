// Leadership transfer (for rolling restarts: drain the leader first).
#include <string>

#include "gtest/gtest.h"
#include "libs/raft/raw_node.h"
#include "libs/raft/testing/test_network.h"

namespace mailgrid::raft {
namespace {

using testing::TestNetwork;

class Transfer : public ::testing::Test {
 protected:
  void SetUp() override {
    net.Bootstrap({1, 2, 3});
    net.Stabilize();
    net.Campaign(1);
  }
  TestNetwork net;
};

TEST_F(Transfer, UpToDateTargetTakesOverDespiteTheLease) {
  const Term term = net.node(1).term();
  ASSERT_TRUE(net.node(1).TransferLeadership(2).ok());
  net.Stabilize();  // no ticks: it happens at once
  EXPECT_EQ(net.node(2).role(), Role::kLeader);
  EXPECT_EQ(net.node(2).term(), term + 1);
  EXPECT_EQ(net.node(1).role(), Role::kFollower);
  EXPECT_EQ(net.node(1).leader(), 2u);
}

TEST_F(Transfer, LaggingTargetIsCaughtUpFirst) {
  net.Isolate(3);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(net.Propose(1, "v").ok());
  net.Heal();
  ASSERT_TRUE(net.node(1).TransferLeadership(3).ok());
  net.Stabilize();
  EXPECT_EQ(net.node(3).role(), Role::kLeader);
  EXPECT_EQ(net.applied_data(3).size(), 5u);
}

TEST_F(Transfer, ProposalsAreRefusedDuringTransferAndResumeAfterAbort) {
  net.Isolate(3);
  ASSERT_TRUE(net.node(1).TransferLeadership(3).ok());
  net.Stabilize();
  EXPECT_EQ(net.node(1).Status().lead_transferee, 3u);
  EXPECT_TRUE(absl::IsFailedPrecondition(net.node(1).Propose("x").status()));
  // Not done within an election timeout: abandoned.
  net.TickAll(12);
  EXPECT_EQ(net.node(1).role(), Role::kLeader);
  EXPECT_EQ(net.node(1).Status().lead_transferee, kNoNode);
  EXPECT_TRUE(net.Propose(1, "x").ok());
}

TEST_F(Transfer, RefusedForNonVotersAndOnFollowers) {
  EXPECT_TRUE(absl::IsFailedPrecondition(net.node(1).TransferLeadership(9)));
  EXPECT_TRUE(absl::IsFailedPrecondition(net.node(2).TransferLeadership(3)));
  EXPECT_TRUE(net.node(1).TransferLeadership(1).ok());  // already there
}

}  // namespace
}  // namespace mailgrid::raft
