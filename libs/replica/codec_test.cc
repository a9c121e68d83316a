#include "libs/replica/codec.h"

#include "gtest/gtest.h"

namespace mailgrid::replica {
namespace {

raft::Message RoundTrip(const raft::Message& m) {
  raft::v1::Message wire;
  ToProto(m, &wire);
  // Through bytes, as on the network.
  raft::v1::Message parsed;
  EXPECT_TRUE(parsed.ParseFromString(wire.SerializeAsString()));
  absl::StatusOr<raft::Message> back = FromProto(parsed);
  EXPECT_TRUE(back.ok()) << back.status();
  return back.ok() ? *back : raft::Message{};
}

TEST(CodecTest, AppendWithEntriesRoundTrips) {
  raft::Message m;
  m.type = raft::Message::Type::kAppend;
  m.from = 1;
  m.to = 3;
  m.term = 7;
  m.log_term = 6;
  m.index = 41;
  m.commit = 40;
  m.entries.push_back({7, 42, raft::Entry::Type::kNormal, std::string("a\0b", 3)});
  m.entries.push_back({7, 43, raft::Entry::Type::kNoop, ""});
  m.entries.push_back({7, 44, raft::Entry::Type::kConfChange,
                       raft::EncodeConfChange({raft::ConfChange::Type::kAddLearner, 9})});
  EXPECT_EQ(RoundTrip(m), m);
}

// The moving forms (the transport's) give the same wire and the same message.
TEST(CodecTest, MovingFormsMatchTheCopyingOnes) {
  raft::Message m;
  m.type = raft::Message::Type::kAppend;
  m.from = 1;
  m.to = 2;
  m.term = 3;
  m.index = 10;
  m.commit = 9;
  m.context = "ctx";
  m.entries.push_back({3, 11, raft::Entry::Type::kNormal, std::string(300, 'x')});
  m.entries.push_back({3, 12, raft::Entry::Type::kNoop, ""});
  raft::v1::Message copied;
  ToProto(m, &copied);
  raft::Message victim = m;
  raft::v1::Message moved;
  ToProto(std::move(victim), &moved);
  EXPECT_EQ(moved.SerializeAsString(), copied.SerializeAsString());
  absl::StatusOr<raft::Message> back = FromProto(std::move(moved));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, m);
  // Still checked like a copied message: an unknown entry type is refused.
  copied.mutable_entries(0)->set_type(static_cast<raft::v1::EntryType>(77));
  EXPECT_FALSE(FromProto(std::move(copied)).ok());
}

TEST(CodecTest, EveryMessageTypeRoundTrips) {
  for (int t = 0; t <= static_cast<int>(raft::Message::Type::kReadIndexResp); ++t) {
    raft::Message m;
    m.type = static_cast<raft::Message::Type>(t);
    m.from = 2;
    m.to = 1;
    m.term = 3;
    m.reject = (t % 2) == 1;
    m.reject_hint = 17;
    m.context = "ctx-" + std::to_string(t);
    if (m.type == raft::Message::Type::kSnapshot) {
      m.snapshot = {100, 3, raft::ConfState{{1, 2, 3}, {5}}};
    }
    EXPECT_EQ(RoundTrip(m), m) << "type " << t;
  }
}

TEST(CodecTest, SnapshotMetaAndConfRoundTrip) {
  raft::SnapshotMeta meta{12345, 9, raft::ConfState{{1, 4}, {2, 8}}};
  raft::v1::SnapshotMeta wire;
  ToProto(meta, &wire);
  EXPECT_EQ(FromProto(wire), meta);
}

TEST(CodecTest, ConfStateFromWireIsSorted) {
  kv::v1::ConfState wire;
  wire.add_voters(3);
  wire.add_voters(1);
  wire.add_learners(9);
  wire.add_learners(5);
  raft::ConfState conf = FromProto(wire);
  EXPECT_EQ(conf.voters, (std::vector<raft::NodeId>{1, 3}));
  EXPECT_EQ(conf.learners, (std::vector<raft::NodeId>{5, 9}));
}

TEST(CodecTest, UnknownTypesAreRefused) {
  raft::v1::Message wire;
  wire.set_type(static_cast<raft::v1::MessageType>(99));
  EXPECT_FALSE(FromProto(wire).ok());

  raft::v1::Message bad_entry;
  bad_entry.set_type(raft::v1::MSG_APPEND);
  bad_entry.add_entries()->set_type(static_cast<raft::v1::EntryType>(7));
  absl::StatusOr<raft::Message> m = FromProto(bad_entry);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mailgrid::replica
