// The large-folder paths of issue 7: the UID map behind SELECT's UID list
// (FolderRecord.uid_map) and the header postings behind SEARCH HEADER
// (FolderRecord.header_postings). Each is checked against the path of
// folders without it (the message-key scan, the header read), after
// appends, deliveries with prepended headers, flag changes, expunges,
// copies, moves and folder deletion, on LocalStore in a temp dir.
#include <random>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "services/mailstore/keys.h"
#include "services/mailstore/mail_store.h"
#include "services/mailstore/store_internal.h"
#include "services/mailstore/testing/store_fixture.h"
#include "services/mailstore/uid_map.h"

namespace mailgrid::mailstore {
namespace {

// ---------------------------------------------------------------- bitmaps

std::vector<std::pair<uint32_t, uint32_t>> Runs(const std::map<uint32_t, std::string>& blocks) {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  uidmap::RangeJoiner join([&](uint32_t a, uint32_t b) { out.emplace_back(a, b); });
  for (const auto& [block, bits] : blocks)
    uidmap::ForEachRun(bits, block, [&](uint32_t a, uint32_t b) { join.Add(a, b); });
  join.Flush();
  return out;
}

TEST(UidMapBits, RunsMatchASetAcrossBlocks) {
  std::mt19937 rng(7);
  std::set<uint32_t> want;
  std::map<uint32_t, std::string> blocks;
  // Dense runs over three blocks with holes, then random removals and re-adds.
  for (uint32_t u = 1; u < 3 * uidmap::kBlockUids + 100; ++u) {
    if (u % 997 == 0 || (u > 5000 && u < 5100)) continue;
    want.insert(u);
    uidmap::Set(&blocks[uidmap::BlockOf(u)], u, true);
  }
  for (int i = 0; i < 2000; ++i) {
    uint32_t u = rng() % (3 * uidmap::kBlockUids + 200);
    bool on = rng() % 2;
    if (on) want.insert(u);
    else want.erase(u);
    uidmap::Set(&blocks[uidmap::BlockOf(u)], u, on);
  }
  std::vector<std::pair<uint32_t, uint32_t>> expect;
  for (uint32_t u : want) {
    if (!expect.empty() && expect.back().second + 1 == u) expect.back().second = u;
    else expect.emplace_back(u, u);
  }
  EXPECT_EQ(Runs(blocks), expect);
  for (const auto& [block, bits] : blocks) {
    EXPECT_LE(bits.size(), uidmap::kBlockUids / 8);
    if (!bits.empty()) {
      EXPECT_NE(bits.back(), '\0') << "trailing zero bytes are dropped";
    }
  }
  // Clearing every bit leaves empty blocks (the key is deleted).
  for (uint32_t u : want) uidmap::Set(&blocks[uidmap::BlockOf(u)], u, false);
  for (const auto& [block, bits] : blocks) EXPECT_TRUE(bits.empty());
  EXPECT_TRUE(Runs(blocks).empty());
}

// ---------------------------------------------------------------- store

std::string NoteMsg(int i, const std::string& extra = "") {
  return absl::StrCat("From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: note ", i,
                      "\r\nMessage-ID: <m", i, "@example.com>\r\nX-Key: K", i,
                      "\r\nList-Id: team-", i % 3, " <team", i % 3, ".example.com>\r\n", extra,
                      "Received: from relay", i, ".example.net by mx\r\n\r\nbody ", i, "\r\n");
}

class UidMapTest : public testing::StoreFixture {
 protected:
  StoreOptions Options() override { return StoreOptions{}; }
  uint32_t AppendUid(const std::string& raw, const std::string& folder = "INBOX") {
    auto a = Append(raw, folder);
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? a->uid() : 0;
  }
  void Deliver(const std::string& raw, const std::string& prepend, const std::string& id) {
    v1::DeliverBatchRequest d;
    d.set_delivery_id(id);
    d.set_message(raw);
    auto* t = d.add_recipients();
    t->set_mailbox_id("mbx-a");
    t->set_prepend_headers(prepend);
    auto r = store_->DeliverBatch(d);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->results(0).status(), v1::DELIVERY_STATUS_DELIVERED) << r->results(0).detail();
  }
  std::vector<uint32_t> SelectUids(const std::string& name) {
    v1::SelectFolderRequest r;
    r.set_mailbox_id("mbx-a");
    r.mutable_folder()->set_name(name);
    r.set_include_uids(true);
    auto s = store_->SelectFolder(r);
    EXPECT_TRUE(s.ok()) << s.status();
    std::vector<uint32_t> out;
    if (!s.ok()) return out;
    for (const auto& x : s->status().uids().ranges())
      for (uint32_t u = x.first(); u <= x.last(); ++u) out.push_back(u);
    EXPECT_EQ(out.size(), s->status().folder().messages());
    return out;
  }
  // The same list by the old path (uid_map off: a scan of the message keys).
  std::vector<uint32_t> ScannedUids(const std::string& name) {
    EditFolderRecord(name, [](storage::FolderRecord* f) { f->set_uid_map(false); });
    std::vector<uint32_t> out = SelectUids(name);
    EditFolderRecord(name, [](storage::FolderRecord* f) { f->set_uid_map(true); });
    return out;
  }
  void Expunge(const std::string& folder, const std::vector<uint32_t>& uids) {
    v1::StoreFlagsRequest sf;
    sf.set_mailbox_id("mbx-a");
    sf.mutable_folder()->set_name(folder);
    for (uint32_t u : uids) {
      auto* r = sf.mutable_messages()->mutable_uids()->add_ranges();
      r->set_first(u);
      r->set_last(u);
    }
    sf.set_mode(v1::STORE_MODE_ADD);
    sf.add_flags("\\Deleted");
    ASSERT_TRUE(store_->StoreFlags(sf).ok());
    v1::ExpungeRequest ex = ExpungeRequestFor();
    ex.mutable_folder()->set_name(folder);
    ASSERT_TRUE(store_->Expunge(ex).ok());
  }
  std::vector<uint32_t> HeaderHits(const std::string& field, const std::string& value,
                                   const std::string& folder = "INBOX") {
    v1::SearchQuery q = TextQuery(v1::TEXT_FIELD_HEADER, value);
    q.mutable_text()->set_header_name(field);
    return SearchUids(q, folder);
  }
  std::vector<uint32_t> ScannedHeaderHits(const std::string& field, const std::string& value) {
    EditFolderRecord("INBOX", [](storage::FolderRecord* f) { f->set_header_postings(false); });
    auto out = HeaderHits(field, value);
    EditFolderRecord("INBOX", [](storage::FolderRecord* f) { f->set_header_postings(true); });
    return out;
  }
};

TEST_F(UidMapTest, SelectUidsFromTheMapMatchTheKeyScan) {
  ASSERT_TRUE(FolderRecordOf("INBOX").uid_map());
  for (int i = 1; i <= 20; ++i) ASSERT_EQ(AppendUid(NoteMsg(i)), static_cast<uint32_t>(i));
  // Jump close to a block boundary, so the folder spans blocks 0 and 1.
  EditFolderRecord("INBOX", [](storage::FolderRecord* f) {
    f->set_uidnext(uidmap::kBlockUids - 5);
    f->set_recent_from(uidmap::kBlockUids - 5);
  });
  for (int i = 21; i <= 40; ++i) AppendUid(NoteMsg(i));
  std::string inbox = FolderRecordOf("INBOX").folder_id();
  EXPECT_EQ(CountPrefix(keys::UidMapPrefix("tenant-a", "mbx-a", inbox)), 2u);
  std::vector<uint32_t> uids = SelectUids("INBOX");
  ASSERT_EQ(uids.size(), 40u);
  EXPECT_EQ(uids.front(), 1u);
  EXPECT_EQ(uids.back(), uidmap::kBlockUids + 14);
  EXPECT_EQ(uids, ScannedUids("INBOX"));

  // Scattered expunges, a copy and a move out, then SELECT again.
  Expunge("INBOX", {2, 3, 10, uidmap::kBlockUids - 1, uidmap::kBlockUids});
  v1::CreateFolderRequest cf;
  cf.set_mailbox_id("mbx-a");
  cf.set_name("Work");
  ASSERT_TRUE(store_->CreateFolder(cf).ok());
  v1::CopyRequest cp;
  cp.set_mailbox_id("mbx-a");
  cp.mutable_source()->set_name("INBOX");
  cp.mutable_destination()->set_name("Work");
  auto* r = cp.mutable_messages()->mutable_uids()->add_ranges();
  r->set_first(1);
  r->set_last(uidmap::kBlockUids + 100);
  ASSERT_TRUE(store_->Copy(cp).ok());
  v1::MoveRequest mv;
  mv.set_mailbox_id("mbx-a");
  mv.mutable_source()->set_name("INBOX");
  mv.mutable_destination()->set_name("Work");
  r = mv.mutable_messages()->mutable_uids()->add_ranges();
  r->set_first(15);
  r->set_last(uidmap::kBlockUids - 3);
  ASSERT_TRUE(store_->Move(mv).ok());
  uids = SelectUids("INBOX");
  EXPECT_EQ(uids, ScannedUids("INBOX"));
  EXPECT_EQ(uids.size(), 40u - 5 - 9);  // 15..20 and 4091..4093 moved
  EXPECT_EQ(SelectUids("Work"), ScannedUids("Work"));
  EXPECT_EQ(SelectUids("Work").size(), 35u + 9);

  // FETCH with sequence numbers far from the end counts through the map.
  EditFolderRecord("INBOX",
                   [](storage::FolderRecord* f) { f->set_uidnext(5 * uidmap::kBlockUids); });
  uint32_t late = AppendUid(NoteMsg(99));
  uids = SelectUids("INBOX");
  ASSERT_EQ(uids.back(), late);
  v1::FetchRequest fr;
  fr.set_mailbox_id("mbx-a");
  fr.mutable_folder()->set_name("INBOX");
  r = fr.mutable_messages()->mutable_uids()->add_ranges();
  r->set_first(1);
  r->set_to_last(true);
  fr.mutable_items()->set_flags(true);
  std::vector<std::pair<uint32_t, uint32_t>> seqs;
  ASSERT_TRUE(store_->Fetch(fr, [&](v1::FetchResponse&& x) {
    seqs.emplace_back(x.uid(), x.sequence_number());
    return true;
  }).ok());
  ASSERT_EQ(seqs.size(), uids.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    EXPECT_EQ(seqs[i].first, uids[i]);
    EXPECT_EQ(seqs[i].second, i + 1);
  }

  // Deleting a folder deletes its map; expunging everything empties it.
  std::string work = FolderRecordOf("Work").folder_id();
  EXPECT_GT(CountPrefix(keys::UidMapPrefix("tenant-a", "mbx-a", work)), 0u);
  v1::DeleteFolderRequest df;
  df.set_mailbox_id("mbx-a");
  df.mutable_folder()->set_name("Work");
  ASSERT_TRUE(store_->DeleteFolder(df).ok());
  EXPECT_EQ(CountPrefix(keys::UidMapPrefix("tenant-a", "mbx-a", work)), 0u);
  Expunge("INBOX", uids);
  EXPECT_TRUE(SelectUids("INBOX").empty());
  EXPECT_EQ(CountPrefix(keys::UidMapPrefix("tenant-a", "mbx-a", inbox)), 0u);
}

TEST_F(UidMapTest, HeaderSearchFromPostingsMatchesTheHeaderRead) {
  ASSERT_TRUE(FolderRecordOf("INBOX").header_postings());
  for (int i = 1; i <= 12; ++i) {
    if (i % 4 == 0) {
      Deliver(NoteMsg(i), absl::StrCat("Delivered-To: box", i, "@example.org\r\n"),
              absl::StrCat("d", i));
    } else {
      AppendUid(NoteMsg(i, i % 5 == 0 ? "X-Priority: urgent =?UTF-8?B?w7xiZXI=?=\r\n" : ""));
    }
  }
  struct Q {
    const char* field;
    const char* value;
    std::vector<uint32_t> want;
  };
  std::vector<Q> queries = {
      {"X-Key", "K7", {7}},
      {"x-key", "k1", {1, 10, 11, 12}},  // case-insensitive; a token matches as a word prefix
      {"List-Id", "team-1", {1, 4, 7, 10}},
      {"Message-ID", "m12@example.com", {12}},
      {"X-Priority", "über", {5, 10}},        // RFC 2047 decoded
      {"Delivered-To", "box8", {8}},          // a recipient's prepended line
      {"Delivered-To", "example.org", {4, 8, 12}},
      {"Subject", "note", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},  // its own "s:" terms
      {"Received", "relay3", {3}},            // not indexed: read from the headers
      {"X-Key", "", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},      // the field exists
      {"X-Absent", "x", {}},
  };
  for (const auto& q : queries) {
    EXPECT_EQ(HeaderHits(q.field, q.value), q.want) << q.field << ": " << q.value;
    EXPECT_EQ(ScannedHeaderHits(q.field, q.value), q.want) << "scan " << q.field << ": " << q.value;
  }
  std::string inbox = FolderRecordOf("INBOX").folder_id();
  EXPECT_EQ(CountPrefix(keys::FolderPostingPrefix("tenant-a", "mbx-a", inbox, "h:x-key:k7")), 1u);
  EXPECT_EQ(CountPrefix(keys::FolderPostingPrefix("tenant-a", "mbx-a", inbox, "h:delivered-to:box8")), 1u);
  EXPECT_EQ(CountPrefix(keys::FolderPostingPrefix("tenant-a", "mbx-a", inbox, "h:received:relay3")), 0u);

  // Expunge and move take their header postings (prepended ones too) along.
  Expunge("INBOX", {7, 8});
  EXPECT_TRUE(HeaderHits("X-Key", "K7").empty());
  EXPECT_TRUE(HeaderHits("Delivered-To", "box8").empty());
  EXPECT_EQ(CountPrefix(keys::FolderPostingPrefix("tenant-a", "mbx-a", inbox, "h:delivered-to:box8")), 0u);
  v1::MoveRequest mv;
  mv.set_mailbox_id("mbx-a");
  mv.mutable_source()->set_name("INBOX");
  mv.mutable_destination()->set_name("Archive");
  auto* r = mv.mutable_messages()->mutable_uids()->add_ranges();
  r->set_first(12);
  r->set_last(12);
  ASSERT_TRUE(store_->Move(mv).ok());
  EXPECT_TRUE(HeaderHits("Delivered-To", "box12").empty());
  EXPECT_EQ(HeaderHits("Delivered-To", "box12", "Archive"), std::vector<uint32_t>{1});
  EXPECT_EQ(HeaderHits("X-Key", "K12", "Archive"), std::vector<uint32_t>{1});
}

TEST_F(UidMapTest, ABodyWithoutHeaderTermsTurnsTheFolderBackToHeaderReads) {
  AppendUid(NoteMsg(1));
  // The body as stored before header terms existed: no "h:" terms, no flag.
  Ingested in = *Ingest(NoteMsg(2), IngestLimits{});
  storage::BodyTerms old;
  for (const auto& t : in.terms)
    if (t.rfind("h:", 0) != 0) old.add_terms(t);
  AppendUid(NoteMsg(2), "Archive");  // stores the body (and its header terms)
  kv::v1::WriteRequest w;
  auto* p = w.add_ops()->mutable_put();
  p->set_key(keys::BodyTerms("tenant-a", in.sha_hex));
  p->set_value(old.SerializeAsString());
  ASSERT_TRUE(kv_->Write(w, absl::InfiniteFuture()).ok());
  // The same bytes again (the body is shared): INBOX can no longer trust
  // its header postings, and answers from the headers.
  uint32_t uid = AppendUid(NoteMsg(2));
  EXPECT_FALSE(FolderRecordOf("INBOX").header_postings());
  EXPECT_TRUE(FolderRecordOf("Archive").header_postings());
  EXPECT_EQ(HeaderHits("X-Key", "K2"), std::vector<uint32_t>{uid});
  EXPECT_EQ(HeaderHits("X-Key", "K1"), std::vector<uint32_t>{1});
}

}  // namespace
}  // namespace mailgrid::mailstore
