// Format versions (README "Formats"): a group commits a state-machine format
// with a SetFormat entry; a replica whose binary applies less stops at an
// entry that needs more (never misapplies it) and refuses to open a store
// that committed more; an entry above the committed format is rejected alike
// on every replica.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "libs/kv/kv_test_util.h"
#include "libs/kv/state_machine.h"

namespace mailgrid::kv {
namespace {

using ::testing::HasSubstr;

using testing::Put;

v1::WriteRequest SetFormat(uint32_t format) {
  v1::WriteRequest r;
  r.set_set_format(format);
  return r;
}

v1::WriteRequest WithId(v1::WriteRequest r, const std::string& client, uint64_t seq) {
  r.mutable_request_id()->set_client_id(client);
  r.mutable_request_id()->set_seq(seq);
  return r;
}

// One replica (engine + state machine) that applies formats up to `max_format`.
class Node {
 public:
  Node(std::string path, uint32_t max_format) : path_(std::move(path)) {
    options_.max_format = max_format;
    auto engine = Engine::Open(path_, EngineOptions());
    EXPECT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }
  absl::Status Open() {
    absl::StatusOr<std::unique_ptr<StateMachine>> sm = StateMachine::Open(engine_.get(), options_);
    if (!sm.ok()) return sm.status();
    sm_ = std::move(*sm);
    return absl::OkStatus();
  }
  StateMachine& sm() { return *sm_; }

  // Applies `writes` at the next indexes (term 1) in one ApplyBatch call.
  absl::StatusOr<std::vector<v1::WriteResponse>> Apply(
      const std::vector<v1::WriteRequest>& writes) {
    std::vector<std::string> cmds;
    for (const v1::WriteRequest& w : writes) cmds.push_back(w.SerializeAsString());
    std::vector<ApplyInput> in;
    for (size_t i = 0; i < cmds.size(); ++i) {
      in.push_back({sm_->applied_index() + 1 + i, 1, ApplyInput::Kind::kCommand, cmds[i]});
    }
    return sm_->ApplyBatch(in);
  }
  v1::WriteResponse ApplyOne(const v1::WriteRequest& w) {
    auto r = Apply({w});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->front() : v1::WriteResponse();
  }

 private:
  std::string path_;
  StateMachineOptions options_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<StateMachine> sm_;
};

TEST(FormatTest, SetFormatRaisesTheCommittedFormatAndNeverLowersIt) {
  testing::TempDir tmp;
  {
    Node n(tmp.Sub("db"), 3);
    ASSERT_TRUE(n.Open().ok());
    EXPECT_EQ(n.sm().committed_format(), 1u);  // never set
    EXPECT_EQ(n.sm().max_format(), 3u);
    EXPECT_TRUE(n.ApplyOne(SetFormat(2)).has_ok());
    EXPECT_EQ(n.sm().committed_format(), 2u);
    EXPECT_TRUE(n.ApplyOne(SetFormat(1)).has_ok());  // an old raise: a no-op
    EXPECT_EQ(n.sm().committed_format(), 2u);
    auto stored = n.sm().Get(kFormatKey);  // readable as a plain key
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ(stored->value, "2");
    EXPECT_EQ(stored->version, 1u);
  }
  Node again(tmp.Sub("db"), 3);
  ASSERT_TRUE(again.Open().ok());
  EXPECT_EQ(again.sm().committed_format(), 2u);
}

TEST(FormatTest, AnEntryOfANewerFormatStopsApplyBeforeItAndNothingOfItIsApplied) {
  testing::TempDir tmp;
  Node n(tmp.Sub("db"), 1);
  ASSERT_TRUE(n.Open().ok());
  // The entries before it apply; the call stops at it.
  auto first = n.Apply({Put("a", "1"), Put("b", "2", /*min_format=*/2), Put("c", "3")});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->size(), 1u);
  EXPECT_EQ(n.sm().applied_index(), 1u);
  // Alone, it is an error naming both formats, every time it is retried.
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto stuck = n.Apply({Put("b", "2", 2), Put("c", "3")});
    EXPECT_TRUE(absl::IsFailedPrecondition(stuck.status())) << stuck.status();
    EXPECT_THAT(stuck.status().message(), HasSubstr("entry 2 needs state-machine format 2"));
    EXPECT_THAT(stuck.status().message(), HasSubstr("applies formats up to 1"));
    EXPECT_EQ(n.sm().applied_index(), 1u);
  }
  EXPECT_TRUE(absl::IsNotFound(n.sm().Get("b").status()));
  // A raise to a format it does not apply, and a batch entry with one such
  // write, stop it the same way.
  auto raise = n.Apply({SetFormat(2)});
  EXPECT_TRUE(absl::IsFailedPrecondition(raise.status())) << raise.status();
  v1::WriteRequest batch;
  *batch.add_batch() = Put("x", "1");
  *batch.add_batch() = Put("y", "1", 2);
  auto many = n.Apply({batch});
  EXPECT_TRUE(absl::IsFailedPrecondition(many.status())) << many.status();
  EXPECT_TRUE(absl::IsNotFound(n.sm().Get("x").status()));
  EXPECT_EQ(n.sm().applied_index(), 1u);
  EXPECT_EQ(n.sm().committed_format(), 1u);
}

