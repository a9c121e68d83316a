// In-process replica groups over real gRPC on loopback: election, writes,
// linearizable reads, NOT_LEADER redirects, KvClient, leadership transfer,
// membership changes, snapshot catch-up (and a corrupted chunk), disk full.
#include "libs/replica/replica.h"

#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/kv/kv_test_util.h"
#include "libs/replica/channel.h"
#include "libs/replica/kv_client.h"
#include "libs/replica/kv_service.h"
#include "libs/replica/testing/test_cluster.h"
#include "mailgrid/raft/v1/raft.grpc.pb.h"
#include "prometheus/registry.h"

namespace mailgrid::replica {
namespace {

using testing::PutRequest;
using testing::TestCluster;
using testing::WaitUntil;

absl::Time In(absl::Duration d) { return absl::Now() + d; }

kv::v1::GetRequest GetRequest(const std::string& key,
                              kv::v1::ReadConsistency c = kv::v1::LINEARIZABLE) {
  kv::v1::GetRequest req;
  req.set_key(key);
  req.set_consistency(c);
  return req;
}

// A key in the tenant space (what services write).
std::string Key(int i) { return absl::StrCat("\x02t/key-", i); }

// A 3-member group, started, with a leader elected: what most tests begin with.
class StartedGroup : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(c.StartGroup(3), absl::OkStatus());
    leader = c.WaitForLeader();
    ASSERT_NE(leader, raft::kNoNode);
  }

  TestCluster c;
  raft::NodeId leader = raft::kNoNode;  // as elected at the start
};

raft::NodeId AFollower(TestCluster& c, raft::NodeId leader, int n) {
  for (int id = 1; id <= n; ++id) {
    if (static_cast<raft::NodeId>(id) != leader) return id;
  }
  return raft::kNoNode;
}

