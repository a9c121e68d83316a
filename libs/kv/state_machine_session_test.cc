// Client sessions (format 2, README "Client sessions"): a session write's
// outcome lives in its client's ONE session record until the client's
// first_unacked passes it; a retry replays it, a stale duplicate below the
// floor is never applied again, idle sessions are swept deterministically,
// and batching never changes the result.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "libs/kv/client_seqs.h"
#include "libs/kv/kv_test_util.h"
#include "libs/kv/state_machine.h"

namespace mailgrid::kv {
namespace {

using ::testing::HasSubstr;

using testing::Put;

// A session write of client `client`: seq, the lowest seq it still awaits.
v1::WriteRequest Session(v1::WriteRequest r, const std::string& client, uint64_t seq,
                         uint64_t first_unacked) {
  r.mutable_request_id()->set_client_id(client);
  r.mutable_request_id()->set_seq(seq);
  r.mutable_request_id()->set_first_unacked(first_unacked);
  r.set_min_format(kSessionFormat);
  return r;
}

v1::WriteRequest Batch(const std::vector<v1::WriteRequest>& writes) {
  v1::WriteRequest entry;
  for (const v1::WriteRequest& w : writes) *entry.add_batch() = w;
  return entry;
}

v1::WriteRequest SetFormat(uint32_t format) {
  v1::WriteRequest r;
  r.set_set_format(format);
  return r;
}

class Node {
 public:
  explicit Node(std::string path, StateMachineOptions options = {}) : options_(options) {
    auto engine = Engine::Open(path, EngineOptions());
    EXPECT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    auto sm = StateMachine::Open(engine_.get(), options_);
    EXPECT_TRUE(sm.ok()) << sm.status();
    sm_ = std::move(*sm);
  }
  StateMachine& sm() { return *sm_; }

  // Applies `writes` at the next indexes in ONE ApplyBatch call.
  std::vector<v1::WriteResponse> Apply(const std::vector<v1::WriteRequest>& writes) {
    std::vector<std::string> cmds;
    for (const v1::WriteRequest& w : writes) cmds.push_back(w.SerializeAsString());
    std::vector<ApplyInput> in;
    for (size_t i = 0; i < cmds.size(); ++i) {
      in.push_back({sm_->applied_index() + 1 + i, 1, ApplyInput::Kind::kCommand, cmds[i]});
    }
    std::vector<v1::WriteResponse> out;
    std::span<const ApplyInput> rest(in);
    while (!rest.empty()) {
      auto r = sm_->ApplyBatch(rest);
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) return out;
      out.insert(out.end(), r->begin(), r->end());
      rest = rest.subspan(r->size());
    }
    return out;
  }
  v1::WriteResponse ApplyOne(const v1::WriteRequest& w) { return Apply({w}).at(0); }

  // Every meta key under `prefix` with its value.
  std::vector<std::pair<std::string, std::string>> Meta(std::string_view prefix) {
    std::vector<std::pair<std::string, std::string>> out;
    std::unique_ptr<rocksdb::Iterator> it(
        engine_->db()->NewIterator(rocksdb::ReadOptions(), engine_->meta()));
    for (it->Seek(rocksdb::Slice(prefix.data(), prefix.size()));
         it->Valid() && it->key().ToStringView().starts_with(prefix); it->Next()) {
      out.emplace_back(it->key().ToString(), it->value().ToString());
    }
    return out;
  }
  std::string Value(const std::string& key) {
    auto v = sm_->Get(key);
    return v.ok() ? v->value : "<" + v.status().ToString() + ">";
  }

 private:
  StateMachineOptions options_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<StateMachine> sm_;
};

class SessionTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
};

