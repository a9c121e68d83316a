// The read and write paths that must not grow with the folder (issue 7):
// the MODSEQ index behind ChangesSince, sections read by the stored MIME
// offsets, and appends to one mailbox combined into one write. LocalStore
// (RocksDB in a temp dir) under a store wrapper that counts reads and
// writes and can hold a write until the test releases it.
#include <atomic>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/civil_time.h"
#include "gtest/gtest.h"
#include "libs/mail/imap_format.h"
#include "libs/mail/mime.h"
#include "libs/store/local_store.h"
#include "services/mailstore/ingest.h"
#include "services/mailstore/keys.h"
#include "services/mailstore/mail_store.h"
#include "services/mailstore/sections.h"
#include "services/mailstore/store_internal.h"
#include "services/mailstore/testing/store_fixture.h"

namespace mailgrid::mailstore {
namespace {

// The fixture's CountingStore counts reads and writes and can hold writes.
class IndexTest : public testing::StoreFixture {
 protected:
  v1::Folder Inbox() { return Status().folder(); }
  absl::StatusOr<v1::ChangesSinceResponse> Changes(uint64_t since) {
    return store_->ChangesSince(ChangesSinceRequestFor(since));
  }

  // Polls (no time limit) until n appends wait in the mailbox's queue.
  void WaitQueued(size_t n) {
    MailStore::Combiner* c = store_->CombinerFor("mbx-a");
    for (;;) {
      {
        absl::MutexLock lock(&c->mu);
        if (c->queue.size() == n) return;
      }
      absl::SleepFor(absl::Milliseconds(2));
    }
  }
};

// ---------------------------------------------------------------- MODSEQ index

TEST_F(IndexTest, ChangesSinceReadsOnlyTheChanges) {
  constexpr uint32_t kMessages = 400;
  for (uint32_t i = 0; i < kMessages; ++i) ASSERT_TRUE(Append(Msg(absl::StrCat("m", i), "x")).ok());
  v1::Folder before = Inbox();
  ASSERT_EQ(before.messages(), kMessages);
  uint64_t since = before.highest_modseq();
  // Three flag changes (one message twice) and two expunges.
  SetFlag(10, "\\Flagged");
  SetFlag(20, "\\Seen");
  SetFlag(10, "\\Answered");
  SetFlag(300, "\\Deleted");
  SetFlag(301, "\\Deleted");
  ASSERT_TRUE(store_->Expunge(ExpungeRequestFor()).ok());

  size_t reads_before = counting_->reads();
  auto ch = Changes(since);
  ASSERT_TRUE(ch.ok()) << ch.status();
  size_t reads = counting_->reads() - reads_before;
  std::vector<uint32_t> changed;
  for (const auto& m : ch->changed()) changed.push_back(m.uid());
  EXPECT_EQ(changed, (std::vector<uint32_t>{10, 20}));
  EXPECT_EQ(Uids(ch->vanished()), (std::vector<uint32_t>{300, 301}));
  EXPECT_EQ(ch->changed(0).flags_size(), 2);  // \Flagged and \Answered, the record as it is now
  // The cost is the changes, not the folder: mailbox + folders (7) + 4 index
  // entries + 2 message records, far below the 400 records a scan reads.
  EXPECT_LT(reads, 40u) << "ChangesSince read " << reads << " entries";

  // One index entry per UID ever used: the flag changes moved entries, the
  // expunges turned theirs into tombstones.
  std::string q = keys::ModseqPrefix("tenant-a", "mbx-a", before.folder_id());
  EXPECT_EQ(CountPrefix(q), kMessages);
  // No x/ tombstones for an indexed folder (the index holds them).
  EXPECT_EQ(CountPrefix(keys::TombstonePrefix("tenant-a", "mbx-a", before.folder_id())), 0u);

  // Equivalent to the full scan at every MODSEQ (changed part).
  storage::FolderRecord fr;
  auto mbx = store_->LoadMailbox("mbx-a");
  ASSERT_TRUE(mbx.ok());
  for (const auto& [f, v] : mbx->folders)
    if (f.folder_id() == before.folder_id()) fr = f;
  for (uint64_t m : {uint64_t{0}, since - 5, since, since + 1, since + 3, Inbox().highest_modseq()}) {
    auto indexed = Changes(m);
    v1::ChangesSinceRequest cs;
    cs.set_modseq(m);
    auto scanned = store_->ChangesByScan(*mbx, fr, cs, v1::ChangesSinceResponse());
    ASSERT_TRUE(indexed.ok() && scanned.ok());
    ASSERT_EQ(indexed->changed_size(), scanned->changed_size()) << m;
    for (int i = 0; i < indexed->changed_size(); ++i) {
      EXPECT_EQ(indexed->changed(i).uid(), scanned->changed(i).uid());
      EXPECT_EQ(indexed->changed(i).modseq(), scanned->changed(i).modseq());
    }
  }
  // Nothing since the newest MODSEQ.
  auto none = Changes(Inbox().highest_modseq());
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->changed_size(), 0);
  EXPECT_EQ(none->vanished().ranges_size(), 0);
}

TEST_F(IndexTest, MovedAndSeenMessagesKeepTheIndexExact) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Append(Msg(absl::StrCat("m", i), "x")).ok());
  uint64_t since = Inbox().highest_modseq();
  // FETCH with set_seen (BODY[] without PEEK) changes \Seen: it is a change.
  v1::FetchRequest f;
  f.set_mailbox_id("mbx-a");
  f.mutable_folder()->set_name("INBOX");
  auto* r = f.mutable_messages()->mutable_uids()->add_ranges();
  r->set_first(2);
  r->set_last(2);
  f.mutable_items()->set_flags(true);
  f.set_set_seen(true);
  ASSERT_TRUE(store_->Fetch(f, [](v1::FetchResponse&&) { return true; }).ok());
  // MOVE 4 to Archive: vanished here, added there.
  v1::MoveRequest mv;
  mv.set_mailbox_id("mbx-a");
  mv.mutable_source()->set_name("INBOX");
  mv.mutable_destination()->set_name("Archive");
  auto* mr = mv.mutable_messages()->mutable_uids()->add_ranges();
  mr->set_first(4);
  mr->set_last(4);
  ASSERT_TRUE(store_->Move(mv).ok());
  auto ch = Changes(since);
  ASSERT_TRUE(ch.ok()) << ch.status();
  ASSERT_EQ(ch->changed_size(), 1);
  EXPECT_EQ(ch->changed(0).uid(), 2u);
  EXPECT_EQ(Uids(ch->vanished()), std::vector<uint32_t>{4});
  v1::ChangesSinceRequest cs = ChangesSinceRequestFor(since, "Archive");
  cs.set_include_vanished(false);
  auto arch = store_->ChangesSince(cs);
  ASSERT_TRUE(arch.ok());
  ASSERT_EQ(arch->changed_size(), 1);
  EXPECT_EQ(arch->changed(0).uid(), 1u);
  // A UID restriction (QRESYNC known UIDs) applies to both lists.
  v1::ChangesSinceRequest only = ChangesSinceRequestFor(since);
  auto* ur = only.mutable_uids()->add_ranges();
  ur->set_first(3);
  ur->set_last(5);
  auto restricted = store_->ChangesSince(only);
  ASSERT_TRUE(restricted.ok());
  EXPECT_EQ(restricted->changed_size(), 0);
  EXPECT_EQ(Uids(restricted->vanished()), std::vector<uint32_t>{4});
}