TEST_F(StartedGroup, ElectsWritesAndReadsLinearizably) {
  absl::StatusOr<kv::v1::WriteResponse> w =
      c.replica(leader).Write(PutRequest(Key(1), "one"), In(absl::Seconds(30)));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(w->has_ok());
  EXPECT_GT(w->applied_index(), 0u);

  absl::StatusOr<kv::v1::GetResponse> r =
      c.replica(leader).Get(GetRequest(Key(1)), In(absl::Seconds(30)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->found());
  EXPECT_EQ(r->value(), "one");
  EXPECT_EQ(r->version(), w->applied_index());

  // Every follower applies it (stale reads show it once applied).
  for (raft::NodeId id = 1; id <= 3; ++id) {
    EXPECT_TRUE(c.WaitApplied(id, w->applied_index())) << "node " << id;
    absl::StatusOr<kv::v1::GetResponse> stale =
        c.replica(id).Get(GetRequest(Key(1), kv::v1::STALE), In(absl::Seconds(5)));
    ASSERT_TRUE(stale.ok()) << stale.status();
    EXPECT_EQ(stale->value(), "one") << "node " << id;
  }

  // A missing key is not found, not an error.
  r = c.replica(leader).Get(GetRequest(Key(2)), In(absl::Seconds(30)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->found());
  EXPECT_TRUE(c.replica(leader).Ready());
}

TEST(NotLeaderErrorTest, NamesTheLeadersAddressOnlyWhenKnown) {
  kv::v1::NotLeader hint;
  hint.set_leader_id(3);
  hint.set_leader_address("10.0.0.3:7001");
  EXPECT_EQ(NotLeaderError(hint).message(), "not the leader; leader is 3 at 10.0.0.3:7001");
  hint.clear_leader_address();  // a stalled leader refusing, or an address not learned yet
  EXPECT_EQ(NotLeaderError(hint).message(), "not the leader; leader is 3");
  hint.set_leader_id(raft::kNoNode);
  EXPECT_EQ(NotLeaderError(hint).message(), "not the leader; no leader known");
  EXPECT_EQ(GetNotLeader(NotLeaderError(hint))->leader_id(), raft::kNoNode);
}

TEST_F(StartedGroup, FollowersAnswerNotLeaderWithTheLeadersAddress) {
  raft::NodeId follower = AFollower(c, leader, 3);

  // In process: FailedPrecondition with a NotLeader payload.
  absl::StatusOr<kv::v1::WriteResponse> w =
      c.replica(follower).Write(PutRequest(Key(1), "x"), In(absl::Seconds(5)));
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kFailedPrecondition);
  std::optional<kv::v1::NotLeader> hint = GetNotLeader(w.status());
  ASSERT_TRUE(hint.has_value());
  EXPECT_EQ(hint->leader_id(), leader);
  EXPECT_EQ(hint->leader_address(), c.address(leader));
  EXPECT_FALSE(
      GetNotLeader(c.replica(follower).Get(GetRequest(Key(1)), In(absl::Seconds(5))).status())
          ->leader_address()
          .empty());

  // Over gRPC: FAILED_PRECONDITION + the trailing metadata kv.proto documents.
  auto stub = kv::v1::KvService::NewStub(*MakeReplicaChannel(c.address(follower)));
  grpc::ClientContext ctx;
  kv::v1::WriteResponse resp;
  grpc::Status s = stub->Write(&ctx, PutRequest(Key(1), "x"), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  const auto& md = ctx.GetServerTrailingMetadata();
  auto addr = md.find(kLeaderMetadata);
  ASSERT_NE(addr, md.end());
  EXPECT_EQ(std::string(addr->second.data(), addr->second.size()), c.address(leader));
  auto bin = md.find(kNotLeaderMetadata);
  ASSERT_NE(bin, md.end());
  kv::v1::NotLeader parsed;
  ASSERT_TRUE(parsed.ParseFromArray(bin->second.data(), static_cast<int>(bin->second.size())));
  EXPECT_EQ(parsed.leader_id(), leader);

  // Bad input names the field, on any replica.
  grpc::ClientContext ctx2;
  s = stub->Write(&ctx2, PutRequest("", "x"), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("ops[0].put.key"), std::string::npos) << s.error_message();
  // Reserved system keys are refused.
  absl::StatusOr<kv::v1::WriteResponse> reserved = c.replica(leader).Write(
      PutRequest(std::string("\0mailgrid/peer/x", 16), "evil"), In(absl::Seconds(5)));
  EXPECT_EQ(reserved.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StartedGroup, KvClientFollowsRedirectsAndRetriesAreAppliedOnce) {
  raft::NodeId follower = AFollower(c, leader, 3);

  // Start from a follower only: the client must follow the redirect.
  KvClientOptions o;
  o.addresses = {c.address(follower)};
  o.timeout = absl::Seconds(30);
  absl::StatusOr<std::unique_ptr<KvClient>> client = KvClient::Create(o);
  ASSERT_TRUE(client.ok());
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<kv::v1::WriteResponse> w =
        (*client)->Write(PutRequest(Key(i), absl::StrCat("v", i)));
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_FALSE(w->replayed());
  }
  EXPECT_EQ((*client)->leader(), c.address(leader));
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<kv::v1::GetResponse> r = (*client)->Get(GetRequest(Key(i)));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->value(), absl::StrCat("v", i));
  }

  // The same request id twice: the second is answered from the record.
  kv::v1::WriteRequest counter = PutRequest(Key(100), "first");
  *counter.mutable_request_id() = (*client)->NextRequestId();
  absl::StatusOr<kv::v1::WriteResponse> first = (*client)->Write(counter);
  ASSERT_TRUE(first.ok()) << first.status();
  counter.mutable_ops(0)->mutable_put()->set_value("second");  // must NOT apply
  absl::StatusOr<kv::v1::WriteResponse> again = (*client)->Write(counter);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->replayed());
  EXPECT_EQ(again->applied_index(), first->applied_index());
  absl::StatusOr<kv::v1::GetResponse> r = (*client)->Get(GetRequest(Key(100)));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->value(), "first");

  // Scan sees the 21 keys in order.
  kv::v1::ScanRequest scan;
  scan.set_prefix("\x02t/");
  scan.set_limit(1000);
  absl::StatusOr<kv::v1::ScanResponse> page = (*client)->Scan(scan);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->entries_size(), 21);
}