TEST_F(SessionTest, ApplyOnceReplayRetriesAndKeepOneRecordPerClient) {
  Node n(dir_.Sub("a"));
  ASSERT_TRUE(n.ApplyOne(SetFormat(kStateMachineFormat)).has_ok());
  v1::WriteResponse first = n.ApplyOne(Session(Put("k", "v1"), "c", 1, 1));
  ASSERT_TRUE(first.has_ok()) << first.ShortDebugString();
  EXPECT_TRUE(first.sessions());
  EXPECT_FALSE(first.replayed());
  // Batched writes of the same client, one of them a retry of seq 1.
  v1::WriteResponse entry = n.ApplyOne(
      Batch({Session(Put("k2", "a"), "c", 2, 1), Session(Put("k", "v1-again"), "c", 1, 1),
             Session(Put("k3", "b"), "c", 3, 1)}));
  ASSERT_EQ(entry.batch_size(), 3);
  EXPECT_TRUE(entry.batch(0).has_ok());
  EXPECT_TRUE(entry.batch(1).replayed());
  EXPECT_EQ(entry.batch(1).applied_index(), first.applied_index());
  EXPECT_EQ(n.Value("k"), "v1");  // not applied again
  EXPECT_EQ(n.Value("k2"), "a");
  // A retry in a later entry (a lost answer) replays too.
  v1::WriteResponse retry = n.ApplyOne(Session(Put("k2", "other"), "c", 2, 1));
  EXPECT_TRUE(retry.replayed());
  EXPECT_EQ(retry.applied_index(), entry.applied_index());
  EXPECT_EQ(n.Value("k2"), "a");
  // One session record, no per-write records or expiry keys.
  EXPECT_EQ(n.Meta(meta_keys::kSmSession).size(), 1u);
  EXPECT_TRUE(n.Meta(meta_keys::kSmRequest).empty());
  EXPECT_TRUE(n.Meta(meta_keys::kSmRequestExpiry).empty());
  // The leader's lookup of a retry before proposing it.
  v1::RequestId id = Session(Put("x", "y"), "c", 3, 1).request_id();
  auto found = n.sm().FindRecordedOutcome(id);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->applied_index(), entry.applied_index());
}

TEST_F(SessionTest, TheFloorForgetsAnsweredWritesAndAStaleDuplicateIsNeverAppliedAgain) {
  Node n(dir_.Sub("a"));
  ASSERT_TRUE(n.ApplyOne(SetFormat(kStateMachineFormat)).has_ok());
  ASSERT_TRUE(n.ApplyOne(Session(Put("k", "v1"), "c", 1, 1)).has_ok());
  ASSERT_TRUE(n.ApplyOne(Session(Put("k", "v2"), "c", 2, 2)).has_ok());  // 1 answered
  v1::ClientSession s;
  auto stored = n.Meta(meta_keys::kSmSession);
  ASSERT_EQ(stored.size(), 1u);
  ASSERT_TRUE(s.ParseFromString(stored[0].second));
  EXPECT_EQ(s.floor(), 2u);
  ASSERT_EQ(s.outcomes_size(), 1);
  EXPECT_EQ(s.outcomes(0).seq(), 2u);
  // A delayed duplicate of seq 1 (say, an old leader's late proposal).
  v1::WriteResponse stale = n.ApplyOne(Session(Put("k", "v1"), "c", 1, 1));
  ASSERT_TRUE(stale.has_rejected()) << stale.ShortDebugString();
  EXPECT_THAT(stale.rejected().reason(), HasSubstr("below its session's floor"));
  EXPECT_EQ(n.Value("k"), "v2");
  // The floor never goes down (the duplicate's older first_unacked).
  ASSERT_TRUE(s.ParseFromString(n.Meta(meta_keys::kSmSession)[0].second));
  EXPECT_EQ(s.floor(), 2u);
  // Other clients have sessions of their own.
  EXPECT_TRUE(n.ApplyOne(Session(Put("j", "x"), "d", 1, 1)).has_ok());
  EXPECT_EQ(n.Meta(meta_keys::kSmSession).size(), 2u);
}

// The floor defect (README "The floor defect", session 25): a client's
// seq 82 applied before its seq 81 (two callers, the later one first in
// the entry), both announcing 81 as the lowest awaited, while an older
// outcome (80) is still kept. Format 2 moved the floor to 82, the first
// outcome kept after dropping 80, and rejected 81 without applying it; from
// format 3 the floor moves only past what the bound drops.
std::vector<v1::WriteResponse> LowerSeqAfterHigher(Node& n, uint32_t format) {
  EXPECT_TRUE(n.ApplyOne(SetFormat(format)).has_ok());
  EXPECT_TRUE(n.ApplyOne(Session(Put("k80", "v"), "c", 80, 80)).has_ok());
  return n.Apply({Batch({Session(Put("k82", "v"), "c", 82, 81),
                         Session(Put("k81", "v"), "c", 81, 81)})});
}

