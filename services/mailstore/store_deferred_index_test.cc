// Search postings off the delivery's write (StoreOptions.deferred_index,
// store_indexer.cc): search is complete before the indexer ran, across a
// round's failure (lost write, lost answer), after a failover to another
// MailStore, and with expunges before and after indexing; the per-term UID
// blocks (term_block.h) make a match-all search read a key per block.
#include <algorithm>
#include <atomic>
#include <memory>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "services/mailstore/keys.h"
#include "services/mailstore/mail_store.h"
#include "services/mailstore/mailstore_storage.pb.h"
#include "services/mailstore/store_internal.h"
#include "services/mailstore/term_block.h"
#include "services/mailstore/testing/raw_write.h"
#include "services/mailstore/testing/store_fixture.h"

namespace mailgrid::mailstore {
namespace {

using testing::CountingStore;
using U = std::vector<uint32_t>;

TEST(TermBlockTest, EncodeDecodeApplyRoundTrip) {
  for (uint32_t block : {0u, 1u, 244u}) {
    const uint32_t base = block * termblock::kBlockUids;
    U sparse = {base + 1, base + 7, base + 300, base + 4095};
    U dense;
    for (uint32_t u = base; u < base + 3000; u += 2) dense.push_back(u);
    for (const U& uids : {sparse, dense}) {
      std::string v = termblock::Encode(uids);
      U back;
      ASSERT_TRUE(termblock::Decode(v, block, &back).ok());
      EXPECT_EQ(back, uids);
    }
    EXPECT_EQ(termblock::Encode(sparse)[0], 'L');
    EXPECT_EQ(termblock::Encode(dense)[0], 'B');
    EXPECT_LE(termblock::Encode(dense).size(), 513u);
    auto v = termblock::Apply(termblock::Encode(sparse), block, {base + 2}, {base + 7, base + 4095});
    ASSERT_TRUE(v.ok());
    U back;
    ASSERT_TRUE(termblock::Decode(*v, block, &back).ok());
    EXPECT_EQ(back, (U{base + 1, base + 2, base + 300}));
    auto none = termblock::Apply(*v, block, {}, back);
    ASSERT_TRUE(none.ok());
    EXPECT_EQ(*none, "");
  }
  U junk;
  EXPECT_FALSE(termblock::Decode("Q123", 0, &junk).ok());
  EXPECT_FALSE(termblock::Decode("L\xff\xff\xff", 0, &junk).ok());
}

class DeferredIndexTest : public testing::StoreFixture {
 protected:
  StoreOptions Options() override {
    StoreOptions o = StoreFixture::Options();
    o.deferred_index = true;
    o.index_interval = absl::Milliseconds(5);
    return o;
  }
  void Expunge(uint32_t uid) { ExpungeUid(*store_, uid); }

  size_t IndexAll(MailStore* on = nullptr) {
    size_t total = 0;
    for (;;) {
      auto n = (on ? on : store_.get())->IndexPending();
      EXPECT_TRUE(n.ok()) << n.status();
      if (!n.ok() || *n == 0) return total;
      total += *n;
    }
  }
};

TEST_F(DeferredIndexTest, SearchRightAfterDeliveryFindsItBeforeTheIndexerRan) {
  ASSERT_TRUE(Append(Msg("quarterly report", "the zebra contract")).ok());
  ASSERT_TRUE(Append(Msg("lunch", "no animals here", "Carol <carol@example.org>")).ok());
  ASSERT_TRUE(Append(Msg("zebra crossing", "plain words")).ok());
  // The deliveries wrote no posting at all, and queued the mailbox once.
  EXPECT_EQ(CountPrefix(InboxRange("p")), 0u);
  EXPECT_EQ(CountPrefix(InboxRange("w")), 0u);
  EXPECT_EQ(CountPrefix(keys::IndexQueuePrefix()), 1u);
  EXPECT_TRUE(FolderRecordOf().block_postings());
  EXPECT_LE(Watermark(), 1u);

  auto check = [&] {
    EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "zebra"), U{1});
    EXPECT_EQ(SearchText(v1::TEXT_FIELD_TEXT, "zebra"), (U{1, 3}));
    EXPECT_EQ(SearchText(v1::TEXT_FIELD_SUBJECT, "quart"), U{1});  // word prefix
    EXPECT_EQ(SearchText(v1::TEXT_FIELD_FROM, "carol"), U{2});
    EXPECT_EQ(SearchText(v1::TEXT_FIELD_TO, "bob"), (U{1, 2, 3}));
    EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "giraffe"), U{});
  };
  check();
  EXPECT_EQ(IndexAll(), 3u);
  EXPECT_GT(CountPrefix(InboxRange("w")), 0u);
  EXPECT_EQ(CountPrefix(InboxRange("p")), 0u);
  EXPECT_EQ(CountPrefix(keys::IndexQueuePrefix()), 0u);
  EXPECT_EQ(Watermark(), 4u);
  check();
  // Half indexed, half pending: the answer is the union.
  ASSERT_TRUE(Append(Msg("zebra again", "zebra")).ok());
  EXPECT_EQ(CountPrefix(keys::IndexQueuePrefix()), 1u);
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_TEXT, "zebra"), (U{1, 3, 4}));
  EXPECT_EQ(IndexAll(), 1u);
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_TEXT, "zebra"), (U{1, 3, 4}));
}