TEST_F(IndexTest, FolderWithoutIndexStillAnswersByScan) {
  // A folder stored before the index existed: modseq_index false, x/
  // tombstones. Rewrite the INBOX record that way, then change messages.
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(Append(Msg(absl::StrCat("m", i), "x")).ok());
  v1::Folder inbox = Inbox();
  std::string q = keys::ModseqPrefix("tenant-a", "mbx-a", inbox.folder_id());
  EditFolderRecord(
      "INBOX", [](storage::FolderRecord* rec) { rec->set_modseq_index(false); },
      [&](kv::v1::WriteRequest* w) {
        auto* d = w->add_ops()->mutable_delete_range();  // as if never written
        d->set_start(q);
        d->set_end(keys::PrefixEnd(q));
      });

  uint64_t since = Inbox().highest_modseq();
  SetFlag(2, "\\Seen");
  SetFlag(5, "\\Deleted");
  ASSERT_TRUE(store_->Expunge(ExpungeRequestFor()).ok());
  auto ch = Changes(since);
  ASSERT_TRUE(ch.ok()) << ch.status();
  ASSERT_EQ(ch->changed_size(), 1);
  EXPECT_EQ(ch->changed(0).uid(), 2u);
  EXPECT_EQ(Uids(ch->vanished()), std::vector<uint32_t>{5});
  EXPECT_EQ(CountPrefix(q), 0u);  // the old folder got no partial index
  EXPECT_EQ(CountPrefix(keys::TombstonePrefix("tenant-a", "mbx-a", inbox.folder_id())), 1u);
}

// ---------------------------------------------------------------- sections

// The old way: parse the whole message and resolve the section.
std::string Reference(const std::string& raw, const mail::SectionSpec& spec) {
  mail::Limits limits;
  limits.max_message_bytes = raw.size() + 1;
  auto parsed = mail::ParseMessage(raw, limits);
  EXPECT_TRUE(parsed.ok());
  auto data = mail::ResolveSection(raw, *parsed, spec);
  if (!data.ok()) return absl::StrCat("<", data.status().code() == absl::StatusCode::kNotFound
                                               ? "notfound" : "invalid", ">");
  return std::string(data->Bytes(raw));
}