TEST_F(StartedGroup, LeadershipTransferMovesTheLeaderAndWritesContinue) {
  ASSERT_TRUE(c.replica(leader).Write(PutRequest(Key(1), "a"), In(absl::Seconds(30))).ok());
  raft::NodeId target = AFollower(c, leader, 3);

  absl::Status s = c.replica(leader).TransferLeadership(target, In(absl::Seconds(30)));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(c.WaitForLeader(), target);

  absl::StatusOr<std::unique_ptr<KvClient>> client = KvClient::Create(c.AddressList());
  ASSERT_TRUE(client.ok());
  absl::StatusOr<kv::v1::WriteResponse> w = (*client)->Write(PutRequest(Key(2), "b"));
  ASSERT_TRUE(w.ok()) << w.status();
  absl::StatusOr<kv::v1::GetResponse> r = (*client)->Get(GetRequest(Key(1)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value(), "a");
  // A transfer asked of a follower is a NOT_LEADER.
  EXPECT_TRUE(
      GetNotLeader(c.replica(leader).TransferLeadership(target, In(absl::Seconds(1)))).has_value());
}

TEST_F(StartedGroup, AddLearnerPromoteAndRemove) {
  absl::StatusOr<std::unique_ptr<KvClient>> client = KvClient::Create(c.AddressList());
  ASSERT_TRUE(client.ok());
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE((*client)->Write(PutRequest(Key(i), absl::StrCat("v", i))).ok());
  }

  ASSERT_EQ(c.StartJoiner(4), absl::OkStatus());
  EXPECT_FALSE(c.replica(4).Ready());
  absl::StatusOr<raft::Index> added =
      c.replica(leader).AddLearner(4, c.address(4), In(absl::Seconds(30)));
  ASSERT_TRUE(added.ok()) << added.status();
  raft::Index leader_applied = c.replica(leader).Status().applied;
  ASSERT_TRUE(c.WaitApplied(4, leader_applied));
  EXPECT_EQ(c.replica(4).Status().conf.learners, std::vector<raft::NodeId>{4});
  absl::StatusOr<kv::v1::GetResponse> stale =
      c.replica(4).Get(GetRequest(Key(29), kv::v1::STALE), In(absl::Seconds(5)));
  ASSERT_TRUE(stale.ok());
  EXPECT_EQ(stale->value(), "v29");
  EXPECT_TRUE(WaitUntil([&] { return c.replica(4).Ready(); }));

  // Promote (the address is already replicated).
  leader = c.WaitForLeader();
  absl::StatusOr<raft::Index> promoted = c.replica(leader).AddVoter(4, "", In(absl::Seconds(30)));
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  ReplicaStatus st = c.replica(leader).Status();
  EXPECT_EQ(st.conf.voters, (std::vector<raft::NodeId>{1, 2, 3, 4}));
  EXPECT_TRUE(st.conf.learners.empty());
  EXPECT_EQ(st.addresses.at(4), c.address(4));

  // Remove a follower other than 4, then stop it.
  raft::NodeId victim = raft::kNoNode;
  for (raft::NodeId id : {1, 2, 3}) {
    if (id != leader) victim = id;
  }
  absl::StatusOr<raft::Index> removed = c.replica(leader).RemoveNode(victim, In(absl::Seconds(30)));
  ASSERT_TRUE(removed.ok()) << removed.status();
  c.Stop(victim);
  EXPECT_EQ(c.replica(leader).Status().conf.voters.size(), 3u);
  // The group of three (with 4) still commits and 4 sees it.
  absl::StatusOr<kv::v1::WriteResponse> w = (*client)->Write(PutRequest(Key(999), "after"));
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(c.WaitApplied(4, w->applied_index()));
  EXPECT_EQ(c.replica(4).Get(GetRequest(Key(999), kv::v1::STALE), In(absl::Seconds(5)))->value(),
            "after");
}

// A small compaction threshold so that a new member needs a snapshot.
ReplicaOptions CompactingOptions() {
  ReplicaOptions o = TestCluster::DefaultOptions();
  o.compact_log_entries = 50;
  o.compact_keep_entries = 10;
  o.snapshot_chunk_bytes = 512;  // many chunks, even for a small state
  return o;
}

void WriteKeys(KvClient& client, int from, int to) {
  for (int i = from; i < to; ++i) {
    absl::StatusOr<kv::v1::WriteResponse> w =
        client.Write(PutRequest(Key(i), std::string(100, static_cast<char>('a' + i % 26))));
    ASSERT_TRUE(w.ok()) << w.status();
  }
}

void ExpectAllKeys(Replica& r, int n) {
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<kv::v1::GetResponse> g =
        r.Get(GetRequest(Key(i), kv::v1::STALE), In(absl::Seconds(5)));
    ASSERT_TRUE(g.ok()) << g.status();
    ASSERT_TRUE(g->found()) << "key " << i;
    EXPECT_EQ(g->value(), std::string(100, static_cast<char>('a' + i % 26)));
  }
}

// The log is compacted by size as well as by count: mailstored's entries
// carry message bodies, and 5,000 of them held 529 MB. Far below the entry
// limit, 64 KiB values past a 1 MiB byte limit get every replica's log
// compacted, keeping about a quarter MiB of entries.
TEST(ReplicaTest, LogIsCompactedWhenItsEntriesTakeTooManyBytes) {
  ReplicaOptions o = TestCluster::DefaultOptions();
  o.compact_log_entries = 100000;
  o.compact_keep_entries = 5000;
  o.compact_log_bytes = 1 << 20;
  TestCluster c(o);
  ASSERT_EQ(c.StartGroup(3), absl::OkStatus());
  ASSERT_NE(c.WaitForLeader(), raft::kNoNode);
  absl::StatusOr<std::unique_ptr<KvClient>> client = KvClient::Create(c.AddressList());
  ASSERT_TRUE(client.ok());
  std::mt19937 rng(3);
  auto value = [&rng] {
    std::string v(64 << 10, '\0');
    for (char& ch : v) ch = static_cast<char>(rng());  // not compressible
    return v;
  };
  const std::string first = value();
  ASSERT_TRUE((*client)->Write(PutRequest(Key(0), first)).ok());
  for (int i = 1; i < 64; ++i) {
    absl::StatusOr<kv::v1::WriteResponse> w = (*client)->Write(PutRequest(Key(i), value()));
    ASSERT_TRUE(w.ok()) << w.status();
  }
  for (raft::NodeId id : {1, 2, 3}) {
    const bool compacted = WaitUntil([&] {
      ReplicaStatus st = c.replica(id).Status();
      return st.first_index > 1 && st.last_index - st.first_index + 1 < 40;
    });
    ReplicaStatus st = c.replica(id).Status();
    EXPECT_TRUE(compacted) << "replica " << id << ": log " << st.first_index << ".."
                           << st.last_index;
  }
  absl::StatusOr<kv::v1::GetResponse> g =
      c.replica(1).Get(GetRequest(Key(0), kv::v1::STALE), In(absl::Seconds(5)));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->value(), first);
}