TEST_F(DeferredIndexTest, ExpungeBeforeAndAfterIndexingLeavesNoStalePostings) {
  ASSERT_TRUE(Append(Msg("a", "okapi unique")).ok());   // 1: expunged before indexing
  ASSERT_TRUE(Append(Msg("b", "okapi shared")).ok());   // 2: stays
  Expunge(1);
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "okapi"), U{2});
  EXPECT_EQ(IndexAll(), 1u);
  std::string unique =
      keys::TermBlockPrefix("tenant-a", "mbx-a", FolderRecordOf().folder_id(), "b:unique");
  EXPECT_EQ(CountPrefix(unique), 0u) << "postings of a message expunged before indexing";
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "okapi"), U{2});
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "unique"), U{});
  // After indexing, an expunge takes the UID out of its blocks (and a
  // block left empty is deleted).
  Expunge(2);
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "okapi"), U{});
  EXPECT_EQ(CountPrefix(InboxRange("w")), 0u) << "every block emptied is deleted";
  EXPECT_EQ(IndexAll(), 0u);
}

TEST_F(DeferredIndexTest, LostWriteAndLostAnswerOfARoundKeepSearchExact) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Append(Msg(absl::StrCat("s", i), "heron")).ok());
  // The round's write never reaches the store (leader lost before commit).
  counting_->FailNextWrite(CountingStore::Fail::kBeforeApply);
  EXPECT_FALSE(store_->IndexPending().ok());
  EXPECT_LE(Watermark(), 1u);
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "heron"), (U{1, 2, 3, 4, 5}));
  // The next round's write commits but its answer is lost.
  counting_->FailNextWrite(CountingStore::Fail::kAfterApply);
  EXPECT_FALSE(store_->IndexPending().ok());
  EXPECT_EQ(Watermark(), 6u);
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "heron"), (U{1, 2, 3, 4, 5}));
  EXPECT_EQ(IndexAll(), 0u) << "nothing indexed twice";
  ASSERT_TRUE(Append(Msg("s5", "heron")).ok());
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "heron"), (U{1, 2, 3, 4, 5, 6}));
}

TEST_F(DeferredIndexTest, NewLeaderResumesFromThePersistedQueueWithItsThread) {
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Append(Msg("x", absl::StrCat("ibis w", i))).ok());
  ASSERT_EQ(IndexAll(), 20u);
  for (int i = 20; i < 30; ++i) ASSERT_TRUE(Append(Msg("x", absl::StrCat("ibis w", i))).ok());
  // This MailStore "loses leadership": a second one on the same store (a
  // new leader with no memory of the first) runs the indexer thread.
  MailStore leader(counting_.get(), Options());
  std::atomic<bool> leads{false};
  leader.StartIndexer([&] { return leads.load(); });
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(CountPrefix(keys::IndexQueuePrefix()), 1u) << "a follower does not index";
  leads = true;
  while (CountPrefix(keys::IndexQueuePrefix()) != 0) absl::SleepFor(absl::Milliseconds(5));
  leader.StopIndexer();
  leader.StopIndexer();  // idempotent
  EXPECT_EQ(Watermark(), 31u);
  U all(30);
  for (uint32_t i = 0; i < 30; ++i) all[i] = i + 1;
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "ibis", "INBOX", "mbx-a", &leader), all);
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "w25"), U{26});
}