TEST_F(IndexTest, SectionsFromOffsetsMatchTheReparseWithAPrepend) {
  std::string raw =
      "From: a@example.com\r\nTo: b@example.com\r\nSubject: nested\r\n"
      "Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n"
      "--XX\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n"
      "--XX\r\nContent-Type: message/rfc822\r\n\r\n"
      "From: inner@example.com\r\nSubject: inner one\r\n"
      "Content-Type: multipart/alternative; boundary=YY\r\n\r\n"
      "--YY\r\nContent-Type: text/plain\r\n\r\ninner text\r\n"
      "--YY\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+aGk8L2I+\r\n"
      "--YY--\r\n"
      "--XX\r\nContent-Type: application/octet-stream\r\n\r\nno blank line follows"
      "\r\n--XX--\r\n";
  v1::DeliverBatchRequest d;
  d.set_message(raw);
  auto* t = d.add_recipients();
  t->set_mailbox_id("mbx-a");
  std::string prepend = "Delivered-To: a@example.com\r\nX-Spam: no\r\n";
  t->set_prepend_headers(prepend);
  auto res = store_->DeliverBatch(d);
  ASSERT_TRUE(res.ok() && res->results(0).status() == v1::DELIVERY_STATUS_DELIVERED);
  std::string full = prepend + raw;

  using Text = mail::SectionSpec::Text;
  struct Case {
    std::string part;
    v1::SectionText text;
    Text mtext;
    std::vector<std::string> fields;
  };
  std::vector<Case> cases = {
      {"", v1::SECTION_TEXT_UNSPECIFIED, Text::kNone, {}},
      {"", v1::SECTION_TEXT_HEADER, Text::kHeader, {}},
      {"", v1::SECTION_TEXT_TEXT, Text::kText, {}},
      {"", v1::SECTION_TEXT_HEADER_FIELDS, Text::kHeaderFields, {"subject", "delivered-to"}},
      {"", v1::SECTION_TEXT_HEADER_FIELDS_NOT, Text::kHeaderFieldsNot, {"subject"}},
      {"1", v1::SECTION_TEXT_UNSPECIFIED, Text::kNone, {}},
      {"1", v1::SECTION_TEXT_MIME, Text::kMime, {}},
      {"2", v1::SECTION_TEXT_UNSPECIFIED, Text::kNone, {}},
      {"2", v1::SECTION_TEXT_HEADER, Text::kHeader, {}},
      {"2", v1::SECTION_TEXT_TEXT, Text::kText, {}},
      {"2", v1::SECTION_TEXT_HEADER_FIELDS, Text::kHeaderFields, {"SUBJECT"}},
      {"2.1", v1::SECTION_TEXT_UNSPECIFIED, Text::kNone, {}},
      {"2.2", v1::SECTION_TEXT_MIME, Text::kMime, {}},
      {"3", v1::SECTION_TEXT_UNSPECIFIED, Text::kNone, {}},
      {"7", v1::SECTION_TEXT_UNSPECIFIED, Text::kNone, {}},
  };
  v1::FetchRequest f;
  f.set_mailbox_id("mbx-a");
  f.mutable_folder()->set_name("INBOX");
  auto* r = f.mutable_messages()->mutable_uids()->add_ranges();
  r->set_first(1);
  r->set_last(1);
  for (const auto& c : cases) {
    auto* s = f.mutable_items()->add_sections();
    s->set_part(c.part);
    s->set_text(c.text);
    for (const auto& h : c.fields) s->add_header_fields(h);
  }
  auto* partial = f.mutable_items()->add_sections();  // BODY[2.1]<3.4>
  partial->set_part("2.1");
  partial->set_has_partial(true);
  partial->set_partial_offset(3);
  partial->set_partial_length(4);
  auto* binary = f.mutable_items()->add_sections();  // BINARY[2.2]
  binary->set_part("2.2");
  binary->set_decode(true);
  std::vector<v1::FetchResponse> got;
  ASSERT_TRUE(store_->Fetch(f, [&](v1::FetchResponse&& m) { return got.push_back(m), true; }).ok());
  ASSERT_EQ(got.size(), 1u);
  ASSERT_EQ(got[0].sections_size(), static_cast<int>(cases.size()) + 2);
  for (size_t i = 0; i < cases.size(); ++i) {
    mail::SectionSpec spec;
    if (!cases[i].part.empty())
      for (char ch : cases[i].part)
        if (ch != '.') spec.part.push_back(static_cast<uint32_t>(ch - '0'));
    spec.text = cases[i].mtext;
    spec.fields = cases[i].fields;
    std::string want = Reference(full, spec);
    const auto& sd = got[0].sections(static_cast<int>(i));
    if (want == "<notfound>") {
      EXPECT_FALSE(sd.has_data()) << i;
    } else {
      EXPECT_EQ(sd.data(), want) << "case " << i << " part " << cases[i].part;
    }
  }
  EXPECT_EQ(got[0].sections(static_cast<int>(cases.size())).data(), "er t");
  EXPECT_EQ(got[0].sections(static_cast<int>(cases.size()) + 1).data(), "<b>hi</b>");
  // The prepend is part of the top-level header.
  EXPECT_NE(got[0].sections(3).data().find("Delivered-To: a@example.com"), std::string::npos);
}

TEST_F(IndexTest, PartFetchOfABigMessageReadsOnlyItsChunks) {
  // A 3.5 MiB attachment after a small text part: four 1 MiB chunks.
  std::string blob(3500000, 'A');
  for (size_t i = 76; i < blob.size(); i += 78) blob[i - 1] = '\r', blob[i] = '\n';
  std::string raw = absl::StrCat(
      "From: a@example.com\r\nSubject: big\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
      "--B\r\nContent-Type: text/plain\r\n\r\nsmall text\r\n"
      "--B\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n",
      blob, "\r\n--B--\r\n");
  auto a = Append(raw);
  ASSERT_TRUE(a.ok()) << a.status();
  std::string sha = Sha256Hex(raw);
  auto body = store_->LoadBody("tenant-a", sha);
  ASSERT_TRUE(body.ok()) << body.status();
  ASSERT_GE(body->chunks(), 4u);
  ASSERT_EQ(body->parts_size(), 3);

  StoredMessage small(store_.get(), "tenant-a", sha, *body, "");
  mail::SectionSpec one;
  one.part = {1};
  auto text = small.Section(one, false, std::nullopt);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "small text");
  EXPECT_EQ(small.chunks_read(), 1u);  // not the 3.5 MiB

  // The tail of the attachment: only the chunks it spans.
  StoredMessage tail(store_.get(), "tenant-a", sha, *body, "");
  mail::SectionSpec two;
  two.part = {2};
  auto end = tail.Section(two, false, std::make_pair<uint64_t, uint64_t>(3400000, 1000));
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_EQ(end->size(), 1000u);
  EXPECT_EQ(*end, Reference(raw, two).substr(3400000, 1000));
  EXPECT_LE(tail.chunks_read(), 2u);

  // The whole part equals the reparse.
  StoredMessage whole(store_.get(), "tenant-a", sha, *body, "");
  auto all = whole.Section(two, false, std::nullopt);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, Reference(raw, two));
}

