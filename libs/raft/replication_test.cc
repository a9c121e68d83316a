// Log replication: matching and conflict resolution, the commit rule
// (Figure 8), batching and pipelining.
#include <algorithm>
#include <string>
#include <vector>

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

// Persists and sends a Ready by hand (what TestNetwork does internally),
// for tests that inspect the Ready first.
void Handle(TestNetwork& net, NodeId id, Ready rd) {
  ASSERT_TRUE(net.storage(id).Append(rd.entries).ok());
  if (rd.hard_state) net.storage(id).SetHardState(*rd.hard_state);
  std::vector<Message> msgs = rd.messages;
  rd.committed.clear();  // not applied by hand; they come again
  net.node(id).Advance(rd);
  net.Send(std::move(msgs));
}

int CountAppendsTo(const std::vector<Message>& msgs, NodeId to) {
  return static_cast<int>(std::count_if(msgs.begin(), msgs.end(), [to](const Message& m) {
    return m.type == Message::Type::kAppend && m.to == to;
  }));
}

TEST(Replication, ProposalsAreAppliedEverywhereInOrder) {
  TestNetwork net;
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(net.Propose(1, "v" + std::to_string(i)).ok());
  net.TickAll(2);
  for (NodeId id : {1, 2, 3}) {
    ASSERT_EQ(net.applied_data(id).size(), 20u) << id;
    EXPECT_EQ(net.applied_data(id), net.applied_data(1));
    EXPECT_EQ(net.applied_data(id)[7], "v7");
  }
}

TEST(Replication, ProposeOnFollowerFailsWithLeaderHint) {
  TestNetwork net;
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  auto pos = net.node(2).Propose("x");
  EXPECT_TRUE(absl::IsFailedPrecondition(pos.status())) << pos.status();
  EXPECT_EQ(net.node(2).leader(), 1u);
}

TEST(Replication, ProposalsBatchIntoOneAppendPerFollower) {
  TestNetwork net;
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(net.node(1).Propose("v" + std::to_string(i)).ok());
  ASSERT_TRUE(net.node(1).HasReady());
  Ready rd = net.node(1).GetReady();
  // All 50 in one Ready (one fsync) and one append message per follower.
  EXPECT_EQ(rd.entries.size(), 50u);
  EXPECT_EQ(CountAppendsTo(rd.messages, 2), 1);
  EXPECT_EQ(CountAppendsTo(rd.messages, 3), 1);
  for (const Message& m : rd.messages) EXPECT_EQ(m.entries.size(), 50u);
  Handle(net, 1, std::move(rd));
  net.Stabilize();
  EXPECT_EQ(net.applied_data(3).size(), 50u);
}

// Config::defer_commit_broadcast: a commit advance alone sends nothing; the
// followers learn it from the next append, from SendCommit, or from a
// heartbeat, and what is committed is the same either way.
TEST(Replication, DeferredCommitBroadcastRidesOnTheNextAppend) {
  NodeOptions o = Plain();
  o.defer_commit_broadcast = true;
  TestNetwork net(o);
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  net.node(1).SendCommit();  // the election's noop: its commit is owed too
  net.Stabilize();
  ASSERT_FALSE(net.node(1).CommitUnsent());
  const Index base = net.applied_index(2);
  ASSERT_EQ(net.applied_index(3), base);

  ASSERT_TRUE(net.Propose(1, "a").ok());  // Stabilize: commit, no broadcast
  EXPECT_EQ(net.applied_data(1), std::vector<std::string>({"a"}));
  EXPECT_TRUE(net.node(1).CommitUnsent());
  EXPECT_FALSE(net.node(1).HasReady());   // owed, but not pending work
  EXPECT_EQ(net.applied_index(2), base);  // the followers hold "a", not applied
  EXPECT_EQ(net.applied_index(3), base);

  // The next proposal's append carries the commit of "a".
  ASSERT_TRUE(net.node(1).Propose("b").ok());
  Ready rd = net.node(1).GetReady();
  ASSERT_EQ(CountAppendsTo(rd.messages, 2), 1);
  for (const Message& m : rd.messages) EXPECT_EQ(m.commit, base + 1);
  EXPECT_FALSE(net.node(1).CommitUnsent());
  Handle(net, 1, std::move(rd));
  net.Stabilize();
  EXPECT_EQ(net.applied_data(2), std::vector<std::string>({"a"}));
  EXPECT_EQ(net.applied_data(3), std::vector<std::string>({"a"}));
  EXPECT_TRUE(net.node(1).CommitUnsent());  // "b" committed, owed

  // SendCommit: one empty append per follower, now.
  net.node(1).SendCommit();
  ASSERT_TRUE(net.node(1).HasReady());
  rd = net.node(1).GetReady();
  EXPECT_EQ(CountAppendsTo(rd.messages, 2), 1);
  EXPECT_EQ(CountAppendsTo(rd.messages, 3), 1);
  for (const Message& m : rd.messages) {
    EXPECT_TRUE(m.entries.empty());
    EXPECT_EQ(m.commit, base + 2);
  }
  Handle(net, 1, std::move(rd));
  net.Stabilize();
  EXPECT_FALSE(net.node(1).CommitUnsent());
  EXPECT_EQ(net.applied_data(2), std::vector<std::string>({"a", "b"}));
  EXPECT_EQ(net.applied_data(3), std::vector<std::string>({"a", "b"}));

  // Without SendCommit, a heartbeat carries it.
  ASSERT_TRUE(net.Propose(1, "c").ok());
  EXPECT_EQ(net.applied_data(2).size(), 2u);
  net.TickAll(1);
  EXPECT_EQ(net.applied_data(2), std::vector<std::string>({"a", "b", "c"}));
  EXPECT_EQ(net.applied_data(3), std::vector<std::string>({"a", "b", "c"}));
}