TEST(ReplicaTest, NewMemberCatchesUpFromASnapshot) {
  TestCluster c(CompactingOptions());
  ASSERT_EQ(c.StartGroup(3), absl::OkStatus());
  raft::NodeId leader = c.WaitForLeader();
  ASSERT_NE(leader, raft::kNoNode);
  absl::StatusOr<std::unique_ptr<KvClient>> client = KvClient::Create(c.AddressList());
  ASSERT_TRUE(client.ok());
  WriteKeys(**client, 0, 300);
  // The log no longer starts at 1: only a snapshot can bring a member up.
  ASSERT_TRUE(WaitUntil([&] { return c.replica(leader).Status().first_index > 1; }));

  ASSERT_EQ(c.StartJoiner(4, CompactingOptions()), absl::OkStatus());
  ASSERT_TRUE(c.replica(leader).AddLearner(4, c.address(4), In(absl::Seconds(30))).ok());
  WriteKeys(**client, 300, 400);  // writes continue during the catch-up
  raft::Index target = c.replica(leader).Status().applied;
  ASSERT_TRUE(c.WaitApplied(4, target));
  // (applied moves with the state machine restore, the counter right after)
  EXPECT_TRUE(WaitUntil([&] { return c.replica(4).Status().snapshots_installed >= 1; }));
  ExpectAllKeys(c.replica(4), 400);
}

TEST(ReplicaTest, CorruptedSnapshotChunksAreRefusedAndFetchedAgain) {
  TestCluster c(CompactingOptions());
  ASSERT_EQ(c.StartGroup(3), absl::OkStatus());
  raft::NodeId leader = c.WaitForLeader();
  ASSERT_NE(leader, raft::kNoNode);
  absl::StatusOr<std::unique_ptr<KvClient>> client = KvClient::Create(c.AddressList());
  ASSERT_TRUE(client.ok());
  WriteKeys(**client, 0, 300);
  ASSERT_TRUE(WaitUntil([&] { return c.replica(leader).Status().first_index > 1; }));

  // One chunk damaged in transit (CRC catches it), one at the source (the
  // file's SHA-256 catches it); the leader must not change meanwhile.
  c.replica(leader).test_hooks().CorruptSnapshotChunks(1, 1);
  ASSERT_EQ(c.StartJoiner(4, CompactingOptions()), absl::OkStatus());
  ASSERT_TRUE(c.replica(leader).AddLearner(4, c.address(4), In(absl::Seconds(30))).ok());
  raft::Index target = c.replica(leader).Status().applied;
  ASSERT_TRUE(c.WaitApplied(4, target, absl::Seconds(120)));
  EXPECT_TRUE(WaitUntil([&] { return c.replica(4).Status().snapshots_installed >= 1; }));
  ReplicaStatus st = c.replica(4).Status();
  EXPECT_GE(st.snapshot_chunks_refused, 2u);
  // The retries resumed: files verified in a failed attempt were not re-sent.
  EXPECT_GE(st.snapshot_files_reused, 1u);
  EXPECT_GE(st.snapshots_installed, 1u);
  ExpectAllKeys(c.replica(4), 300);
}

TEST(ReplicaTest, DiskFullRefusesWritesThenResumes) {
  kv::testing::DiskFullEnv disk;
  ReplicaOptions o = TestCluster::DefaultOptions();
  o.engine.env = disk.env.get();
  TestCluster c(o);
  ASSERT_EQ(c.StartGroup(1), absl::OkStatus());
  ASSERT_EQ(c.WaitForLeader(), 1u);
  Replica& r = c.replica(1);
  ASSERT_TRUE(r.Write(PutRequest(Key(1), "before"), In(absl::Seconds(30))).ok());

  disk.fs->SetFull(true);
  // The first write finds the disk full while persisting: its outcome is
  // unknown to the caller (deadline) or refused; from then on it is refused.
  absl::StatusOr<kv::v1::WriteResponse> w =
      r.Write(PutRequest(Key(2), "during"), In(absl::Seconds(3)));
  EXPECT_FALSE(w.ok());
  ASSERT_TRUE(WaitUntil([&] { return r.Status().disk_full; }));
  std::string reason;
  EXPECT_FALSE(r.Ready(&reason));
  EXPECT_NE(reason.find("disk full"), std::string::npos) << reason;
  w = r.Write(PutRequest(Key(3), "refused"), In(absl::Seconds(3)));
  EXPECT_EQ(w.status().code(), absl::StatusCode::kResourceExhausted) << w.status();
  // Reads still work.
  absl::StatusOr<kv::v1::GetResponse> g =
      r.Get(GetRequest(Key(1), kv::v1::STALE), In(absl::Seconds(3)));
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->value(), "before");

  disk.fs->SetFull(false);
  ASSERT_TRUE(WaitUntil([&] { return !r.Status().disk_full; }));
  absl::StatusOr<kv::v1::WriteResponse> after;
  ASSERT_TRUE(WaitUntil([&] {
    after = r.Write(PutRequest(Key(4), "after"), In(absl::Seconds(5)));
    return after.ok();
  })) << after.status();
  g = r.Get(GetRequest(Key(4)), In(absl::Seconds(10)));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->value(), "after");
  // The write that hit the full disk was retried by the loop, not lost or
  // doubled: it is either applied once or (never acknowledged) absent.
  g = r.Get(GetRequest(Key(3)), In(absl::Seconds(10)));
  ASSERT_TRUE(g.ok());
  EXPECT_FALSE(g->found());
  EXPECT_TRUE(WaitUntil([&] { return r.Ready(); }));
}