// ---------------------------------------------------------------- combined appends

TEST_F(IndexTest, ConcurrentAppendsToOneMailboxShareOneWrite) {
  ASSERT_TRUE(Append(Msg("first", "x")).ok());
  size_t writes_before = counting_->writes();
  counting_->Hold();
  // A holder: its write waits at the gate while the others queue.
  std::thread holder([&] { EXPECT_TRUE(Append(Msg("holder", "y")).ok()); });
  counting_->AwaitWaiting(1);
  constexpr int kWriters = 20;
  std::vector<absl::StatusOr<v1::AppendResponse>> results(kWriters, absl::UnknownError("unset"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kWriters; ++i) {
    threads.emplace_back([&, i] {
      if (i == 5) {
        results[i] = Append(Msg("lost", "z"), "No Such Folder");
      } else if (i == 6 || i == 7) {
        v1::AppendRequest keyed = AppendRequestFor(Msg("same key", "k"));
        keyed.set_idempotency_key("idem-1");  // one copy only
        results[i] = store_->Append(keyed);
      } else {
        results[i] = Append(Msg(absl::StrCat("w", i), "body"));
      }
    });
  }
  // Every writer is queued behind the held write.
  WaitQueued(kWriters);
  counting_->Release();
  holder.join();
  for (auto& t : threads) t.join();
  // The holder's write and ONE write for all 20 queued appends.
  EXPECT_EQ(counting_->writes() - writes_before, 2u);
  std::set<uint32_t> uids;
  for (int i = 0; i < kWriters; ++i) {
    if (i == 5) {
      EXPECT_EQ(results[i].status().code(), absl::StatusCode::kNotFound);
      continue;
    }
    ASSERT_TRUE(results[i].ok()) << i << " " << results[i].status();
    if (i != 7) {
      EXPECT_TRUE(uids.insert(results[i]->uid()).second) << "UID reused " << i;
    }
  }
  EXPECT_EQ(results[6]->uid(), results[7]->uid());  // the idempotency key held inside the group
  v1::Folder inbox = Inbox();
  EXPECT_EQ(inbox.messages(), 2u + kWriters - 2);  // first, holder, 18 distinct appends
  EXPECT_EQ(inbox.uidnext(), inbox.messages() + 1);
  std::vector<uint32_t> want;
  for (uint32_t u = 3; u <= inbox.messages(); ++u) want.push_back(u);
  EXPECT_EQ(std::vector<uint32_t>(uids.begin(), uids.end()), want);
  // Every append has its own MODSEQ and feed event.
  uint64_t current = 0;
  auto feed = store_->ChangesAfter("mbx-a", 0, 1000, &current);
  ASSERT_TRUE(feed.ok());
  size_t added = 0;
  for (const auto& e : *feed) added += e.kind() == v1::WATCH_EVENT_KIND_MESSAGES_ADDED;
  EXPECT_EQ(added, inbox.messages());
}

TEST_F(IndexTest, ConcurrentDeliveriesToOneMailboxShareOneWrite) {
  size_t writes_before = counting_->writes();
  counting_->Hold();
  auto deliver = [&](const std::string& id) {
    v1::DeliverBatchRequest d;
    d.set_delivery_id(id);
    d.set_message(Msg("delivery " + id, "text " + id));
    d.add_recipients()->set_mailbox_id("mbx-a");
    return store_->DeliverBatch(d);
  };
  std::thread holder([&] { EXPECT_TRUE(deliver("h").ok()); });
  counting_->AwaitWaiting(1);
  constexpr int kWriters = 12;
  std::vector<absl::StatusOr<v1::DeliverBatchResponse>> results(kWriters, absl::UnknownError("unset"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kWriters; ++i)
    threads.emplace_back([&, i] { results[i] = deliver(i == 1 ? "d0" : absl::StrCat("d", i)); });
  WaitQueued(kWriters);
  counting_->Release();
  holder.join();
  for (auto& t : threads) t.join();
  EXPECT_EQ(counting_->writes() - writes_before, 2u);
  int delivered = 0, duplicate = 0;
  for (auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    delivered += r->results(0).status() == v1::DELIVERY_STATUS_DELIVERED;
    duplicate += r->results(0).status() == v1::DELIVERY_STATUS_DUPLICATE;
  }
  // "d0" twice (different bodies, same delivery id): one copy, one DUPLICATE.
  EXPECT_EQ(delivered, kWriters - 1);
  EXPECT_EQ(duplicate, 1);
  EXPECT_EQ(Inbox().messages(), static_cast<uint32_t>(kWriters));  // + the holder
}

// ---------------------------------------------------------------- search postings by UID

// Helpers for the search tests.
v1::SearchQuery AllOf(const v1::SearchQuery& a, const v1::SearchQuery& b) {
  v1::SearchQuery q;
  *q.mutable_all_of()->add_queries() = a;
  *q.mutable_all_of()->add_queries() = b;
  return q;
}
v1::MessageSelector UidRange(uint32_t first, uint32_t last) {
  v1::MessageSelector sel;
  auto* r = sel.mutable_uids()->add_ranges();
  r->set_first(first);
  r->set_last(last);
  return sel;
}

class SearchIndexTest : public IndexTest {
 protected:
  std::string FolderId(const std::string& name) { return Status(name).folder().folder_id(); }
  // Rewrites a folder record as stored before uid_postings existed.
  void MakeOldFolder(const std::string& name) {
    EditFolderRecord(name, [](storage::FolderRecord* rec) {
      ASSERT_TRUE(rec->uid_postings());
      rec->set_uid_postings(false);
    });
  }
  std::string Range(const std::string& kind) { return keys::MailboxRange("tenant-a", "mbx-a") + kind; }
};

TEST_F(SearchIndexTest, TermsArePostedPerUidAndReadAsOneRange) {
  // 90 messages: every 9th has "quarterly" in the subject, every 3rd a
  // Chinese body with 合同 (bigram), the rest plain.
  std::vector<uint32_t> quarterly, contract;
  for (uint32_t i = 1; i <= 90; ++i) {
    std::string subject = i % 9 == 0 ? absl::StrCat("quarterly report ", i) : absl::StrCat("note ", i);
    std::string body = i % 3 == 0 ? "请确认这份合同的条款" : "nothing to see";
    auto a = Append(Msg(subject, body));
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_EQ(a->uid(), i);
    if (i % 9 == 0) quarterly.push_back(i);
    if (i % 3 == 0) contract.push_back(i);
  }
  std::string inbox = FolderId("INBOX");
  // New layout only: no per-mailbox body postings, no body locations.
  EXPECT_EQ(CountPrefix(Range("i/")), 0u);
  EXPECT_EQ(CountPrefix(Range("h/")), 0u);
  EXPECT_EQ(CountPrefix(keys::FolderPostingPrefix("tenant-a", "mbx-a", inbox, "s:quarterly")),
            quarterly.size());

  size_t reads_before = counting_->reads();
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_SUBJECT, "quarterly")), quarterly);
  // The postings (10) and the matches' records for HIGHESTMODSEQ (10), the
  // mailbox and its folders: never one read per message of the folder.
  EXPECT_LT(counting_->reads() - reads_before, 90u);
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_SUBJECT, "quart")), quarterly);  // word prefix
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_BODY, "合同")), contract);       // CJK bigram
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_TEXT, "合同")), contract);
  EXPECT_EQ(SearchUids(AllOf(TextQuery(v1::TEXT_FIELD_SUBJECT, "quarterly"),
                             TextQuery(v1::TEXT_FIELD_BODY, "合同"))),
            quarterly);  // every 9th is also every 3rd
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_SUBJECT, "quarterly 18")),
            std::vector<uint32_t>{18});
  EXPECT_TRUE(SearchUids(TextQuery(v1::TEXT_FIELD_SUBJECT, "annual")).empty());
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_FROM, "alice")).size(), 90u);
}