// --index-interval (StoreOptions.index_interval) is the indexer's pause
// before every round: each wake-up asks is_leader() once or twice (counted
// here; a follower indexes nothing). One store pausing a minute and one
// pausing 20 ms run side by side: when the second has woken up at least
// five times, at least five of its pauses have passed (a lower bound: a slow
// machine only makes it later) and the first has not woken up at all.
TEST_F(DeferredIndexTest, IndexerPausesItsIntervalBeforeEveryRound) {
  auto indexer = [&](absl::Duration interval, std::atomic<int>* asked) {
    StoreOptions o = Options();
    o.index_interval = interval;
    auto s = std::make_unique<MailStore>(counting_.get(), o);
    s->StartIndexer([asked] {
      asked->fetch_add(1);
      return false;
    });
    return s;
  };
  std::atomic<int> slow_asked{0}, fast_asked{0};
  const absl::Time start = absl::Now();
  std::unique_ptr<MailStore> slow = indexer(absl::Minutes(1), &slow_asked);
  std::unique_ptr<MailStore> fast = indexer(absl::Milliseconds(20), &fast_asked);
  while (fast_asked.load() < 10) absl::SleepFor(absl::Milliseconds(1));  // >= 5 wake-ups
  const absl::Duration waited = absl::Now() - start;
  slow->StopIndexer();
  fast->StopIndexer();
  EXPECT_GE(waited, absl::Milliseconds(5 * 20)) << "five rounds came sooner than five pauses";
  if (waited < absl::Minutes(1)) {
    EXPECT_EQ(slow_asked.load(), 0) << "the one-minute indexer woke up after " << waited;
  }
}

TEST_F(DeferredIndexTest, SharedBodyAcrossMailboxesPrependsAndOneWritePerRound) {
  CreateMailbox("mbx-b");
  v1::DeliverBatchRequest d;
  d.set_delivery_id("d1");
  d.set_message(Msg("shared", "pelican news"));
  for (const char* id : {"mbx-a", "mbx-b"}) {
    auto* t = d.add_recipients();
    t->set_mailbox_id(id);
    t->set_prepend_headers(absl::StrCat("X-Original-To: ", id, "@example.com\r\n"));
  }
  auto got = store_->DeliverBatch(d);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->results(1).status(), v1::DELIVERY_STATUS_DELIVERED);
  auto header = [&](const std::string& mailbox, const std::string& value) {
    v1::SearchRequest r;
    r.set_mailbox_id(mailbox);
    r.mutable_folder()->set_name("INBOX");
    r.mutable_query()->mutable_text()->set_field(v1::TEXT_FIELD_HEADER);
    r.mutable_query()->mutable_text()->set_header_name("X-Original-To");
    r.mutable_query()->mutable_text()->set_value(value);
    auto s = store_->Search(r);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? Uids(s->uids()) : U{};
  };
  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass == 0 ? "before indexing" : "after indexing");
    for (const char* id : {"mbx-a", "mbx-b"}) {
      EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "pelican", "INBOX", id), U{1});
      EXPECT_EQ(header(id, id), U{1});
    }
    EXPECT_EQ(header("mbx-a", "mbx-b"), U{});
    if (pass == 0) {
      size_t writes = counting_->writes();
      EXPECT_EQ(IndexAll(), 2u);
      EXPECT_EQ(counting_->writes(), writes + 2)
          << "both mailboxes' blocks in one write, then their queue keys in one";
    }
  }
}