TEST(FormatTest, AnEntryAboveTheCommittedFormatIsRejectedAndRecorded) {
  testing::TempDir tmp;
  Node n(tmp.Sub("db"), 2);
  ASSERT_TRUE(n.Open().ok());
  v1::WriteResponse early = n.ApplyOne(WithId(Put("k", "v", 2), "c", 1));
  ASSERT_TRUE(early.has_rejected()) << early.ShortDebugString();
  EXPECT_THAT(early.rejected().reason(), HasSubstr("the group has committed 1"));
  EXPECT_TRUE(absl::IsNotFound(n.sm().Get("k").status()));
  // Recorded like any outcome: a retry replays the rejection.
  v1::WriteResponse retry = n.ApplyOne(WithId(Put("k", "v", 2), "c", 1));
  EXPECT_TRUE(retry.has_rejected());
  EXPECT_TRUE(retry.replayed());
  // In a batch entry only that write is rejected.
  v1::WriteRequest batch;
  *batch.add_batch() = Put("x", "1");
  *batch.add_batch() = Put("y", "1", 2);
  v1::WriteResponse many = n.ApplyOne(batch);
  ASSERT_EQ(many.batch_size(), 2);
  EXPECT_TRUE(many.batch(0).has_ok());
  EXPECT_TRUE(many.batch(1).has_rejected());
  // Once the group commits format 2 (in the same call here), it applies.
  auto after = n.Apply({SetFormat(2), Put("k", "v2", 2)});
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->size(), 2u);
  EXPECT_TRUE((*after)[1].has_ok()) << (*after)[1].ShortDebugString();
  auto k = n.sm().Get("k");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->value, "v2");
}

TEST(FormatTest, SetFormatOnlyAlone) {
  testing::TempDir tmp;
  Node n(tmp.Sub("db"), 2);
  ASSERT_TRUE(n.Open().ok());
  v1::WriteRequest with_op = Put("k", "v");
  with_op.set_set_format(2);
  EXPECT_TRUE(n.ApplyOne(with_op).has_rejected());
  v1::WriteRequest batch;
  *batch.add_batch() = SetFormat(2);
  v1::WriteResponse nested = n.ApplyOne(batch);
  ASSERT_EQ(nested.batch_size(), 1);
  EXPECT_TRUE(nested.batch(0).has_rejected());
  v1::WriteRequest shaped;
  *shaped.add_batch() = Put("k", "v");
  shaped.set_set_format(2);
  EXPECT_TRUE(n.ApplyOne(shaped).has_rejected());
  EXPECT_EQ(n.sm().committed_format(), 1u);
  EXPECT_TRUE(absl::IsNotFound(n.sm().Get("k").status()));
}

TEST(FormatTest, AnOlderBinaryRefusesToOpenAStoreOfANewerCommittedFormat) {
  testing::TempDir tmp;
  {
    Node newer(tmp.Sub("db"), 2);
    ASSERT_TRUE(newer.Open().ok());
    EXPECT_TRUE(newer.ApplyOne(SetFormat(2)).has_ok());
  }
  Node older(tmp.Sub("db"), 1);
  absl::Status s = older.Open();
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("committed state-machine format is 2"));
  EXPECT_THAT(s.message(), HasSubstr("applies formats up to 1"));
}

TEST(FormatTest, TheCommittedFormatTravelsInSnapshots) {
  testing::TempDir tmp;
  Node src(tmp.Sub("src"), 2);
  ASSERT_TRUE(src.Open().ok());
  src.ApplyOne(Put("a", "1"));
  src.ApplyOne(SetFormat(2));
  ASSERT_TRUE(src.sm().CreateSnapshot(tmp.Sub("snap")).ok());

  Node same(tmp.Sub("same"), 2);
  ASSERT_TRUE(same.Open().ok());
  ASSERT_TRUE(same.sm().RestoreFromSnapshot(tmp.Sub("snap")).ok());
  EXPECT_EQ(same.sm().committed_format(), 2u);

  Node older(tmp.Sub("older"), 1);
  ASSERT_TRUE(older.Open().ok());
  absl::Status s = older.sm().RestoreFromSnapshot(tmp.Sub("snap"));
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("format is 2"));
}

}  // namespace
}  // namespace mailgrid::kv