TEST_F(SearchIndexTest, CopyMoveExpungeAndDeleteKeepThePostingsExact) {
  const char* kWords[] = {"apple", "banana", "cherry", "damson", "elder", "figs"};
  for (int i = 1; i <= 6; ++i)
    ASSERT_TRUE(Append(Msg(i % 2 ? "alpha odd" : "beta even", kWords[i - 1])).ok());
  v1::CreateFolderRequest cf;
  cf.set_mailbox_id("mbx-a");
  cf.set_name("Work");
  ASSERT_TRUE(store_->CreateFolder(cf).ok());
  std::string inbox = FolderId("INBOX"), work = FolderId("Work"), archive = FolderId("Archive");

  // COPY 1..2 to Work, MOVE 3 to Archive.
  v1::CopyRequest cp;
  cp.set_mailbox_id("mbx-a");
  cp.mutable_source()->set_name("INBOX");
  cp.mutable_destination()->set_name("Work");
  *cp.mutable_messages() = UidRange(1, 2);
  auto copied = store_->Copy(cp);
  ASSERT_TRUE(copied.ok()) << copied.status();
  v1::MoveRequest mv;
  mv.set_mailbox_id("mbx-a");
  mv.mutable_source()->set_name("INBOX");
  mv.mutable_destination()->set_name("Archive");
  *mv.mutable_messages() = UidRange(3, 3);
  ASSERT_TRUE(store_->Move(mv).ok());

  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_SUBJECT, "alpha")), (std::vector<uint32_t>{1, 5}));
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_SUBJECT, "alpha"), "Work"),
            std::vector<uint32_t>{1});
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_SUBJECT, "beta"), "Work"),
            std::vector<uint32_t>{2});
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_BODY, "cherry"), "Archive"),
            std::vector<uint32_t>{1});
  EXPECT_TRUE(SearchUids(TextQuery(v1::TEXT_FIELD_BODY, "cherry")).empty());
  // A moved message's postings left the source folder.
  size_t per_message = CountPrefix(keys::FolderPostingsPrefix("tenant-a", "mbx-a", archive));
  ASSERT_GT(per_message, 0u);
  EXPECT_EQ(CountPrefix(keys::FolderPostingsPrefix("tenant-a", "mbx-a", inbox)), 5 * per_message);

  // Expunge everything in INBOX: its postings all go.
  for (uint32_t u : {1u, 2u, 4u, 5u, 6u}) SetFlag(u, "\\Deleted");
  ASSERT_TRUE(store_->Expunge(ExpungeRequestFor()).ok());
  EXPECT_EQ(CountPrefix(keys::FolderPostingsPrefix("tenant-a", "mbx-a", inbox)), 0u);
  EXPECT_TRUE(SearchUids(TextQuery(v1::TEXT_FIELD_SUBJECT, "alpha")).empty());
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_SUBJECT, "alpha"), "Work"),
            std::vector<uint32_t>{1});

  // Deleting Work drops its postings with its messages.
  v1::DeleteFolderRequest df;
  df.set_mailbox_id("mbx-a");
  df.mutable_folder()->set_name("Work");
  ASSERT_TRUE(store_->DeleteFolder(df).ok());
  EXPECT_EQ(CountPrefix(keys::FolderPostingsPrefix("tenant-a", "mbx-a", work)), 0u);
  EXPECT_EQ(CountPrefix(Range("p/")), per_message);  // only Archive's message is left
}