TEST_F(DeferredIndexTest, MatchAllSearchReadsAKeyPerBlockAcrossABlockBoundary) {
  // Start the folder's UIDs just below the first block boundary.
  storage::FolderRecord inbox = FolderRecordOf();
  inbox.set_uidnext(termblock::kBlockUids - 150);
  inbox.set_indexed_below(inbox.uidnext());
  kv::v1::WriteRequest w;
  auto* p = w.add_ops()->mutable_put();
  p->set_key(keys::Folder("tenant-a", "mbx-a", inbox.folder_id()));
  p->set_value(inbox.SerializeAsString());
  testing::WithMailboxRecord(kv_.get(), &w);
  ASSERT_TRUE(kv_->Write(w, absl::InfiniteFuture()).ok());
  constexpr uint32_t kMessages = 300;
  for (uint32_t i = 0; i < kMessages; ++i)
    ASSERT_TRUE(Append(Msg(absl::StrCat("n", i), "everywhere")).ok());
  EXPECT_EQ(IndexAll(), kMessages);
  std::string every = keys::TermBlockPrefix("tenant-a", "mbx-a", inbox.folder_id(), "b:everywhere");
  EXPECT_EQ(CountPrefix(every), 2u) << "one key per block";
  U got = SearchText(v1::TEXT_FIELD_BODY, "everywhere");
  ASSERT_EQ(got.size(), kMessages);
  EXPECT_EQ(got.front(), termblock::kBlockUids - 150);
  EXPECT_EQ(got.back(), termblock::kBlockUids + 149);
  // NOT <match-all>: the term's blocks and the UID map, no message record
  // (a non-empty answer would also read records for HIGHESTMODSEQ).
  v1::SearchRequest r;
  r.set_mailbox_id("mbx-a");
  r.mutable_folder()->set_name("INBOX");
  r.mutable_query()->mutable_negation()->mutable_text()->set_field(v1::TEXT_FIELD_BODY);
  r.mutable_query()->mutable_negation()->mutable_text()->set_value("everywhere");
  size_t before = counting_->reads();
  auto none = store_->Search(r);
  size_t reads = counting_->reads() - before;
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->count(), 0u);
  EXPECT_LT(reads, 40u) << "a match-all term must not read a key per message";
}

TEST_F(DeferredIndexTest, FoldersOfTheOldLayoutKeepTheirPerMessagePostings) {
  // A mailbox made while deferred indexing was off: its folders write one
  // posting per term with the message and are searched as before, also by
  // a MailStore with it on.
  StoreOptions off = StoreFixture::Options();
  MailStore old_store(counting_.get(), off);
  CreateMailbox("mbx-old", &old_store);
  v1::AppendRequest r;
  r.set_mailbox_id("mbx-old");
  r.mutable_folder()->set_name("INBOX");
  r.set_message(Msg("legacy", "walrus"));
  ASSERT_TRUE(store_->Append(r).ok());
  EXPECT_EQ(CountPrefix(keys::IndexQueuePrefix()), 0u);
  EXPECT_GT(CountPrefix(keys::MailboxRange("tenant-a", "mbx-old") + "p/"), 0u);
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "walrus", "INBOX", "mbx-old"), U{1});
  // A folder created now in that mailbox takes the new layout.
  v1::CreateFolderRequest cf;
  cf.set_mailbox_id("mbx-old");
  cf.set_name("Later");
  ASSERT_TRUE(store_->CreateFolder(cf).ok());
  r.mutable_folder()->set_name("Later");
  ASSERT_TRUE(store_->Append(r).ok());
  EXPECT_EQ(CountPrefix(keys::IndexQueuePrefix()), 1u);
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "walrus", "Later", "mbx-old"), U{1});
  EXPECT_EQ(IndexAll(), 1u);
  EXPECT_EQ(SearchText(v1::TEXT_FIELD_BODY, "walrus", "Later", "mbx-old"), U{1});
}

TEST_F(DeferredIndexTest, DeletedMailboxAndFolderLeaveNothingQueued) {
  CreateMailbox("mbx-gone");
  ASSERT_TRUE(Append(Msg("x", "kiwi"), "INBOX", "mbx-gone").ok());
  ASSERT_TRUE(store_->DeleteMailbox("mbx-gone").ok());
  ASSERT_TRUE(Append(Msg("x", "kiwi")).ok());
  EXPECT_EQ(IndexAll(), 1u);
  EXPECT_EQ(CountPrefix(keys::IndexQueuePrefix()), 0u);
  v1::CreateFolderRequest cf;
  cf.set_mailbox_id("mbx-a");
  cf.set_name("Tmp");
  ASSERT_TRUE(store_->CreateFolder(cf).ok());
  ASSERT_TRUE(Append(Msg("x", "kiwi"), "Tmp").ok());
  EXPECT_EQ(IndexAll(), 1u);
  v1::DeleteFolderRequest df;
  df.set_mailbox_id("mbx-a");
  df.mutable_folder()->set_name("Tmp");
  ASSERT_TRUE(store_->DeleteFolder(df).ok());
  EXPECT_EQ(CountPrefix(keys::MailboxRange("tenant-a", "mbx-a") + "w/"),
            CountPrefix(InboxRange("w")))
      << "the deleted folder's blocks are gone";
}