TEST_F(SessionTest, ALowerSeqAppliedAfterAHigherOneIsApplied) {
  Node n(dir_.Sub("a"));
  std::vector<v1::WriteResponse> out = LowerSeqAfterHigher(n, kStateMachineFormat);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].batch_size(), 2);
  EXPECT_TRUE(out[0].batch(0).has_ok()) << out[0].ShortDebugString();
  EXPECT_TRUE(out[0].batch(1).has_ok()) << out[0].ShortDebugString();
  EXPECT_EQ(n.Value("k81"), "v");
  v1::ClientSession s;
  ASSERT_TRUE(s.ParseFromString(n.Meta(meta_keys::kSmSession)[0].second));
  EXPECT_EQ(s.floor(), 81u);
  // A stale duplicate of 80 is still refused.
  EXPECT_TRUE(n.ApplyOne(Session(Put("k80", "again"), "c", 80, 80)).has_rejected());
}

TEST_F(SessionTest, FormatTwoGroupsKeepTheirFloorRuleSoReplicasAgree) {
  Node n(dir_.Sub("a"));
  std::vector<v1::WriteResponse> out = LowerSeqAfterHigher(n, kSessionFormat);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].batch_size(), 2);
  EXPECT_TRUE(out[0].batch(0).has_ok());
  EXPECT_TRUE(out[0].batch(1).has_rejected()) << out[0].ShortDebugString();
  // And a format-2 group offers its clients no sessions any more.
  EXPECT_FALSE(out[0].batch(0).sessions());
}

TEST_F(SessionTest, OutOfOrderSeqsAndConditionsAreRecordedLikeAnyOutcome) {
  Node n(dir_.Sub("a"));
  ASSERT_TRUE(n.ApplyOne(SetFormat(kStateMachineFormat)).has_ok());
  // Seqs 5, 3, 4 arrive out of order (concurrent callers); 3 is awaited.
  v1::WriteRequest cas = Put("k", "new");
  v1::Condition* c = cas.add_conditions();
  c->set_key("k");
  c->set_kind(v1::Condition::MUST_EXIST);
  auto out = n.Apply({Session(Put("a", "5"), "c", 5, 3), Session(cas, "c", 3, 3),
                      Session(Put("b", "4"), "c", 4, 3)});
  ASSERT_EQ(out.size(), 3u);
  EXPECT_TRUE(out[1].has_condition_failed());
  v1::ClientSession s;
  ASSERT_TRUE(s.ParseFromString(n.Meta(meta_keys::kSmSession)[0].second));
  ASSERT_EQ(s.outcomes_size(), 3);
  EXPECT_EQ(s.outcomes(0).seq(), 3u);
  EXPECT_EQ(s.outcomes(1).seq(), 4u);
  EXPECT_EQ(s.outcomes(2).seq(), 5u);
  // The failed condition replays as failed even though k now exists.
  ASSERT_TRUE(n.ApplyOne(Put("k", "exists")).has_ok());
  v1::WriteResponse again = n.ApplyOne(Session(cas, "c", 3, 3));
  EXPECT_TRUE(again.replayed());
  EXPECT_TRUE(again.has_condition_failed());
  EXPECT_EQ(n.Value("k"), "exists");
}

TEST_F(SessionTest, NeedsFormatTwoEverywhere) {
  // Without min_format: invalid (a format-1 replica would misapply it).
  Node n(dir_.Sub("a"));
  v1::WriteRequest bare = Session(Put("k", "v"), "c", 1, 1);
  bare.set_min_format(0);
  EXPECT_TRUE(n.ApplyOne(bare).has_rejected());
  // Before the group committed format 2: rejected alike on every replica.
  v1::WriteResponse early = n.ApplyOne(Session(Put("k", "v"), "c", 2, 1));
  ASSERT_TRUE(early.has_rejected());
  EXPECT_FALSE(early.sessions());
  EXPECT_EQ(n.Value("k").substr(0, 1), "<");  // not found
  // A format-1 binary stops at a session write instead of applying it.
  StateMachineOptions old;
  old.max_format = 1;
  Node o(dir_.Sub("old"), old);
  const std::string cmd = Session(Put("k", "v"), "c", 1, 1).SerializeAsString();
  const ApplyInput in{1, 1, ApplyInput::Kind::kCommand, cmd};
  auto r = o.sm().ApplyBatch({&in, 1});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("needs state-machine format 2"));
  EXPECT_EQ(o.sm().applied_index(), 0u);
}