TEST_F(StartedGroup, RestartedMemberKeepsItsDataAndRejoins) {
  absl::StatusOr<std::unique_ptr<KvClient>> client = KvClient::Create(c.AddressList());
  ASSERT_TRUE(client.ok());
  WriteKeys(**client, 0, 20);
  c.Stop(leader);
  WriteKeys(**client, 20, 40);  // the other two elect a leader and go on
  ASSERT_EQ(c.Restart(leader), absl::OkStatus());
  raft::NodeId now_leader = c.WaitForLeader();
  ASSERT_NE(now_leader, raft::kNoNode);
  raft::Index target = c.replica(now_leader).Status().commit;
  ASSERT_TRUE(c.WaitApplied(leader, target));
  ExpectAllKeys(c.replica(leader), 40);
}

// A follower learns a commit up to --raft-commit-delay after its leader
// (and the leader's published Status().commit may trail its answered
// writes by a loop turn): wait for the last key itself.
bool HasKeyEventually(Replica& r, int i) {
  return WaitUntil([&] {
    absl::StatusOr<kv::v1::GetResponse> g =
        r.Get(GetRequest(Key(i), kv::v1::STALE), In(absl::Seconds(5)));
    return g.ok() && g->found();
  });
}

double StreamsOpened(Replica& r) { return r.metrics().send_streams_opened->Value(); }
double StreamFallbacks(Replica& r) { return r.metrics().send_stream_fallbacks->Value(); }

// Peers talk over one SendStream call each. A restarted follower breaks the
// streams to it; they are opened again, and the group commits through it.
TEST_F(StartedGroup, SendStreamsReconnectAfterAPeerRestart) {
  absl::StatusOr<std::unique_ptr<KvClient>> client = KvClient::Create(c.AddressList());
  ASSERT_TRUE(client.ok());
  WriteKeys(**client, 0, 20);
  // One stream to each follower at least (more only after a failure).
  EXPECT_GE(StreamsOpened(c.replica(leader)), 2);
  const double opened = StreamsOpened(c.replica(leader));

  raft::NodeId restarted = AFollower(c, leader, 3);
  raft::NodeId other = 6 - leader - restarted;
  c.Stop(restarted);
  ASSERT_EQ(c.Restart(restarted), absl::OkStatus());
  // Now nothing commits unless `leader` and `restarted` reach each other
  // again, which needs new streams to the new process (the old connection
  // ended with it).
  c.Stop(other);
  WriteKeys(**client, 20, 40);
  raft::NodeId now_leader = c.WaitForLeader();
  ASSERT_NE(now_leader, raft::kNoNode);
  ASSERT_TRUE(HasKeyEventually(c.replica(restarted), 39));
  ExpectAllKeys(c.replica(restarted), 40);
  ExpectAllKeys(c.replica(leader), 40);
  EXPECT_GT(StreamsOpened(c.replica(leader)), opened);
  EXPECT_GE(StreamsOpened(c.replica(restarted)), 1);
  // Streams, not the unary fallback, carried it.
  EXPECT_EQ(StreamFallbacks(c.replica(leader)), 0);
  EXPECT_EQ(StreamFallbacks(c.replica(restarted)), 0);
}

double WireConnections(Replica& r) { return r.metrics().wire_connections->Value(); }
double WireMessagesSent(Replica& r) { return r.metrics().wire_messages_sent->Value(); }

