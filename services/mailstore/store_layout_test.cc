// The search layout gate (layout_gate.cc) and the migration of folders
// with per-message postings to per-term UID blocks (store_indexer.cc): a
// group stays on the old layout until every member reported that it reads
// blocks; then new folders get blocks and old ones move over in bounded
// rounds, with every search answering as the per-message layout would at
// every step, across lost rounds, a change of leader and expunges.
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/store/local_store.h"
#include "services/mailstore/keys.h"
#include "services/mailstore/mail_store.h"
#include "services/mailstore/mailstore_storage.pb.h"
#include "services/mailstore/store_internal.h"
#include "services/mailstore/testing/store_fixture.h"

namespace mailgrid::mailstore {
namespace {

using testing::CountingStore;
using U = std::vector<uint32_t>;

class LayoutTest : public testing::StoreFixture {
 protected:
  // The oracle: a second store (its own RocksDB) with blocks off, where
  // "mbx-a" gets the same messages and keeps per-message postings.
  void SetUp() override {
    StoreFixture::SetUp();
    reference_dir_ = dir_.string() + "-reference";
    auto local = store::LocalStore::Open(reference_dir_);
    ASSERT_TRUE(local.ok()) << local.status();
    reference_kv_ = std::move(*local);
    reference_ = std::make_unique<MailStore>(reference_kv_.get(), StoreFixture::Options());
    CreateMailbox("mbx-a", reference_.get());
  }
  void TearDown() override {
    reference_.reset();
    reference_kv_.reset();
    std::filesystem::remove_all(reference_dir_);
    StoreFixture::TearDown();
  }
  StoreOptions Options() override {
    StoreOptions o = StoreFixture::Options();
    o.deferred_index = true;
    o.gate_block_layout = true;
    o.index_round_messages = 7;  // many rounds for a small folder
    return o;
  }
  void Report(uint64_t member, uint32_t layout, absl::Time at = absl::InfinitePast()) {
    if (at == absl::InfinitePast()) {
      ASSERT_TRUE(MailStore::ReportLayoutSupport(counting_.get(), member, layout, absl::Seconds(5)).ok());
      return;
    }
    storage::LayoutSupportRecord rec;
    rec.set_reads_layout(layout);
    rec.set_at_micros(absl::ToUnixMicros(at));
    kv::v1::WriteRequest w;
    auto* p = w.add_ops()->mutable_put();
    p->set_key(keys::LayoutSupport(member));
    p->set_value(rec.SerializeAsString());
    ASSERT_TRUE(kv_->Write(w, absl::InfiniteFuture()).ok());
  }
  bool Open(MailStore* on = nullptr) {
    auto open = (on ? on : store_.get())->OpenBlockLayoutIfSupported({1, 2, 3}, absl::Seconds(60));
    EXPECT_TRUE(open.ok()) << open.status();
    return open.ok() && *open;
  }
  void OpenAndQueue(size_t expect_folders) {
    for (uint64_t id : {1, 2, 3}) Report(id, kBlockLayout);
    ASSERT_TRUE(Open());
    bool ended = false;
    auto queued = store_->QueueMigrations(64, &ended);
    ASSERT_TRUE(queued.ok()) << queued.status();
    EXPECT_EQ(*queued, expect_folders);
    EXPECT_TRUE(ended);
    storage::FolderRecord inbox = FolderRecordOf();
    EXPECT_TRUE(inbox.block_postings());
    EXPECT_EQ(inbox.legacy_postings_below(), inbox.uidnext());
    queued = store_->QueueMigrations(64, &ended);
    ASSERT_TRUE(queued.ok());
    EXPECT_EQ(*queued, 0u) << "a second pass finds nothing left to convert";
  }
  // The same message into both stores.
  void AppendBoth(const std::string& raw) {
    for (MailStore* s : {store_.get(), reference_.get()}) {
      v1::AppendRequest r;
      r.set_mailbox_id("mbx-a");
      r.mutable_folder()->set_name("INBOX");
      r.set_message(raw);
      auto got = s->Append(r);
      ASSERT_TRUE(got.ok()) << got.status();
    }
  }
  void ExpungeBoth(uint32_t uid, MailStore* on = nullptr) {
    for (MailStore* s : {on ? on : store_.get(), reference_.get()}) ExpungeUid(*s, uid);
  }