TEST_F(SessionTest, IdleSessionsAreSweptAtFixedIndexes) {
  StateMachineOptions opts;
  opts.idempotency_window = 8;
  opts.session_sweep_interval = 4;
  Node n(dir_.Sub("a"), opts);
  ASSERT_TRUE(n.ApplyOne(SetFormat(kStateMachineFormat)).has_ok());             // 1
  ASSERT_TRUE(n.ApplyOne(Session(Put("k", "v"), "idle", 1, 1)).has_ok());  // 2
  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE(n.ApplyOne(Session(Put("b", "x"), "busy", 1 + i, 1 + i)).has_ok());
  // Index 8: the idle session (last touched at 2) is within the window.
  EXPECT_EQ(n.Meta(meta_keys::kSmSession).size(), 2u);
  for (int i = 6; i < 10; ++i)
    ASSERT_TRUE(n.ApplyOne(Session(Put("b", "x"), "busy", 1 + i, 1 + i)).has_ok());
  // Index 12 swept: 2 <= 12 - 8. The busy one stays.
  auto left = n.Meta(meta_keys::kSmSession);
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].first, internal::SessionKey("busy"));
}

TEST_F(SessionTest, AnySplitIntoBatchesGivesTheSameState) {
  StateMachineOptions opts;
  opts.idempotency_window = 6;
  opts.session_sweep_interval = 3;
  std::vector<v1::WriteRequest> entries = {SetFormat(kStateMachineFormat)};
  for (uint64_t i = 1; i <= 30; ++i) {
    const std::string client = absl::StrCat("c", i % 3);
    entries.push_back(Batch(
        {Session(Put(absl::StrCat("k", i % 5), absl::StrCat(i)), client, i, i > 2 ? i - 2 : 1),
         Session(Put("dup", absl::StrCat(i)), client, i > 1 ? i - 1 : 1, 1)}));
  }
  Node one(dir_.Sub("one"), opts), all(dir_.Sub("all"), opts);
  std::vector<v1::WriteResponse> a, b = all.Apply(entries);
  for (const v1::WriteRequest& e : entries) a.push_back(one.ApplyOne(e));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].SerializeAsString(), b[i].SerializeAsString()) << i;
  }
  EXPECT_EQ(one.Meta(meta_keys::kSmPrefix), all.Meta(meta_keys::kSmPrefix));
  for (int k = 0; k < 5; ++k) {
    EXPECT_EQ(one.Value(absl::StrCat("k", k)), all.Value(absl::StrCat("k", k)));
  }
  EXPECT_EQ(one.Value("dup"), all.Value("dup"));
}

// The bound on a session's outcomes (kMaxSessionOutcomes) and a write held
// back: the reproduction of "request N is below its session's floor" seen in
// bench/raft. A client's write is taken (seq 1) and held (its thread
// preempted before sending it, or its call's attempt retried) while the
// client's other writes go on, all announcing first_unacked 1 as they
// should. Past the bound the group drops the lowest outcomes and raises
// the floor past the held seq, so the held write, never applied, is
// answered "rejected". That is how KvClient made ids before ClientSeqs.
TEST_F(SessionTest, AWriteHeldPastTheOutcomeBoundIsRejectedWithIdsThatIgnoreIt) {
  Node n(dir_.Sub("a"));
  ASSERT_TRUE(n.ApplyOne(SetFormat(kStateMachineFormat)).has_ok());
  const v1::WriteRequest held = Session(Put("held", "v"), "c", 1, 1);
  std::vector<v1::WriteRequest> others;
  for (uint64_t seq = 2; seq <= uint64_t{kMaxSessionOutcomes} + 2; ++seq) {
    others.push_back(Session(Put(absl::StrCat("k", seq), "v"), "c", seq, 1));
  }
  for (const v1::WriteResponse& r : n.Apply(others)) ASSERT_TRUE(r.has_ok());
  v1::WriteResponse late = n.ApplyOne(held);
  ASSERT_TRUE(late.has_rejected()) << late.ShortDebugString();
  EXPECT_THAT(late.rejected().reason(), HasSubstr("request 1 is below its session's floor"));
  EXPECT_EQ(n.Value("held").substr(0, 1), "<");  // not found
}