TEST_F(DeferredIndexTest, SameAnswersAsPerMessagePostingsAtEveryStage) {
  // Two mailboxes get the same messages: "mbx-old" with per-message
  // postings (made by a MailStore with deferred indexing off), "mbx-a" with
  // blocks. Every query must answer the same before indexing, after, with
  // expunges on both sides of the watermark and with a half-indexed folder.
  StoreOptions off = StoreFixture::Options();
  MailStore old_store(counting_.get(), off);
  CreateMailbox("mbx-old", &old_store);
  const std::vector<std::string> words = {"alpha", "alphabet", "beta", "gamma", "delta",
                                          "epsilon", "zeta", "eta", "theta", "iota"};
  std::mt19937 rng(7);
  auto pick = [&] { return words[rng() % words.size()]; };
  uint32_t appended = 0;
  auto append = [&](int n) {
    for (int i = 0; i < n; ++i, ++appended) {
      std::string raw = absl::StrCat("From: ", pick(), " <", pick(), "@example.com>\r\nTo: ", pick(),
                                     "@example.org\r\nSubject: ", pick(), " ", pick(),
                                     "\r\nX-Tag: ", pick(), "\r\n\r\n", pick(), " ", pick(), " ",
                                     pick(), "\r\n");
      for (const char* id : {"mbx-a", "mbx-old"}) {
        v1::AppendRequest r;
        r.set_mailbox_id(id);
        r.mutable_folder()->set_name("INBOX");
        r.set_message(raw);
        ASSERT_TRUE(store_->Append(r).ok());
      }
    }
  };
  auto expunge = [&](uint32_t uid) {
    for (const char* id : {"mbx-a", "mbx-old"})
      ASSERT_TRUE(DeleteAndExpunge(*store_, uid, id).ok());
  };
  auto compare = [&](const char* stage) {
    SCOPED_TRACE(stage);
    size_t nonempty = 0;
    for (auto field : {v1::TEXT_FIELD_BODY, v1::TEXT_FIELD_SUBJECT, v1::TEXT_FIELD_FROM,
                       v1::TEXT_FIELD_TO, v1::TEXT_FIELD_TEXT, v1::TEXT_FIELD_HEADER}) {
      for (const std::string& value : {std::string("alpha"), std::string("alphab"), std::string("et"),
                                       std::string("gamma delta"), std::string("iota"),
                                       std::string("example"), std::string("nothing")}) {
        v1::SearchRequest r;
        r.mutable_folder()->set_name("INBOX");
        r.mutable_query()->mutable_text()->set_field(field);
        r.mutable_query()->mutable_text()->set_value(value);
        if (field == v1::TEXT_FIELD_HEADER) r.mutable_query()->mutable_text()->set_header_name("X-Tag");
        r.set_mailbox_id("mbx-a");
        auto a = store_->Search(r);
        r.set_mailbox_id("mbx-old");
        auto b = store_->Search(r);
        ASSERT_TRUE(a.ok() && b.ok());
        EXPECT_EQ(Uids(a->uids()), Uids(b->uids())) << field << " " << value;
        EXPECT_EQ(a->highest_modseq() > 0, b->highest_modseq() > 0);
        nonempty += a->count() > 0;
      }
    }
    EXPECT_GT(nonempty, 10u) << "the corpus must make the comparison meaningful";
  };
  append(40);
  compare("nothing indexed");
  expunge(3);  // above the watermark
  ASSERT_GT(IndexAll(), 0u);
  compare("all indexed");
  expunge(10);  // below it
  append(20);
  compare("half indexed");
  expunge(50);
  ASSERT_GT(IndexAll(), 0u);
  expunge(20);
  compare("indexed again");
  EXPECT_EQ(appended, 60u);
}

}  // namespace
}  // namespace mailgrid::mailstore