TEST_F(SearchIndexTest, FolderWithoutUidPostingsKeepsTheOldIndex) {
  // A folder stored before uid_postings: per-mailbox postings by body SHA
  // and body locations, as before. Messages moved out of it get the new
  // postings in their new folder (a new folder); nothing is left behind.
  MakeOldFolder("INBOX");
  for (int i = 1; i <= 4; ++i)
    ASSERT_TRUE(Append(Msg(i % 2 ? "alpha odd" : "beta even", absl::StrCat("body ", i))).ok());
  std::string inbox = FolderId("INBOX"), archive = FolderId("Archive");
  EXPECT_GT(CountPrefix(Range("i/")), 0u);
  EXPECT_EQ(CountPrefix(Range("h/")), 4u);
  EXPECT_EQ(CountPrefix(keys::FolderPostingsPrefix("tenant-a", "mbx-a", inbox)), 0u);
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_SUBJECT, "alpha")), (std::vector<uint32_t>{1, 3}));

  v1::MoveRequest mv;
  mv.set_mailbox_id("mbx-a");
  mv.mutable_source()->set_name("INBOX");
  mv.mutable_destination()->set_name("Archive");
  *mv.mutable_messages() = UidRange(1, 4);
  ASSERT_TRUE(store_->Move(mv).ok());
  EXPECT_TRUE(SearchUids(TextQuery(v1::TEXT_FIELD_SUBJECT, "alpha")).empty());
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_SUBJECT, "alpha"), "Archive"),
            (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(CountPrefix(Range("i/")), 0u);  // the last old-folder copy went
  EXPECT_EQ(CountPrefix(Range("h/")), 0u);
  EXPECT_GT(CountPrefix(keys::FolderPostingsPrefix("tenant-a", "mbx-a", archive)), 0u);
}