  static std::string RandomMessage(std::mt19937& rng) {
    static const std::vector<std::string> words = {"alpha", "alphabet", "beta", "gamma", "delta",
                                                   "epsilon", "zeta", "eta", "theta", "iota"};
    auto pick = [&] { return words[rng() % words.size()]; };
    return absl::StrCat("From: ", pick(), " <", pick(), "@example.com>\r\nTo: ", pick(),
                        "@example.org\r\nSubject: ", pick(), " ", pick(), "\r\nX-Tag: ", pick(),
                        "\r\n\r\n", pick(), " ", pick(), " ", pick(), "\r\n");
  }
  // Every text query answers the same here (through `on`) as in the oracle.
  void ExpectSameAnswers(const std::string& stage, MailStore* on = nullptr) {
    SCOPED_TRACE(stage);
    MailStore* s = on ? on : store_.get();
    size_t nonempty = 0;
    for (auto field : {v1::TEXT_FIELD_BODY, v1::TEXT_FIELD_SUBJECT, v1::TEXT_FIELD_FROM,
                       v1::TEXT_FIELD_TO, v1::TEXT_FIELD_TEXT, v1::TEXT_FIELD_HEADER}) {
      for (const char* value : {"alpha", "alphab", "et", "gamma delta", "iota", "example", "nothing"}) {
        v1::SearchRequest r;
        r.set_mailbox_id("mbx-a");
        r.mutable_folder()->set_name("INBOX");
        r.mutable_query()->mutable_text()->set_field(field);
        r.mutable_query()->mutable_text()->set_value(value);
        if (field == v1::TEXT_FIELD_HEADER) r.mutable_query()->mutable_text()->set_header_name("X-Tag");
        auto a = s->Search(r);
        auto b = reference_->Search(r);
        ASSERT_TRUE(a.ok() && b.ok());
        EXPECT_EQ(Uids(a->uids()), Uids(b->uids())) << field << " " << value;
        nonempty += a->count() > 0;
      }
    }
    EXPECT_GT(nonempty, 10u) << "the corpus must make the comparison meaningful";
  }
  // One indexer round through `on`; the number of messages it moved.
  size_t Round(MailStore* on = nullptr) {
    auto n = (on ? on : store_.get())->IndexPending();
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? *n : 0;
  }
  bool Migrating() { return FolderRecordOf().legacy_postings_below() != 0; }
  void ExpectMigrated() {
    storage::FolderRecord inbox = FolderRecordOf();
    EXPECT_TRUE(inbox.block_postings());
    EXPECT_EQ(inbox.legacy_postings_below(), 0u);
    EXPECT_EQ(Watermark(), inbox.uidnext());
    EXPECT_EQ(CountPrefix(InboxRange("p")), 0u) << "the per-message postings are gone";
    EXPECT_GT(CountPrefix(InboxRange("w")), 0u);
    EXPECT_EQ(CountPrefix(keys::IndexQueuePrefix()), 0u);
  }

  std::string reference_dir_;
  std::unique_ptr<store::Store> reference_kv_;
  std::unique_ptr<MailStore> reference_;
};

TEST_F(LayoutTest, GroupStaysOnPerMessagePostingsUntilEveryMemberReadsBlocks) {
  // The fixture's mailbox was created with the gate closed.
  EXPECT_FALSE(store_->BlockLayoutAllowed());
  EXPECT_TRUE(FolderRecordOf().uid_postings());
  EXPECT_FALSE(FolderRecordOf().block_postings());
  ASSERT_TRUE(Append(Msg("closed", "walrus")).ok());
  EXPECT_GT(CountPrefix(InboxRange("p")), 0u) << "postings written with the message";
  EXPECT_EQ(CountPrefix(keys::IndexQueuePrefix()), 0u);
  // Nothing is migrated while the gate is closed.
  auto queued = store_->QueueMigrations();
  ASSERT_TRUE(queued.ok()) << queued.status();
  EXPECT_EQ(*queued, 0u);

  EXPECT_FALSE(Open()) << "no member reported";
  Report(1, kBlockLayout);
  Report(2, kBlockLayout);
  EXPECT_FALSE(Open()) << "member 3 never reported";
  Report(3, kPerMessageLayout);
  EXPECT_FALSE(Open()) << "member 3 runs a binary that does not read blocks";
  Report(3, kBlockLayout, absl::Now() - absl::Minutes(5));
  EXPECT_FALSE(Open()) << "member 3's report is stale (rolled back since?)";
  CreateMailbox("mbx-early");
  auto early = store_->LoadMailbox("mbx-early");
  ASSERT_TRUE(early.ok());
  for (const auto& [f, v] : early->folders) EXPECT_FALSE(f.block_postings()) << f.name();

  Report(3, kBlockLayout);
  EXPECT_TRUE(Open());
  EXPECT_TRUE(store_->BlockLayoutAllowed());
  storage::SearchLayoutRecord rec;
  auto got = store_->Get(keys::SearchLayout());
  ASSERT_TRUE(got.ok() && got->found());
  ASSERT_TRUE(rec.ParseFromString(got->value()));
  EXPECT_EQ(rec.version(), kBlockLayout);
  EXPECT_EQ(rec.members_size(), 3);

  // Another process (a new leader) reads the record: open there too, and
  // new folders get blocks.
  MailStore next(counting_.get(), Options());
  EXPECT_TRUE(next.BlockLayoutAllowed());
  CreateMailbox("mbx-late", &next);
  auto late = next.LoadMailbox("mbx-late");
  ASSERT_TRUE(late.ok());
  for (const auto& [f, v] : late->folders) EXPECT_TRUE(f.block_postings()) << f.name();
  v1::AppendRequest r;
  r.set_mailbox_id("mbx-late");
  r.mutable_folder()->set_name("INBOX");
  r.set_message(Msg("open", "walrus"));
  ASSERT_TRUE(next.Append(r).ok());
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "walrus", "INBOX", "mbx-late", &next), U{1});
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "walrus", "INBOX", "mbx-a", &next), U{1});
  // A member reporting an older layout later does not close it.
  Report(2, kPerMessageLayout);
  EXPECT_TRUE(Open(&next));
}