// The raft wire (wire.h): members that announce a wire port carry their
// messages on it; a member without one (--raft-wire=false, or a replica
// from before the wire) is reached and heard over gRPC. A member restarted
// on a new wire port is reconnected to once it announces it.
TEST(ReplicaTest, RaftWireCarriesTheLogAndAMemberWithoutItUsesGrpc) {
  ReplicaOptions base = TestCluster::DefaultOptions();
  base.wire = true;
  TestCluster c(base);
  c.Override(3, [](ReplicaOptions& o) { o.wire = false; });
  ASSERT_EQ(c.StartGroup(3), absl::OkStatus());
  raft::NodeId leader = c.WaitForLeader();
  ASSERT_NE(leader, raft::kNoNode);
  // Followers send only to the leader: with 3 leading, 1 and 2 would never
  // hear of each other's wire. Lead from a wire member.
  if (leader == 3) {
    ASSERT_TRUE(c.replica(3).TransferLeadership(1, In(absl::Seconds(30))).ok());
    leader = c.WaitForLeader();
    ASSERT_NE(leader, raft::kNoNode);
  }
  absl::StatusOr<std::unique_ptr<KvClient>> client = KvClient::Create(c.AddressList());
  ASSERT_TRUE(client.ok());
  WriteKeys(**client, 0, 20);
  // 1 and 2 connect to each other; nobody connects to 3, and 3 to nobody.
  ASSERT_TRUE(WaitUntil([&] { return WireConnections(c.replica(1)) >= 1; }));
  ASSERT_TRUE(WaitUntil([&] { return WireConnections(c.replica(2)) >= 1; }));
  EXPECT_EQ(WireConnections(c.replica(3)), 0);
  EXPECT_EQ(WireMessagesSent(c.replica(3)), 0);

  // Commits now need 1 and 2 only: stop 3, and the wire carries them.
  c.Stop(3);
  leader = c.WaitForLeader();
  ASSERT_NE(leader, raft::kNoNode);
  const double on_wire = WireMessagesSent(c.replica(leader));
  WriteKeys(**client, 20, 40);
  EXPECT_GE(WireMessagesSent(c.replica(leader)) - on_wire, 20);
  const raft::NodeId follower = 3 - leader;
  ASSERT_TRUE(HasKeyEventually(c.replica(follower), 39));

  // The follower restarts on a new wire port; it announces it and the
  // leader connects there (commits need it: 3 is still down).
  const double leader_connections = WireConnections(c.replica(leader));
  c.Stop(follower);
  ASSERT_EQ(c.Restart(follower), absl::OkStatus());
  WriteKeys(**client, 40, 60);
  ASSERT_NE(c.WaitForLeader(), raft::kNoNode);
  ASSERT_TRUE(HasKeyEventually(c.replica(follower), 59));
  ExpectAllKeys(c.replica(follower), 60);
  ASSERT_TRUE(WaitUntil([&] { return WireConnections(c.replica(leader)) > leader_connections; }));

  // 3 comes back (still without a wire) and catches up over gRPC.
  ASSERT_EQ(c.Restart(3), absl::OkStatus());
  ASSERT_TRUE(HasKeyEventually(c.replica(3), 59));
  ExpectAllKeys(c.replica(3), 60);
  EXPECT_EQ(WireMessagesSent(c.replica(3)), 0);
}

// A peer without SendStream (a replica from before it, during a rolling
// upgrade) answers UNIMPLEMENTED; the others send to it with unary Send
// calls, and once it serves streams (upgraded and restarted) they use those.
TEST(ReplicaTest, SendFallsBackToUnaryCallsForAPeerWithoutStreams) {
  TestCluster c;
  c.ServeSendStream(3, false);
  ASSERT_EQ(c.StartGroup(3), absl::OkStatus());
  raft::NodeId leader = c.WaitForLeader();
  ASSERT_NE(leader, raft::kNoNode);
  absl::StatusOr<std::unique_ptr<KvClient>> client = KvClient::Create(c.AddressList());
  ASSERT_TRUE(client.ok());
  WriteKeys(**client, 0, 20);
  // Whoever sent to node 3 (the leader does, every heartbeat) fell back.
  ASSERT_TRUE(WaitUntil(
      [&] { return StreamFallbacks(c.replica(1)) + StreamFallbacks(c.replica(2)) >= 1; }));
  // Commits now need node 3: stop the third member (not the leader, not 3).
  raft::NodeId third = leader == 3 ? 1 : 6 - leader - 3;
  c.Stop(third);
  WriteKeys(**client, 20, 40);
  raft::NodeId now_leader = c.WaitForLeader();
  ASSERT_NE(now_leader, raft::kNoNode);
  ASSERT_TRUE(HasKeyEventually(c.replica(3), 39));
  ExpectAllKeys(c.replica(3), 40);

  // Upgraded: the next channel to it tries a stream first, and gets one.
  raft::NodeId survivor = 6 - third - 3;
  const double fallbacks = StreamFallbacks(c.replica(survivor));
  c.ServeSendStream(3, true);
  ASSERT_EQ(c.Restart(3), absl::OkStatus());
  WriteKeys(**client, 40, 60);
  now_leader = c.WaitForLeader();
  ASSERT_NE(now_leader, raft::kNoNode);
  ASSERT_TRUE(HasKeyEventually(c.replica(3), 59));
  ExpectAllKeys(c.replica(3), 60);
  EXPECT_EQ(StreamFallbacks(c.replica(survivor)), fallbacks);
}