TEST(Replication, PipelinesAppendsUpToTheInflightWindow) {
  NodeOptions o;
  o.max_inflight_msgs = 2;
  TestNetwork net(o);
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);  // followers are now in the replicate state
  std::vector<Message> held;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(net.node(1).Propose("v" + std::to_string(i)).ok());
    Ready rd = net.node(1).GetReady();
    // Without waiting for acks, a new append goes out while the window
    // has room; the third finds it full.
    EXPECT_EQ(CountAppendsTo(rd.messages, 2), i < 2 ? 1 : 0) << i;
    ASSERT_TRUE(net.storage(1).Append(rd.entries).ok());
    if (rd.hard_state) net.storage(1).SetHardState(*rd.hard_state);
    for (Message& m : rd.messages) held.push_back(std::move(m));
    net.node(1).Advance(rd);
  }
  auto status = net.node(1).Status();
  auto pr = std::find_if(status.progress.begin(), status.progress.end(),
                         [](const PeerProgress& p) { return p.id == 2; });
  ASSERT_NE(pr, status.progress.end());
  EXPECT_EQ(pr->state, PeerProgress::State::kReplicate);
  EXPECT_EQ(pr->inflight, 2);
  // Acks free the window and the rest follows.
  net.Send(std::move(held));
  net.Stabilize();
  EXPECT_EQ(net.applied_data(2).size(), 3u);
}

TEST(Replication, FollowerConflictingSuffixIsOverwritten) {
  TestNetwork net(Plain());
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  ASSERT_TRUE(net.Propose(1, "committed").ok());
  // 1 is cut off and keeps accepting proposals no one else sees.
  net.Isolate(1);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(net.Propose(1, "lost" + std::to_string(i)).ok());
  net.Heal();
  net.Isolate(1);
  net.Campaign(2);
  ASSERT_EQ(net.node(2).role(), Role::kLeader);
  ASSERT_TRUE(net.Propose(2, "new0").ok());
  ASSERT_TRUE(net.Propose(2, "new1").ok());
  net.Heal();
  net.TickAll(3);
  const std::vector<std::string> want = {"committed", "new0", "new1"};
  for (NodeId id : {1, 2, 3}) EXPECT_EQ(net.applied_data(id), want) << id;
  EXPECT_EQ(net.storage(1).LastIndex(), net.storage(2).LastIndex());
  for (Index i = 1; i <= net.storage(2).LastIndex(); ++i) {
    EXPECT_EQ(*net.storage(1).Term(i), *net.storage(2).Term(i)) << i;
  }
}

TEST(Replication, LaggingFollowerIsFoundInFewRoundTrips) {
  TestNetwork net(Plain());
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  // 1 writes 100 entries that never leave it, then loses leadership.
  net.Isolate(1);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(net.Propose(1, "stale").ok());
  net.Heal();
  net.Isolate(1);
  net.Campaign(2);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(net.Propose(2, "fresh").ok());
  net.Heal();
  net.delivered.clear();
  net.TickAll(2);
  int rejects = 0;
  for (const Message& m : net.delivered) {
    if (m.type == Message::Type::kAppendResp && m.reject && m.from == 1) ++rejects;
  }
  // Term-based backup skips the 100 stale entries at once, not one by one.
  EXPECT_LE(rejects, 2);
  EXPECT_EQ(net.applied_data(1).size(), 100u);
  EXPECT_EQ(net.applied_data(1).back(), "fresh");
}