// The fix: ClientSeqs (what KvClient uses) makes a session write only within
// kMaxSessionOutcomes of the lowest seq still awaited; later writes take
// their own records until the held one is answered. The same run as above,
// twice as long: every write applies once, the held one too.
TEST_F(SessionTest, ClientSeqsNeverLetTheBoundRejectAWriteStillAwaited) {
  Node n(dir_.Sub("a"));
  ASSERT_TRUE(n.ApplyOne(SetFormat(kStateMachineFormat)).has_ok());
  ClientSeqs seqs;
  const ClientSeqs::Taken held_id = seqs.TakeSessionSeq();
  ASSERT_TRUE(held_id.session());
  const v1::WriteRequest held = Session(Put("held", "v"), "c", held_id.seq, held_id.first_unacked);
  int own_records = 0;
  for (int round = 0; round < 2 * kMaxSessionOutcomes / 64; ++round) {
    std::vector<v1::WriteRequest> writes;
    std::vector<ClientSeqs::Taken> ids;
    for (int i = 0; i < 64; ++i) {
      const ClientSeqs::Taken t = seqs.TakeSessionSeq();
      v1::WriteRequest w = Put(absl::StrCat("k", t.seq), "v");
      if (t.session()) {
        EXPECT_EQ(t.first_unacked, held_id.seq);
        w = Session(std::move(w), "c", t.seq, t.first_unacked);
      } else {
        ++own_records;
        w.mutable_request_id()->set_client_id("c");
        w.mutable_request_id()->set_seq(t.seq);
      }
      writes.push_back(std::move(w));
      ids.push_back(t);
    }
    for (const v1::WriteResponse& r : n.Apply(writes)) {
      ASSERT_TRUE(r.has_ok()) << r.ShortDebugString();
      ASSERT_FALSE(r.replayed());
    }
    for (const ClientSeqs::Taken& t : ids) {
      if (t.session()) seqs.Answered(t.seq);
    }
  }
  // Seqs 2..kMaxSessionOutcomes were session writes, the rest own records.
  EXPECT_EQ(own_records, 2 * kMaxSessionOutcomes - (kMaxSessionOutcomes - 1));
  v1::WriteResponse late = n.ApplyOne(held);
  ASSERT_TRUE(late.has_ok()) << late.ShortDebugString();
  EXPECT_FALSE(late.replayed());
  EXPECT_EQ(n.Value("held"), "v");
  EXPECT_TRUE(n.ApplyOne(held).replayed());  // its retry: answered, not applied again
  seqs.Answered(held_id.seq);
  // Nothing awaited any more: the next write is a session write again.
  const ClientSeqs::Taken next = seqs.TakeSessionSeq();
  EXPECT_TRUE(next.session());
  EXPECT_EQ(next.first_unacked, next.seq);
}

TEST(ClientSeqsTest, FirstUnackedIsTheLowestSeqStillAwaited) {
  ClientSeqs seqs;
  const ClientSeqs::Taken a = seqs.TakeSessionSeq();
  const uint64_t plain = seqs.NextSeq();  // an own-record write: never awaited
  const ClientSeqs::Taken b = seqs.TakeSessionSeq();
  EXPECT_EQ(a.seq, 1u);
  EXPECT_EQ(a.first_unacked, 1u);
  EXPECT_EQ(plain, 2u);
  EXPECT_EQ(b.seq, 3u);
  EXPECT_EQ(b.first_unacked, 1u);
  seqs.Answered(b.seq);  // answered out of order: a still holds the floor
  EXPECT_EQ(seqs.TakeSessionSeq().first_unacked, 1u);
  seqs.Answered(a.seq);
  EXPECT_EQ(seqs.TakeSessionSeq().first_unacked, 4u);  // 4 is still awaited
}

}  // namespace
}  // namespace mailgrid::kv