// A write whose entry cannot commit (the followers are gone) is answered at
// its deadline by the loop, in-process and over gRPC (KvService.Write is a
// callback method: nothing blocks a thread meanwhile), and a pending
// callback call does not keep the server from shutting down.
TEST_F(StartedGroup, WriteThatCannotCommitIsAnsweredAtItsDeadline) {
  ASSERT_TRUE(c.replica(leader).Write(PutRequest(Key(1), "one"), In(absl::Seconds(30))).ok());
  for (raft::NodeId id = 1; id <= 3; ++id) {
    if (id != leader) c.Stop(id);
  }
  auto done = std::make_shared<Completion<kv::v1::WriteResponse>>();
  c.replica(leader).WriteAsync(
      PutRequest(Key(2), "two"), In(absl::Milliseconds(300)),
      [done](absl::StatusOr<kv::v1::WriteResponse> r) { done->Set(std::move(r)); });
  ASSERT_TRUE(WaitUntil([&] { return done->done(); }));
  absl::StatusOr<kv::v1::WriteResponse> r = done->Wait(In(absl::Seconds(1)), "not answered");
  // Proposed while still leader: the outcome is unknown at the deadline.
  // (Had CheckQuorum deposed the leader first, it answers NOT_LEADER.)
  if (!absl::IsFailedPrecondition(r.status())) {
    EXPECT_TRUE(absl::IsDeadlineExceeded(r.status())) << r.status();
  }

  auto stub = kv::v1::KvService::NewStub(*MakeReplicaChannel(c.address(leader)));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(In(absl::Seconds(1))));
  kv::v1::WriteResponse resp;
  grpc::Status s = stub->Write(&ctx, PutRequest(Key(3), "three"), &resp);
  EXPECT_FALSE(s.ok());
  // Another write left pending at the server, then the server stops: Stop
  // returning at all is the check (Shutdown waits for callback calls).
  grpc::ClientContext pending_ctx;
  pending_ctx.set_deadline(absl::ToChronoTime(In(absl::Seconds(20))));
  kv::v1::WriteResponse pending_resp;
  std::thread pending(
      [&] { stub->Write(&pending_ctx, PutRequest(Key(4), "four"), &pending_resp); });
  absl::SleepFor(absl::Milliseconds(200));
  c.Stop(leader);
  pending.join();
}

// Get and Scan are callback methods: a linearizable read waits in the
// loop, not on a thread, and must still be answered at its deadline, while a
// stale read is answered at once; a server that stops with a read pending
// must not hang.
TEST_F(StartedGroup, ReadsOverGrpcAreAnsweredWithoutQuorumAtTheirDeadline) {
  ASSERT_TRUE(c.replica(leader).Write(PutRequest(Key(1), "one"), In(absl::Seconds(30))).ok());
  auto stub = kv::v1::KvService::NewStub(*MakeReplicaChannel(c.address(leader)));
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(In(absl::Seconds(30))));
    kv::v1::GetRequest get;
    get.set_key(Key(1));
    get.set_consistency(kv::v1::LINEARIZABLE);
    kv::v1::GetResponse resp;
    grpc::Status s = stub->Get(&ctx, get, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(resp.found());
    EXPECT_EQ(resp.value(), "one");
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(In(absl::Seconds(30))));
    kv::v1::ScanRequest scan;
    scan.set_prefix(Key(1));
    scan.set_consistency(kv::v1::LINEARIZABLE);
    kv::v1::ScanResponse resp;
    grpc::Status s = stub->Scan(&ctx, scan, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(resp.entries_size(), 1);
    EXPECT_EQ(resp.entries(0).value(), "one");
  }
  for (raft::NodeId id = 1; id <= 3; ++id) {
    if (id != leader) c.Stop(id);
  }
  auto done = std::make_shared<Completion<kv::v1::GetResponse>>();
  kv::v1::GetRequest get;
  get.set_key(Key(1));
  get.set_consistency(kv::v1::LINEARIZABLE);
  c.replica(leader).GetAsync(
      get, In(absl::Milliseconds(300)),
      [done](absl::StatusOr<kv::v1::GetResponse> r) { done->Set(std::move(r)); });
  ASSERT_TRUE(WaitUntil([&] { return done->done(); }));
  absl::StatusOr<kv::v1::GetResponse> r = done->Wait(In(absl::Seconds(1)), "not answered");
  // No quorum confirms the leadership: never a value. (Had CheckQuorum
  // deposed the leader first, it answers NOT_LEADER.)
  if (!absl::IsFailedPrecondition(r.status())) {
    EXPECT_TRUE(absl::IsDeadlineExceeded(r.status())) << r.status();
  }
  {
    // A stale read needs no quorum.
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(In(absl::Seconds(30))));
    kv::v1::GetRequest stale;
    stale.set_key(Key(1));
    stale.set_consistency(kv::v1::STALE);
    kv::v1::GetResponse resp;
    grpc::Status s = stub->Get(&ctx, stale, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.value(), "one");
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(In(absl::Seconds(1))));
    kv::v1::ScanRequest scan;
    scan.set_prefix(Key(1));
    scan.set_consistency(kv::v1::LINEARIZABLE);
    kv::v1::ScanResponse resp;
    EXPECT_FALSE(stub->Scan(&ctx, scan, &resp).ok());
  }
  grpc::ClientContext pending_ctx;
  pending_ctx.set_deadline(absl::ToChronoTime(In(absl::Seconds(20))));
  kv::v1::GetResponse pending_resp;
  std::thread pending([&] { stub->Get(&pending_ctx, get, &pending_resp); });
  absl::SleepFor(absl::Milliseconds(200));
  c.Stop(leader);  // returning at all is the check
  pending.join();
}