TEST_F(LayoutTest, GateOffMeansBlocksAtOnce) {
  StoreOptions o = Options();
  o.gate_block_layout = false;
  MailStore ungated(counting_.get(), o);
  EXPECT_TRUE(ungated.BlockLayoutAllowed());
  CreateMailbox("mbx-b", &ungated);
  auto m = ungated.LoadMailbox("mbx-b");
  ASSERT_TRUE(m.ok());
  for (const auto& [f, v] : m->folders) EXPECT_TRUE(f.block_postings()) << f.name();
}

TEST_F(LayoutTest, MigrationAnswersAsPerMessagePostingsAtEveryRoundWithExpunges) {
  std::mt19937 rng(11);
  for (int i = 0; i < 60; ++i) AppendBoth(RandomMessage(rng));
  ExpungeBoth(5);
  ExpectSameAnswers("before the gate opened");
  OpenAndQueue(6);  // the mailbox's six folders
  ExpectSameAnswers("converted, nothing moved yet");
  std::uniform_int_distribution<uint32_t> pick_uid(1, 60);
  int round = 0;
  while (Migrating()) {
    ASSERT_LT(++round, 100) << "the migration must end";
    Round();
    ExpectSameAnswers(absl::StrCat("round ", round));
    storage::FolderRecord inbox = FolderRecordOf();
    if (round % 2 == 0) {
      // An expunge somewhere: below the watermark (in the blocks), in the
      // range still in "p/", or among the messages delivered since.
      uint32_t uid = pick_uid(rng);
      auto m = store_->Get(keys::Message("tenant-a", "mbx-a", inbox.folder_id(), uid));
      ASSERT_TRUE(m.ok());
      if (m->found()) ExpungeBoth(uid);
    }
    if (round == 3) {
      for (int i = 0; i < 10; ++i) AppendBoth(RandomMessage(rng));  // delivered mid-migration
      ExpungeBoth(FolderRecordOf().uidnext() - 2);
    }
    ExpectSameAnswers(absl::StrCat("round ", round, " after changes"));
  }
  while (Round() > 0) {
  }
  ExpectMigrated();
  ExpectSameAnswers("migrated");
  AppendBoth(RandomMessage(rng));
  ExpungeBoth(FolderRecordOf().uidnext() - 1);
  ExpectSameAnswers("after the migration");
}

TEST_F(LayoutTest, MigrationSurvivesLostRoundsAndAChangeOfLeader) {
  std::mt19937 rng(5);
  for (int i = 0; i < 40; ++i) AppendBoth(RandomMessage(rng));
  OpenAndQueue(6);
  Round();
  Round();
  uint32_t watermark = Watermark();
  EXPECT_GT(watermark, 1u);
  // A round whose write never reached the log: nothing moved.
  counting_->FailNextWrite(CountingStore::Fail::kBeforeApply);
  EXPECT_FALSE(store_->IndexPending().ok());
  EXPECT_EQ(Watermark(), watermark);
  ExpectSameAnswers("round lost");
  // A round that committed but whose leader lost the answer.
  counting_->FailNextWrite(CountingStore::Fail::kAfterApply);
  EXPECT_FALSE(store_->IndexPending().ok());
  EXPECT_GT(Watermark(), watermark);
  ExpectSameAnswers("answer lost");
  // A new leader (a fresh MailStore over the same replicated state)
  // continues from the replicated watermark and queue.
  MailStore next(counting_.get(), Options());
  ExpungeBoth(Watermark() - 1, &next);  // in the blocks already
  ExpungeBoth(Watermark() + 1, &next);  // still in "p/"
  ExpectSameAnswers("new leader, before its first round", &next);
  int rounds = 0;
  while (Migrating()) {
    ASSERT_LT(++rounds, 100);
    Round(&next);
    ExpectSameAnswers(absl::StrCat("new leader, round ", rounds), &next);
  }
  while (Round(&next) > 0) {
  }
  ExpectMigrated();
  ExpectSameAnswers("migrated by the new leader", &next);
}

TEST_F(LayoutTest, AnEmptyOldFolderIsMigratedInOneRound) {
  OpenAndQueue(6);
  EXPECT_EQ(Round(), 0u);
  EXPECT_FALSE(Migrating());
  EXPECT_EQ(CountPrefix(keys::IndexQueuePrefix()), 0u);
  ASSERT_TRUE(Append(Msg("after", "narwhal")).ok());
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "narwhal"), U{1});
  EXPECT_EQ(Round(), 1u);
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "narwhal"), U{1});
}

}  // namespace
}  // namespace mailgrid::mailstore