// Figure 8 of the Raft paper: an entry from an earlier term that is stored
// on a majority is NOT committed until an entry of the leader's term is,
// because a later leader may still overwrite it.
TEST(CommitRule, Figure8OldTermEntryOnMajorityIsNotCommitted) {
  NodeOptions o = Plain();
  o.max_size_per_msg = 1;  // one entry per append, to split the replication
  TestNetwork net(o);
  net.Bootstrap({1, 2, 3, 4, 5});
  net.Stabilize();
  net.Campaign(1);  // term 2
  const Index base = net.node(1).Status().commit;
  // (a) 1 replicates "x" (term 2) only to 2.
  for (NodeId id : {3, 4, 5}) net.Cut(1, id);
  ASSERT_TRUE(net.Propose(1, "x").ok());
  const Index x = base + 1;
  // (b) 1 crashes; 5 wins term 3 with 3 and 4, but its no-op at x goes
  // nowhere.
  net.Heal();
  net.Crash(1);
  net.Cut(5, 2);
  net.drop_if = [](const Message& m) { return m.from == 5 && m.type == Message::Type::kAppend; };
  net.Campaign(5);
  ASSERT_EQ(net.node(5).role(), Role::kLeader);
  ASSERT_EQ(*net.storage(5).Term(x), 3u);
  net.Crash(5);
  // (c) 1 restarts, wins term 4 and replicates x (term 2) to 3 and 4,
  // but not its own term-4 no-op: appends beyond x reach only nodes that
  // lack x (which reject them).
  net.Heal();
  net.Restart(1);
  net.drop_if = [x, &net](const Message& m) {
    return m.type == Message::Type::kAppend && !m.entries.empty() && m.entries[0].index > x &&
           net.storage(m.to).LastIndex() >= x;
  };
  net.Campaign(1);  // term 3: 3 and 4 already voted for 5, it loses
  ASSERT_EQ(net.node(1).term(), 3u);
  ASSERT_NE(net.node(1).role(), Role::kLeader);
  net.Campaign(1);  // term 4: its log (last term 2) beats 3's and 4's
  ASSERT_EQ(net.node(1).role(), Role::kLeader);
  ASSERT_EQ(net.node(1).term(), 4u);
  for (NodeId id : {2, 3, 4}) ASSERT_EQ(*net.storage(id).Term(x), 2u) << id;
  // x (term 2) is on 1, 2, 3, 4 = a majority, yet not committed.
  EXPECT_LT(net.node(1).Status().commit, x);
  // (d) 1 dies; 5 restarts and (at term 5, its last term 3 beating their
  // 2) wins and overwrites x everywhere.
  net.Crash(1);
  net.Heal();
  net.Restart(5);
  net.Campaign(5);  // term 4 is taken
  net.Campaign(5);
  ASSERT_EQ(net.node(5).role(), Role::kLeader);
  ASSERT_EQ(net.node(5).term(), 5u);
  net.TickAll(2);
  for (NodeId id : {2, 3, 4, 5}) {
    EXPECT_EQ(*net.storage(id).Term(x), 3u) << id;
    EXPECT_TRUE(net.applied_data(id).empty()) << id;  // "x" was never applied
  }
  // 1 returns and converges too.
  net.Restart(1);
  net.TickAll(3);
  EXPECT_EQ(*net.storage(1).Term(x), 3u);
  EXPECT_TRUE(net.applied_data(1).empty());
}

TEST(CommitRule, OldTermEntriesCommitWithTheNewLeadersNoop) {
  TestNetwork net(Plain());
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  net.Cut(1, 3);
  net.drop_if = [](const Message& m) {
    return m.type == Message::Type::kAppendResp && m.from == 2;  // 1 never learns 2 has it
  };
  ASSERT_TRUE(net.Propose(1, "x").ok());
  EXPECT_TRUE(net.applied_data(1).empty());
  net.Heal();
  net.Isolate(1);
  net.Campaign(2);  // 2 has "x" from term 2; commits it via its term-3 no-op
  ASSERT_EQ(net.node(2).role(), Role::kLeader);
  EXPECT_EQ(net.applied_data(2), std::vector<std::string>{"x"});
  EXPECT_EQ(net.applied_data(3), std::vector<std::string>{"x"});
}

TEST(Replication, RestartedFollowerKeepsItsLogAndCatchesUp) {
  TestNetwork net;
  net.Bootstrap({1, 2, 3});
  net.Stabilize();
  net.Campaign(1);
  ASSERT_TRUE(net.Propose(1, "a").ok());
  net.Crash(3);
  ASSERT_TRUE(net.Propose(1, "b").ok());
  net.Restart(3);
  net.TickAll(3);
  EXPECT_EQ(net.applied_data(3), (std::vector<std::string>{"a", "b"}));
}

}  // namespace
}  // namespace mailgrid::raft