TEST_F(StartedGroup, MisroutedOrMalformedRaftTrafficIsRefused) {
  auto stub = raft::v1::RaftService::NewStub(*MakeReplicaChannel(c.address(1)));
  auto send = [&](const raft::v1::MessageBatch& batch) {
    grpc::ClientContext ctx;
    raft::v1::SendAck ack;
    return stub->Send(&ctx, batch, &ack);
  };
  raft::v1::MessageBatch batch;
  batch.set_group_id("another-shard");
  batch.set_from(2);
  batch.set_to(1);
  raft::v1::Message* m = batch.add_messages();
  m->set_type(raft::v1::MSG_HEARTBEAT);
  m->set_from(2);
  m->set_to(1);
  m->set_term(1000);  // would depose the leader if it were stepped
  grpc::Status s = send(batch);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("wrong raft group"), std::string::npos) << s.error_message();

  batch.set_group_id("test");
  batch.set_to(3);  // addressed to another node
  EXPECT_EQ(send(batch).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  batch.set_to(1);
  m->set_type(raft::v1::MSG_SNAPSHOT);  // only through a verified InstallSnapshot
  EXPECT_EQ(send(batch).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  m->set_type(static_cast<raft::v1::MessageType>(42));
  EXPECT_EQ(send(batch).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // None of it reached the core: the term did not jump to 1000.
  EXPECT_LT(c.replica(1).Status().term, 1000u);

  // The admin view over gRPC.
  grpc::ClientContext ctx;
  raft::v1::GetStatusRequest req;
  raft::v1::GetStatusResponse st;
  ASSERT_TRUE(stub->GetStatus(&ctx, req, &st).ok());
  EXPECT_EQ(st.id(), 1u);
  EXPECT_EQ(st.leader_id(), leader);
  EXPECT_EQ(st.members_size(), 3);
}

TEST(ReplicaTest, ExportsRaftMetrics) {
  ReplicaOptions o = TestCluster::DefaultOptions();
  auto registry = std::make_shared<prometheus::Registry>();
  o.registry = registry;
  TestCluster c(o);
  ASSERT_EQ(c.StartGroup(1), absl::OkStatus());
  ASSERT_EQ(c.WaitForLeader(), 1u);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c.replica(1).Write(PutRequest(Key(i), "v"), In(absl::Seconds(30))).ok());
  }
  ASSERT_TRUE(WaitUntil([&] { return c.replica(1).Status().applied >= 7; }));
  std::map<std::string, double> values;
  for (const auto& family : registry->Collect()) {
    for (const auto& metric : family.metric) {
      double v = metric.gauge.value + metric.counter.value +
                 static_cast<double>(metric.histogram.sample_count);
      if (family.name == "mailgrid_raft_role") {
        for (const auto& label : metric.label) {
          if (label.value == "leader") values["role_leader"] = metric.gauge.value;
        }
        continue;
      }
      values[family.name] += v;
    }
  }
  EXPECT_GE(values["mailgrid_raft_term"], 1);
  EXPECT_EQ(values["role_leader"], 1);
  EXPECT_GE(values["mailgrid_raft_proposals_total"], 5);
  EXPECT_GE(values["mailgrid_raft_fsync_seconds"], 5);  // observations
  EXPECT_GE(values["mailgrid_raft_entries_per_fsync"], 5);
  EXPECT_GE(values["mailgrid_raft_elections_total"], 1);
  EXPECT_GE(values["mailgrid_raft_leader_changes_total"], 1);
  EXPECT_TRUE(values.count("mailgrid_raft_commit_index"));
  EXPECT_TRUE(values.count("mailgrid_raft_applied_index"));
  EXPECT_TRUE(values.count("mailgrid_raft_apply_lag"));
  EXPECT_TRUE(values.count("mailgrid_raft_snapshot_sends_total"));
}

}  // namespace
}  // namespace mailgrid::replica