TEST_F(SearchIndexTest, HighestModseqOfManyMatchesFromTheModseqIndex) {
  // Over 2,000 matches takes the MODSEQ-index path. Writers in parallel
  // share writes (group UID allocation), which keeps the set-up short.
  constexpr int kWriters = 8, kEach = 520;  // 4,160 messages, 2,080 "even"
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kEach; ++i) {
        int n = w * kEach + i;
        if (!Append(Msg(n % 2 ? "bulk odd" : "bulk even", "x")).ok()) ++failed;
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(failed.load(), 0);
  // Find two UIDs by subject: flag an even one, then an odd one (newer).
  auto even = Search(TextQuery(v1::TEXT_FIELD_SUBJECT, "even"));
  auto odd = Search(TextQuery(v1::TEXT_FIELD_SUBJECT, "odd"));
  ASSERT_TRUE(even.ok() && odd.ok());
  std::vector<uint32_t> evens = Uids(even->uids()), odds = Uids(odd->uids());
  ASSERT_EQ(evens.size() + odds.size(), static_cast<size_t>(kWriters * kEach));
  ASSERT_GT(evens.size(), 2000u);
  uint64_t m_even = SetFlag(evens[7], "\\Flagged");
  uint64_t m_odd = SetFlag(odds[7], "\\Flagged");
  ASSERT_GT(m_odd, m_even);
  size_t reads_before = counting_->reads();
  auto again = Search(TextQuery(v1::TEXT_FIELD_SUBJECT, "even"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(Uids(again->uids()), evens);
  EXPECT_EQ(again->highest_modseq(), m_even);
  // The postings and a few MODSEQ index entries, not every message record.
  EXPECT_LT(counting_->reads() - reads_before, evens.size() + 200);
  auto all = Search(TextQuery(v1::TEXT_FIELD_SUBJECT, "bulk"));
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->count(), static_cast<uint32_t>(kWriters * kEach));
  EXPECT_EQ(all->highest_modseq(), m_odd);
}

// ---------------------------------------------------------------- attribute index

v1::SearchQuery FlagQ(const std::string& flag, bool absent = false) {
  v1::SearchQuery q;
  q.mutable_flag()->set_flag(flag);
  q.mutable_flag()->set_absent(absent);
  return q;
}
v1::SearchQuery DateQ(v1::DateField field, v1::DateOp op, int y, int m, int d) {
  v1::SearchQuery q;
  q.mutable_date()->set_field(field);
  q.mutable_date()->set_op(op);
  q.mutable_date()->mutable_date()->set_year(y);
  q.mutable_date()->mutable_date()->set_month(m);
  q.mutable_date()->mutable_date()->set_day(d);
  return q;
}
v1::SearchQuery SizeQ(v1::SizeOp op, uint64_t bytes) {
  v1::SearchQuery q;
  q.mutable_size()->set_op(op);
  q.mutable_size()->set_bytes(bytes);
  return q;
}
v1::SearchQuery Not(const v1::SearchQuery& a) {
  v1::SearchQuery q;
  *q.mutable_negation() = a;
  return q;
}

class AttrIndexTest : public SearchIndexTest {
 protected:
  // Message i (1..n): internal date 2026-01-(1 + i % 10) 12:00 UTC; a Date:
  // header of 2025-12-(1 + i % 7) except every 4th (no Date: unknown sent
  // date); i*10 bytes of body (sizes grow with i); \Flagged at append for
  // every 7th. Returns the stored sizes by UID.
  std::map<uint32_t, uint64_t> Fill(uint32_t n) {
    std::map<uint32_t, uint64_t> size;
    for (uint32_t i = 1; i <= n; ++i) {
      std::string raw = absl::StrCat("From: a@example.com\r\nSubject: m ", i, "\r\n");
      if (i % 4 != 0) absl::StrAppend(&raw, "Date: ", 1 + i % 7, " Dec 2025 08:00:00 +0000\r\n");
      absl::StrAppend(&raw, "\r\n", std::string(i * 10, 'x'), "\r\n");
      v1::AppendRequest r = AppendRequestFor(raw);
      if (i % 7 == 0) r.add_flags("\\Flagged");
      absl::Time at = absl::FromCivil(absl::CivilSecond(2026, 1, 1 + i % 10, 12, 0, 0), absl::UTCTimeZone());
      r.mutable_internal_date()->set_seconds(absl::ToUnixSeconds(at));
      auto a = store_->Append(r);
      EXPECT_TRUE(a.ok()) << a.status();
      if (a.ok()) size[a->uid()] = a->size();
    }
    return size;
  }
  void Store(const std::vector<uint32_t>& uids, v1::StoreMode mode, const std::string& flag) {
    v1::StoreFlagsRequest sf;
    sf.set_mailbox_id("mbx-a");
    sf.mutable_folder()->set_name("INBOX");
    for (uint32_t u : uids) {
      auto* r = sf.mutable_messages()->mutable_uids()->add_ranges();
      r->set_first(u);
      r->set_last(u);
    }
    sf.set_mode(mode);
    sf.add_flags(flag);
    auto s = store_->StoreFlags(sf);
    ASSERT_TRUE(s.ok()) << s.status();
  }
  // Sets FolderRecord.attr_index of INBOX (false: as stored before it existed).
  void SetAttrIndex(bool on) {
    EditFolderRecord("INBOX", [on](storage::FolderRecord* rec) { rec->set_attr_index(on); });
  }
  std::vector<v1::SearchQuery> Queries(uint64_t mid_size) {
    using v1::DATE_FIELD_INTERNAL;
    using v1::DATE_FIELD_SENT;
    return {FlagQ("\\Flagged"), FlagQ("\\flagged", true), FlagQ("$label"), FlagQ("$LABEL", true),
            FlagQ("\\Deleted"), FlagQ("\\Seen"), FlagQ("\\Seen", true), FlagQ("\\Answered"),
            DateQ(DATE_FIELD_INTERNAL, v1::DATE_OP_ON, 2026, 1, 4),
            DateQ(DATE_FIELD_INTERNAL, v1::DATE_OP_BEFORE, 2026, 1, 4),
            DateQ(DATE_FIELD_INTERNAL, v1::DATE_OP_SINCE, 2026, 1, 8),
            DateQ(DATE_FIELD_INTERNAL, v1::DATE_OP_SINCE, 2030, 1, 1),
            DateQ(DATE_FIELD_SENT, v1::DATE_OP_ON, 2025, 12, 3),
            DateQ(DATE_FIELD_SENT, v1::DATE_OP_BEFORE, 2025, 12, 4),
            DateQ(DATE_FIELD_SENT, v1::DATE_OP_SINCE, 2025, 12, 6),
            DateQ(DATE_FIELD_SENT, v1::DATE_OP_BEFORE, 2030, 1, 1),
            SizeQ(v1::SIZE_OP_LARGER, mid_size), SizeQ(v1::SIZE_OP_SMALLER, mid_size),
            SizeQ(v1::SIZE_OP_LARGER, 0), SizeQ(v1::SIZE_OP_SMALLER, 0),
            AllOf(FlagQ("\\Flagged"), DateQ(DATE_FIELD_INTERNAL, v1::DATE_OP_SINCE, 2026, 1, 5)),
            Not(SizeQ(v1::SIZE_OP_LARGER, mid_size))};
  }
};

TEST_F(AttrIndexTest, FlagsDatesAndSizesFromTheIndexMatchTheRecordScan) {
  constexpr uint32_t kN = 120;
  auto size = Fill(kN);
  ASSERT_EQ(size.size(), kN);
  // Later flag changes: $Label on every 5th, \Flagged off again on every
  // 35th, \Seen on every 3rd; every 12th expunged.
  std::vector<uint32_t> fifth, thirty_fifth, third, twelfth;
  for (uint32_t i = 1; i <= kN; ++i) {
    if (i % 5 == 0) fifth.push_back(i);
    if (i % 35 == 0) thirty_fifth.push_back(i);
    if (i % 3 == 0) third.push_back(i);
    if (i % 12 == 0) twelfth.push_back(i);
  }
  Store(fifth, v1::STORE_MODE_ADD, "$Label");
  Store(thirty_fifth, v1::STORE_MODE_REMOVE, "\\Flagged");
  Store(third, v1::STORE_MODE_ADD, "\\Seen");
  Store(twelfth, v1::STORE_MODE_ADD, "\\Deleted");
  ASSERT_TRUE(store_->Expunge(ExpungeRequestFor()).ok());
  auto live = [&](uint32_t i) { return i % 12 != 0; };

  // Hand-computed answers for a few.
  std::vector<uint32_t> flagged, label, on_4th, larger;
  uint64_t mid = size[60];
  for (uint32_t i = 1; i <= kN; ++i) {
    if (!live(i)) continue;
    if (i % 7 == 0 && i % 35 != 0) flagged.push_back(i);
    if (i % 5 == 0) label.push_back(i);
    if (1 + i % 10 == 4) on_4th.push_back(i);
    if (size[i] > mid) larger.push_back(i);
  }
  EXPECT_EQ(SearchUids(FlagQ("\\Flagged")), flagged);
  EXPECT_EQ(SearchUids(FlagQ("$label")), label);  // keywords match case-insensitively
  EXPECT_EQ(SearchUids(DateQ(v1::DATE_FIELD_INTERNAL, v1::DATE_OP_ON, 2026, 1, 4)), on_4th);
  EXPECT_EQ(SearchUids(SizeQ(v1::SIZE_OP_LARGER, mid)), larger);
  EXPECT_TRUE(SearchUids(FlagQ("\\Deleted")).empty());  // expunged with their keys

  // The same answers as the record scan (the path of folders without the index).
  std::vector<std::vector<uint32_t>> indexed;
  for (const auto& q : Queries(mid)) indexed.push_back(SearchUids(q));
  SetAttrIndex(false);
  auto queries = Queries(mid);
  for (size_t i = 0; i < queries.size(); ++i)
    EXPECT_EQ(SearchUids(queries[i]), indexed[i])
        << "query " << i << ": " << queries[i].ShortDebugString();
  SetAttrIndex(true);

  // One key range per criterion: a rare flag reads its keys (and the
  // matches' records for HIGHESTMODSEQ), never the folder's 110 records.
  size_t before = counting_->reads();
  EXPECT_EQ(SearchUids(FlagQ("\\Flagged")), flagged);
  EXPECT_LT(counting_->reads() - before, 3 * flagged.size() + 12);
  before = counting_->reads();
  EXPECT_EQ(SearchUids(DateQ(v1::DATE_FIELD_INTERNAL, v1::DATE_OP_ON, 2026, 1, 4)), on_4th);
  EXPECT_LT(counting_->reads() - before, 3 * on_4th.size() + 12);

  // The index holds exactly: 3 value keys per live message with a Date:
  // (2 without), one per flag but \Seen.
  size_t expect = 0;
  for (uint32_t i = 1; i <= kN; ++i) {
    if (!live(i)) continue;
    expect += i % 4 != 0 ? 3 : 2;
    expect += (i % 7 == 0 && i % 35 != 0) + (i % 5 == 0);
  }
  std::string inbox = FolderId("INBOX");
  EXPECT_EQ(CountPrefix(keys::AttrPrefix("tenant-a", "mbx-a", inbox)), expect);
}

TEST_F(AttrIndexTest, CopyMoveAndDeleteFolderKeepTheIndexExact) {
  Fill(14);  // \Flagged: 7 and 14
  v1::CreateFolderRequest cf;
  cf.set_mailbox_id("mbx-a");
  cf.set_name("Work");
  ASSERT_TRUE(store_->CreateFolder(cf).ok());
  std::string inbox = FolderId("INBOX"), work = FolderId("Work");
  v1::CopyRequest cp;
  cp.set_mailbox_id("mbx-a");
  cp.mutable_source()->set_name("INBOX");
  cp.mutable_destination()->set_name("Work");
  *cp.mutable_messages() = UidRange(1, 7);
  ASSERT_TRUE(store_->Copy(cp).ok());
  v1::MoveRequest mv;
  mv.set_mailbox_id("mbx-a");
  mv.mutable_source()->set_name("INBOX");
  mv.mutable_destination()->set_name("Work");
  *mv.mutable_messages() = UidRange(14, 14);
  ASSERT_TRUE(store_->Move(mv).ok());
  // Work: copies of 1..7 as UIDs 1..7, 14 moved in as UID 8.
  EXPECT_EQ(SearchUids(FlagQ("\\Flagged"), "Work"), (std::vector<uint32_t>{7, 8}));
  EXPECT_EQ(SearchUids(FlagQ("\\Flagged")), std::vector<uint32_t>{7});
  EXPECT_EQ(SearchUids(DateQ(v1::DATE_FIELD_INTERNAL, v1::DATE_OP_ON, 2026, 1, 5), "Work"),
            (std::vector<uint32_t>{4, 8}));  // 4 % 10 + 1 = 5 = 14 % 10 + 1
  EXPECT_TRUE(SearchUids(DateQ(v1::DATE_FIELD_INTERNAL, v1::DATE_OP_ON, 2026, 1, 5)) ==
              std::vector<uint32_t>{4});
  v1::DeleteFolderRequest df;
  df.set_mailbox_id("mbx-a");
  df.mutable_folder()->set_name("Work");
  ASSERT_TRUE(store_->DeleteFolder(df).ok());
  EXPECT_EQ(CountPrefix(keys::AttrPrefix("tenant-a", "mbx-a", work)), 0u);
  EXPECT_GT(CountPrefix(keys::AttrPrefix("tenant-a", "mbx-a", inbox)), 0u);
}

}  // namespace
}  // namespace mailgrid::mailstore
