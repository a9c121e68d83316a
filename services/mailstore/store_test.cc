// MailStore on a real LocalStore (RocksDB in a temp dir): key layout,
// UID/MODSEQ allocation, quota arithmetic, parsing limits, encoded-word
// headers, search, body refcounts, the change feed.
#include <set>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "services/mailstore/errors.h"
#include "services/mailstore/keys.h"
#include "services/mailstore/mail_store.h"
#include "services/mailstore/testing/store_fixture.h"

namespace mailgrid::mailstore {
namespace {

google::protobuf::Timestamp MicrosToTsForTest(absl::Time t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(absl::ToUnixSeconds(t));
  return ts;
}

class StoreTest : public testing::StoreFixture {
 protected:
  StoreOptions Options() override {
    StoreOptions o;
    o.limits.max_message_bytes = 2 << 20;
    o.limits.max_parts = 100;
    o.limits.max_depth = 8;
    o.feed_keep = 1000;
    return o;
  }
  // Every message here has a Message-ID (SEARCH HEADER Message-ID finds them all).
  static std::string Msg(const std::string& subject, const std::string& body,
                         const std::string& from = kAlice) {
    return StoreFixture::Msg(subject, body, from, absl::StrCat(subject.size(), "@x"));
  }

  uint64_t Usage(const std::string& mbx, uint64_t* messages = nullptr) {
    v1::GetQuotaRequest g;
    g.set_mailbox_id(mbx);
    auto q = store_->GetQuota(g);
    EXPECT_TRUE(q.ok()) << q.status();
    if (messages != nullptr) *messages = q.ok() ? q->usage_messages() : 0;
    return q.ok() ? q->usage_bytes() : 0;
  }
  v1::DeliverBatchRequest Delivery(const std::string& id, const std::string& prefix, int n) {
    v1::DeliverBatchRequest d;
    d.set_delivery_id(id);
    d.set_message(Msg("group " + id, "quarterly budget review for the whole group"));
    for (int i = 0; i < n; ++i) {
      auto* t = d.add_recipients();
      t->set_mailbox_id(absl::StrCat(prefix, i));
      t->set_prepend_headers(absl::StrCat("Delivered-To: ", prefix, i, "@example.com\r\n"));
    }
    return d;
  }
};

TEST(KeysTest, LayoutIsTenantFirstAndOrdered) {
  EXPECT_EQ(keys::Mailbox("t1", "m1"), "t/t1/m/m1");
  EXPECT_EQ(keys::Folder("t1", "m1", "00000001"), "t/t1/m/m1/f/00000001");
  EXPECT_TRUE(keys::Message("t1", "m1", "f", 2) < keys::Message("t1", "m1", "f", 256));
  EXPECT_TRUE(keys::Change("t1", "m1", 9) < keys::Change("t1", "m1", 10));
  EXPECT_EQ(keys::ReadBe32(keys::Message("t1", "m1", "f", 70000)), 70000u);
  EXPECT_EQ(keys::ReadBe64(keys::Change("t", "m", 1ull << 40)), 1ull << 40);
  EXPECT_EQ(keys::PrefixEnd("ab"), "ac");
  EXPECT_TRUE(keys::ValidId("mbx_1-A"));
  EXPECT_FALSE(keys::ValidId("a/b"));
  EXPECT_FALSE(keys::ValidId(""));
  EXPECT_FALSE(keys::ValidId(std::string("a\0b", 3)));
  // Every key of a mailbox sits under its tenant's prefix.
  for (const std::string& k :
       {keys::Mailbox("t1", "m"), keys::Body("t1", "ab"), keys::Posting("t1", "m", "s:x", "ab"),
        keys::Idem("t1", "m", "k"), keys::TenantMailbox("t1", "m")})
    EXPECT_EQ(k.rfind(keys::Tenant("t1"), 0), 0u) << k;
}

TEST_F(StoreTest, CreateMailboxMakesSpecialFoldersAndIsIdempotent) {
  v1::ListFoldersRequest r;
  r.set_mailbox_id("mbx-a");
  auto list = store_->ListFolders(r);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->folders_size(), 6);
  EXPECT_EQ(list->folders(0).name(), "INBOX");
  std::set<int> uses;
  for (const auto& f : list->folders()) {
    uses.insert(f.special_use());
    EXPECT_TRUE(f.subscribed());
    EXPECT_GT(f.uidvalidity(), 0u);
  }
  EXPECT_EQ(uses.size(), 6u);
  EXPECT_TRUE(NewMailbox("mbx-a", "tenant-a").ok());  // identical repeat
  EXPECT_EQ(NewMailbox("mbx-a", "tenant-b").status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(StoreTest, UidsAndModseqStrictlyIncrease) {
  uint32_t last_uid = 0;
  uint64_t last_modseq = 0;
  for (int i = 0; i < 20; ++i) {
    auto a = Append(Msg(absl::StrCat("m", i), "hello"));
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_GT(a->uid(), last_uid);
    EXPECT_GT(a->modseq(), last_modseq);
    last_uid = a->uid();
    last_modseq = a->modseq();
  }
  // Expunge the last: its UID is never reused.
  auto stored = store_->StoreFlags(AddFlagsRequest(last_uid, last_uid, {"\\deleted"}));
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_EQ(stored->updated_size(), 1);
  EXPECT_EQ(stored->updated(0).flags(0), "\\Deleted");  // canonical case
  EXPECT_GT(stored->highest_modseq(), last_modseq);
  auto gone = store_->Expunge(ExpungeRequestFor());
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->expunged().ranges(0).first(), last_uid);
  auto next = Append(Msg("after", "x"));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->uid(), last_uid + 1);
  auto st = Status();
  EXPECT_EQ(st.folder().messages(), 20u);
  EXPECT_EQ(st.folder().uidnext(), last_uid + 2);
  EXPECT_EQ(st.folder().highest_modseq(), next->modseq());
  // QRESYNC: the expunged UID is reported as vanished since the old modseq.
  auto ch = store_->ChangesSince(ChangesSinceRequestFor(last_modseq));
  ASSERT_TRUE(ch.ok());
  ASSERT_EQ(ch->vanished().ranges_size(), 1);
  EXPECT_EQ(ch->vanished().ranges(0).first(), last_uid);
  ASSERT_EQ(ch->changed_size(), 1);
  EXPECT_EQ(ch->changed(0).uid(), next->uid());
}

TEST_F(StoreTest, UnchangedSinceAndCounters) {
  auto a = Append(Msg("one", "x"));
  v1::AppendRequest seen = AppendRequestFor(Msg("two", "y"));
  seen.add_flags("\\Seen");
  auto b = store_->Append(seen);
  ASSERT_TRUE(a.ok() && b.ok());
  auto st = Status();
  EXPECT_EQ(st.folder().unseen(), 1u);
  EXPECT_EQ(st.first_unseen_uid(), a->uid());
  EXPECT_EQ(st.folder().recent(), 2u);
  v1::StoreFlagsRequest sf = AddFlagsRequest(1, kToLast, {"\\Seen", "$Work"});
  sf.set_unchanged_since(a->modseq());  // b is newer: not changed
  auto res = store_->StoreFlags(sf);
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_EQ(res->updated_size(), 1);
  EXPECT_EQ(res->updated(0).uid(), a->uid());
  ASSERT_EQ(res->modified().ranges_size(), 1);
  EXPECT_EQ(res->modified().ranges(0).first(), b->uid());
  st = Status();
  EXPECT_EQ(st.folder().unseen(), 0u);
  EXPECT_EQ(st.first_unseen_uid(), 0u);
  sf.add_flags("\\Recent");
  EXPECT_EQ(store_->StoreFlags(sf).status().code(), absl::StatusCode::kInvalidArgument);
  // claim_recent hands the recent UIDs out once.
  v1::FolderStatusRequest claim = FolderStatusRequestFor();
  claim.set_claim_recent(true);
  auto c1 = store_->FolderStatus(claim);
  ASSERT_TRUE(c1.ok());
  EXPECT_EQ(c1->recent_uids().ranges_size(), 1);
  auto c2 = store_->FolderStatus(claim);
  ASSERT_TRUE(c2.ok());
  EXPECT_EQ(c2->recent_uids().ranges_size(), 0);
  EXPECT_EQ(c2->folder().recent(), 0u);
}

// SelectFolder = FolderStatus + ChangesSince from one read, with the same
// answers; \Recent is handed out once; a stale UIDVALIDITY only drops the
// changes part.
TEST_F(StoreTest, SelectFolderAnswersAsFolderStatusAndChangesSince) {
  using google::protobuf::util::MessageDifferencer;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Append(Msg(absl::StrCat("sel", i), "x")).ok());
  uint64_t base = Status().folder().highest_modseq();
  ASSERT_TRUE(store_->StoreFlags(AddFlagsRequest(2, 3, {"\\Seen", "\\Deleted"})).ok());
  v1::ExpungeRequest ex = ExpungeRequestFor();
  ex.mutable_uids()->add_ranges()->set_first(3);
  ex.mutable_uids()->mutable_ranges(0)->set_last(3);
  ASSERT_TRUE(store_->Expunge(ex).ok());

  v1::ChangesSinceRequest cs = ChangesSinceRequestFor(base);
  auto want_changes = store_->ChangesSince(cs);
  ASSERT_TRUE(want_changes.ok()) << want_changes.status();
  EXPECT_EQ(want_changes->changed_size(), 1);  // uid 2 (3 vanished)
  v1::FolderStatusRequest fs = FolderStatusRequestFor();
  fs.set_include_uids(true);
  auto want_status = store_->FolderStatus(fs);
  ASSERT_TRUE(want_status.ok());

  v1::SelectFolderRequest sel;
  sel.set_mailbox_id("mbx-a");
  sel.mutable_folder()->set_name("INBOX");
  sel.set_include_uids(true);
  *sel.mutable_changes() = cs;
  sel.mutable_changes()->clear_mailbox_id();  // ignored: the request's are used
  sel.mutable_changes()->clear_folder();
  auto got = store_->SelectFolder(sel);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(MessageDifferencer::Equals(got->status(), *want_status)) << got->status().DebugString();
  ASSERT_TRUE(got->has_changes());
  EXPECT_TRUE(MessageDifferencer::Equals(got->changes(), *want_changes)) << got->changes().DebugString();
  EXPECT_EQ(got->status().first_unseen_uid(), 1u);
  EXPECT_EQ(got->status().folder().messages(), 4u);
  EXPECT_EQ(got->status().uids().ranges_size(), 2);  // 1:2, 4:5

  // Every message's flags: modseq 0.
  sel.mutable_changes()->set_modseq(0);
  got = store_->SelectFolder(sel);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->changes().changed_size(), 4);

  // SELECT claims \Recent once; EXAMINE (no claim) sees them as before.
  sel.set_claim_recent(true);
  sel.clear_changes();
  auto first = store_->SelectFolder(sel);
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->has_changes());
  EXPECT_EQ(first->status().folder().recent(), 4u);
  EXPECT_EQ(first->status().recent_uids().ranges_size(), 2);
  size_t writes = counting_->writes();
  auto second = store_->SelectFolder(sel);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->status().folder().recent(), 0u);
  EXPECT_EQ(second->status().recent_uids().ranges_size(), 0);
  EXPECT_EQ(counting_->writes(), writes) << "nothing to claim: no write";

  // A stale UIDVALIDITY: status as usual, no changes part.
  sel.set_claim_recent(false);
  *sel.mutable_changes() = cs;
  sel.mutable_changes()->set_uidvalidity(got->status().folder().uidvalidity() + 1);
  auto stale = store_->SelectFolder(sel);
  ASSERT_TRUE(stale.ok()) << stale.status();
  EXPECT_FALSE(stale->has_changes());
  EXPECT_EQ(stale->status().folder().messages(), 4u);
  sel.mutable_changes()->set_uidvalidity(got->status().folder().uidvalidity());
  EXPECT_TRUE(store_->SelectFolder(sel)->has_changes());

  sel.mutable_folder()->set_name("NoSuchFolder");
  EXPECT_EQ(store_->SelectFolder(sel).status().code(), absl::StatusCode::kNotFound);
  sel.set_mailbox_id("mbx-nope");
  EXPECT_EQ(store_->SelectFolder(sel).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(StoreTest, QuotaArithmeticAndRefusal) {
  ASSERT_TRUE(NewMailbox("mbx-q", "tenant-a", 1000).ok());
  std::string m = Msg("q", std::string(300, 'x'));
  auto a = Append(m, "INBOX", "mbx-q");
  ASSERT_TRUE(a.ok()) << a.status();
  v1::GetQuotaRequest g;
  g.set_mailbox_id("mbx-q");
  auto q = store_->GetQuota(g);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->usage_bytes(), a->size());
  EXPECT_EQ(q->usage_messages(), 1u);
  ASSERT_TRUE(Append(m, "INBOX", "mbx-q").ok());
  auto over = Append(m, "INBOX", "mbx-q");
  ASSERT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReasonOf(over.status()), "QUOTA_EXCEEDED");
  EXPECT_EQ(Status("INBOX", "mbx-q").folder().messages(), 2u);  // nothing half-written
  // Admin raises the quota; then it fits.
  v1::SetQuotaRequest s;
  s.set_mailbox_id("mbx-q");
  s.mutable_limit()->mutable_bytes()->set_unlimited(true);
  ASSERT_TRUE(store_->SetQuota(s).ok());
  ASSERT_TRUE(Append(m, "INBOX", "mbx-q").ok());
  q = store_->GetQuota(g);
  EXPECT_EQ(q->usage_bytes(), 3 * a->size());
  // Expunge gives the bytes back.
  ASSERT_TRUE(store_->StoreFlags(AddFlagsRequest(1, kToLast, {"\\Deleted"}, "mbx-q")).ok());
  ASSERT_TRUE(store_->Expunge(ExpungeRequestFor("mbx-q")).ok());
  q = store_->GetQuota(g);
  EXPECT_EQ(q->usage_bytes(), 0u);
  EXPECT_EQ(q->usage_messages(), 0u);
  // Tenant pooled limit.
  v1::SetQuotaRequest t;
  t.set_tenant_id("tenant-a");
  t.mutable_limit()->mutable_bytes()->set_value(10);
  ASSERT_TRUE(store_->SetQuota(t).ok());
  auto pooled = Append(m, "INBOX", "mbx-q");
  EXPECT_EQ(pooled.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(StoreTest, LimitsRefuseBadInputWithoutStoringAnything) {
  std::string big(3 << 20, 'a');
  auto r1 = Append(Msg("big", big));
  EXPECT_EQ(ReasonOf(r1.status()), "TOO_LARGE");
  std::string parts = "Content-Type: multipart/mixed; boundary=b\r\n\r\n";
  for (int i = 0; i < 300; ++i) parts += "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n";
  parts += "--b--\r\n";
  EXPECT_EQ(ReasonOf(Append(parts).status()), "TOO_MANY_PARTS");
  std::string deep;
  for (int i = 0; i < 20; ++i) deep += absl::StrCat("Content-Type: multipart/mixed; boundary=b", i, "\r\n\r\n--b", i, "\r\n");
  deep += "\r\nx\r\n";
  EXPECT_EQ(ReasonOf(Append(deep).status()), "TOO_DEEP");
  std::string longline = "Subject: " + std::string(1 << 20, 'x') + "\r\n\r\nbody\r\n";
  EXPECT_EQ(ReasonOf(Append(longline).status()), "HEADER_TOO_LONG");
  EXPECT_EQ(Status().folder().messages(), 0u);
  // Malformed but storable: NUL bytes, truncated MIME, LF-only line ends.
  std::string nul("Subject: a\0b\n\nbody\0with nul\n", 28);
  auto n = Append(nul);
  ASSERT_TRUE(n.ok()) << n.status();
  auto trunc = Append("Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nunterminated");
  ASSERT_TRUE(trunc.ok()) << trunc.status();
  v1::FetchRequest f;
  f.set_mailbox_id("mbx-a");
  f.mutable_folder()->set_name("INBOX");
  f.mutable_messages()->mutable_uids()->add_ranges()->set_first(n->uid());
  f.mutable_messages()->mutable_uids()->mutable_ranges(0)->set_last(n->uid());
  f.mutable_items()->set_raw(true);
  std::vector<v1::FetchResponse> got;
  ASSERT_TRUE(store_->Fetch(f, [&](v1::FetchResponse&& m) { return got.push_back(m), true; }).ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].raw(), std::string("Subject: a\0b\r\n\r\nbody\0with nul\r\n", 31));  // CRLF stored
}

TEST_F(StoreTest, FetchEnvelopeStructureSectionsAndGbkSubject) {
  // Subject "合同" in GBK (B) and GB2312 (Q) encoded-words.
  std::string raw =
      "From: =?GB2312?B?1cXI/Q==?= <zhang@example.cn>\r\n"
      "To: bob@example.com\r\n"
      "Subject: =?GBK?B?us/NrA==?= =?gb2312?Q?=C7=A9=B6=A9?=\r\n"
      "Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
      "--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n签订合同书\r\n"
      "--XX\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n"
      "--XX--\r\n";
  auto a = Append(raw);
  ASSERT_TRUE(a.ok()) << a.status();  // GBK
  v1::FetchRequest f;
  f.set_mailbox_id("mbx-a");
  f.mutable_folder()->set_name("INBOX");
  f.mutable_messages()->mutable_sequence_numbers()->add_ranges()->set_first(1);
  f.mutable_messages()->mutable_sequence_numbers()->mutable_ranges(0)->set_last(1);
  auto* it = f.mutable_items();
  it->set_flags(true);
  it->set_envelope(true);
  it->set_bodystructure(true);
  auto* s1 = it->add_sections();
  s1->set_part("2");
  s1->set_decode(true);
  auto* s2 = it->add_sections();
  s2->set_text(v1::SECTION_TEXT_HEADER_FIELDS);
  s2->add_header_fields("subject");
  auto* s3 = it->add_sections();
  s3->set_part("9");
  std::vector<v1::FetchResponse> got;
  ASSERT_TRUE(store_->Fetch(f, [&](v1::FetchResponse&& m) { return got.push_back(m), true; }).ok());
  ASSERT_EQ(got.size(), 1u);
  const auto& m = got[0];
  EXPECT_EQ(m.sequence_number(), 1u);
  EXPECT_EQ(m.envelope().subject_decoded(), "合同签订");
  EXPECT_EQ(m.envelope().from(0).host(), "example.cn");
  EXPECT_EQ(m.bodystructure().type(), "multipart");
  ASSERT_EQ(m.bodystructure().parts_size(), 2);
  EXPECT_EQ(m.bodystructure().parts(1).subtype(), "pdf");
  EXPECT_EQ(m.sections(0).data(), "hello");
  EXPECT_EQ(m.sections(1).data(), "Subject: =?GBK?B?us/NrA==?= =?gb2312?Q?=C7=A9=B6=A9?=\r\n\r\n");
  EXPECT_FALSE(m.sections(2).has_data());
  // Search: the CJK bigram in the body, and the decoded GBK subject.
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_BODY, "合同")), std::vector<uint32_t>{a->uid()});
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_SUBJECT, "合同")), std::vector<uint32_t>{a->uid()});
  EXPECT_TRUE(SearchUids(TextQuery(v1::TEXT_FIELD_BODY, "合约")).empty());
}

TEST_F(StoreTest, SearchBooleanDatesSizesFlags) {
  auto a = Append(Msg("Quarterly report", "the contract is attached"));
  v1::AppendRequest flagged =
      AppendRequestFor(Msg("Lunch", "pizza today", "Carol <carol@example.org>"));
  flagged.add_flags("\\Flagged");
  auto b = store_->Append(flagged);
  auto c = Append(Msg("Report draft", std::string(5000, 'z') + " contract"));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << a.status() << b.status() << c.status();
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_SUBJECT, "report")),
            (std::vector<uint32_t>{a->uid(), c->uid()}));
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_TEXT, "contr")),
            (std::vector<uint32_t>{a->uid(), c->uid()}));
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_FROM, "carol@example.org")),
            std::vector<uint32_t>{b->uid()});
  v1::SearchQuery q;
  *q.mutable_all_of()->add_queries() = TextQuery(v1::TEXT_FIELD_BODY, "contract");
  q.mutable_all_of()->add_queries()->mutable_negation()->mutable_size()->set_op(v1::SIZE_OP_LARGER);
  q.mutable_all_of()->mutable_queries(1)->mutable_negation()->mutable_size()->set_bytes(1000);
  EXPECT_EQ(SearchUids(q), std::vector<uint32_t>{a->uid()});
  v1::SearchQuery any;
  any.mutable_any_of()->add_queries()->mutable_flag()->set_flag("\\flagged");
  *any.mutable_any_of()->add_queries() = TextQuery(v1::TEXT_FIELD_SUBJECT, "draft");
  EXPECT_EQ(SearchUids(any), (std::vector<uint32_t>{b->uid(), c->uid()}));
  v1::SearchQuery unseen;
  unseen.mutable_flag()->set_flag("\\Seen");
  unseen.mutable_flag()->set_absent(true);
  EXPECT_EQ(SearchUids(unseen).size(), 3u);
  v1::SearchQuery sent;
  sent.mutable_date()->set_field(v1::DATE_FIELD_SENT);
  sent.mutable_date()->set_op(v1::DATE_OP_ON);
  sent.mutable_date()->mutable_date()->set_year(2026);
  sent.mutable_date()->mutable_date()->set_month(11);
  sent.mutable_date()->mutable_date()->set_day(26);
  EXPECT_EQ(SearchUids(sent).size(), 3u);
  sent.mutable_date()->mutable_date()->set_day(27);
  EXPECT_TRUE(SearchUids(sent).empty());
  sent.mutable_date()->mutable_date()->set_month(13);
  EXPECT_EQ(ReasonOf(Search(sent).status()), "BAD_DATE");
  v1::SearchQuery hdr;
  hdr.mutable_text()->set_field(v1::TEXT_FIELD_HEADER);
  hdr.mutable_text()->set_header_name("Message-ID");
  hdr.mutable_text()->set_value("");
  EXPECT_EQ(SearchUids(hdr).size(), 3u);
}

TEST_F(StoreTest, SharedBodyRefcountFreedAfterLastExpunge) {
  // A message to a 500-person group: one body, 500 references.
  constexpr int kMailboxes = 500;
  for (int i = 0; i < kMailboxes; ++i)
    ASSERT_TRUE(NewMailbox(absl::StrCat("grp-", i), "tenant-a").ok());
  v1::DeliverBatchRequest d;
  d.set_delivery_id("q1");
  d.set_message(Msg("to everyone", "all hands meeting"));
  for (int i = 0; i < kMailboxes; ++i) {
    auto* t = d.add_recipients();
    t->set_mailbox_id(absl::StrCat("grp-", i));
    t->set_prepend_headers(absl::StrCat("Delivered-To: u", i, "@example.com\r\n"));
  }
  d.add_recipients()->set_mailbox_id("nobody");
  auto res = store_->DeliverBatch(d);
  ASSERT_TRUE(res.ok()) << res.status();
  for (int i = 0; i < kMailboxes; ++i) EXPECT_EQ(res->results(i).status(), v1::DELIVERY_STATUS_DELIVERED);
  EXPECT_EQ(res->results(kMailboxes).status(), v1::DELIVERY_STATUS_MAILBOX_NOT_FOUND);
  // One body, refcount 20, chunks stored once.
  EXPECT_EQ(CountPrefix(keys::Body("tenant-a", res->body_sha256()) + "/c"), 1u);
  auto body = store_->LoadBody("tenant-a", res->body_sha256());
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(body->refcount(), static_cast<uint64_t>(kMailboxes));
  // Retrying the same delivery is DUPLICATE with the first UID.
  auto again = store_->DeliverBatch(d);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->results(3).status(), v1::DELIVERY_STATUS_DUPLICATE);
  EXPECT_EQ(again->results(3).uid(), res->results(3).uid());
  EXPECT_EQ(store_->LoadBody("tenant-a", res->body_sha256())->refcount(), static_cast<uint64_t>(kMailboxes));
  // The per-recipient header is in that copy only.
  v1::FetchRequest f;
  f.set_mailbox_id("grp-7");
  f.mutable_folder()->set_name("INBOX");
  f.mutable_messages()->mutable_uids()->add_ranges()->set_first(1);
  f.mutable_messages()->mutable_uids()->mutable_ranges(0)->set_to_last(true);
  f.mutable_items()->set_raw(true);
  f.mutable_items()->set_rfc822_size(true);
  std::vector<v1::FetchResponse> got;
  ASSERT_TRUE(store_->Fetch(f, [&](v1::FetchResponse&& m) { return got.push_back(m), true; }).ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].raw().rfind("Delivered-To: u7@example.com\r\nFrom:", 0), 0u);
  EXPECT_EQ(got[0].rfc822_size(), got[0].raw().size());
  // Every copy goes (mailbox deletion, the last one by EXPUNGE): the body
  // and its chunks go with the last reference.
  for (int i = 0; i < kMailboxes; ++i) {
    std::string id = absl::StrCat("grp-", i);
    if (i + 1 < kMailboxes) {
      ASSERT_TRUE(store_->DeleteMailbox(id).ok());
    } else {
      ASSERT_TRUE(store_->StoreFlags(AddFlagsRequest(1, kToLast, {"\\Deleted"}, id)).ok());
      auto gone = store_->Expunge(ExpungeRequestFor(id));
      ASSERT_TRUE(gone.ok()) << gone.status();
      EXPECT_EQ(gone->expunged().ranges_size(), 1);
    }
    if (i + 1 < kMailboxes) {
      EXPECT_EQ(store_->LoadBody("tenant-a", res->body_sha256())->refcount(), static_cast<uint64_t>(kMailboxes - 1 - i));
    }
  }
  EXPECT_FALSE(store_->LoadBody("tenant-a", res->body_sha256()).ok());
  EXPECT_EQ(CountPrefix(keys::Body("tenant-a", res->body_sha256())), 0u);
  EXPECT_EQ(store_->TenantOf("grp-3").status().code(), absl::StatusCode::kNotFound);
  // The expunged mailbox's postings for the body went too.
  EXPECT_EQ(CountPrefix(keys::MailboxRange("tenant-a", absl::StrCat("grp-", kMailboxes - 1)) + "i/"), 0u);
  EXPECT_EQ(CountPrefix(keys::MailboxRange("tenant-a", absl::StrCat("grp-", kMailboxes - 1)) + "h/"), 0u);
  EXPECT_EQ(CountPrefix(keys::MailboxRange("tenant-a", absl::StrCat("grp-", kMailboxes - 1)) + "p/"), 0u);
}

TEST_F(StoreTest, DeliverBatchTo500MailboxesInFewWritesStoredOnceEach) {
  constexpr int kMailboxes = 500;
  for (int i = 0; i < kMailboxes; ++i)
    ASSERT_TRUE(NewMailbox(absl::StrCat("g-", i), "tenant-a").ok());
  // g-0 already has a message: its copy must get the next UID.
  ASSERT_TRUE(Append(Msg("earlier", "x"), "INBOX", "g-0").ok());
  v1::DeliverBatchRequest d = Delivery("big-1", "g-", kMailboxes);
  size_t writes_before = counting_->writes();
  auto res = store_->DeliverBatch(d);
  ASSERT_TRUE(res.ok()) << res.status();
  size_t writes = counting_->writes() - writes_before;
  // Batched: a handful of writes, not one per recipient.
  EXPECT_GE(writes, 1u);
  EXPECT_LE(writes, 10u) << "one write per batch of mailboxes expected";
  ASSERT_EQ(res->results_size(), kMailboxes);
  std::set<std::string> folders;
  for (int i = 0; i < kMailboxes; ++i) {
    const auto& r = res->results(i);
    std::string id = absl::StrCat("g-", i);
    ASSERT_EQ(r.status(), v1::DELIVERY_STATUS_DELIVERED) << id << " " << r.detail();
    EXPECT_EQ(r.mailbox_id(), id);
    uint32_t want_uid = i == 0 ? 2 : 1;
    EXPECT_EQ(r.uid(), want_uid) << id;
    v1::FolderStatusResponse st = Status("INBOX", id);
    EXPECT_EQ(st.folder().messages(), want_uid) << id;  // stored exactly once
    EXPECT_EQ(st.folder().uidnext(), want_uid + 1) << id;
    EXPECT_EQ(st.folder().uidvalidity(), r.uidvalidity()) << id;
    EXPECT_EQ(st.folder().highest_modseq(), r.modseq()) << id;
    EXPECT_EQ(r.folder_id(), st.folder().folder_id());
    folders.insert(r.folder_id());
    // Quota committed with the copy: usage is exactly that copy's size.
    uint64_t msgs = 0;
    uint64_t bytes = Usage(id, &msgs);
    if (i != 0) {
      EXPECT_EQ(msgs, 1u) << id;
      EXPECT_EQ(bytes, st.folder().size_bytes()) << id;
      EXPECT_EQ(bytes, d.message().size() + d.recipients(i).prepend_headers().size()) << id;
    }
  }
  // One shared body: refcount 500, chunks and terms stored once.
  auto body = store_->LoadBody("tenant-a", res->body_sha256());
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(body->refcount(), static_cast<uint64_t>(kMailboxes));
  EXPECT_EQ(CountPrefix(keys::Body("tenant-a", res->body_sha256()) + "/"),
            static_cast<size_t>(body->chunks()) + 1);  // chunks + the terms record
  // Every mailbox's copy is searchable (postings written in the batch).
  for (int i : {1, 250, 499}) {
    auto found =
        Search(TextQuery(v1::TEXT_FIELD_BODY, "quarterly"), "INBOX", absl::StrCat("g-", i));
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_EQ(found->count(), 1u) << i;
  }
  // UIDs keep going up after the batch (never reused).
  auto next = Append(Msg("later", "y"), "INBOX", "g-7");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->uid(), 2u);
  EXPECT_GT(next->modseq(), res->results(7).modseq());
}

TEST_F(StoreTest, RetriedDeliverBatchWithSameIdStoresNothingNew) {
  constexpr int kMailboxes = 60;
  for (int i = 0; i < kMailboxes; ++i)
    ASSERT_TRUE(NewMailbox(absl::StrCat("r-", i), "tenant-a").ok());
  v1::DeliverBatchRequest d = Delivery("retry-1", "r-", kMailboxes);
  auto first = store_->DeliverBatch(d);
  ASSERT_TRUE(first.ok()) << first.status();
  std::vector<uint64_t> usage(kMailboxes), modseq(kMailboxes);
  for (int i = 0; i < kMailboxes; ++i) {
    ASSERT_EQ(first->results(i).status(), v1::DELIVERY_STATUS_DELIVERED) << i;
    usage[i] = Usage(absl::StrCat("r-", i));
    modseq[i] = Status("INBOX", absl::StrCat("r-", i)).folder().highest_modseq();
  }
  size_t writes_before = counting_->writes();
  auto again = store_->DeliverBatch(d);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(counting_->writes(), writes_before) << "a retry must write nothing";
  for (int i = 0; i < kMailboxes; ++i) {
    const auto& a = again->results(i);
    const auto& f = first->results(i);
    EXPECT_EQ(a.status(), v1::DELIVERY_STATUS_DUPLICATE) << i;
    EXPECT_EQ(a.uid(), f.uid()) << i;
    EXPECT_EQ(a.folder_id(), f.folder_id()) << i;
    EXPECT_EQ(a.uidvalidity(), f.uidvalidity()) << i;
    EXPECT_EQ(a.modseq(), f.modseq()) << i;
    v1::FolderStatusResponse st = Status("INBOX", absl::StrCat("r-", i));
    EXPECT_EQ(st.folder().messages(), 1u) << i;
    EXPECT_EQ(st.folder().highest_modseq(), modseq[i]) << i;
    EXPECT_EQ(Usage(absl::StrCat("r-", i)), usage[i]) << i;
  }
  EXPECT_EQ(store_->LoadBody("tenant-a", first->body_sha256())->refcount(),
            static_cast<uint64_t>(kMailboxes));
  // The same mailbox named twice in one delivery: one copy, the second
  // recipient entry answers DUPLICATE with that copy's UID.
  v1::DeliverBatchRequest twice = Delivery("retry-2", "r-", 2);
  *twice.add_recipients() = twice.recipients(0);
  auto t = store_->DeliverBatch(twice);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->results(0).status(), v1::DELIVERY_STATUS_DELIVERED);
  EXPECT_EQ(t->results(1).status(), v1::DELIVERY_STATUS_DELIVERED);
  EXPECT_EQ(t->results(2).status(), v1::DELIVERY_STATUS_DUPLICATE);
  EXPECT_EQ(t->results(2).uid(), t->results(0).uid());
  EXPECT_EQ(Status("INBOX", "r-0").folder().messages(), 2u);
  EXPECT_EQ(store_->LoadBody("tenant-a", t->body_sha256())->refcount(), 2u);
}

TEST_F(StoreTest, DeliverBatchOverQuotaRecipientReportedAlone) {
  constexpr int kMailboxes = 20;
  constexpr int kFull = 7;
  for (int i = 0; i < kMailboxes; ++i)
    ASSERT_TRUE(NewMailbox(absl::StrCat("q-", i), "tenant-a", i == kFull ? 100 : 0).ok());
  v1::DeliverBatchRequest d = Delivery("quota-1", "q-", kMailboxes);
  ASSERT_GT(d.message().size(), 100u);
  d.add_recipients()->set_mailbox_id("nobody");
  auto res = store_->DeliverBatch(d);
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_EQ(res->results_size(), kMailboxes + 1);
  for (int i = 0; i < kMailboxes; ++i) {
    std::string id = absl::StrCat("q-", i);
    v1::FolderStatusResponse st = Status("INBOX", id);
    uint64_t msgs = 0;
    uint64_t bytes = Usage(id, &msgs);
    if (i == kFull) {
      EXPECT_EQ(res->results(i).status(), v1::DELIVERY_STATUS_QUOTA_EXCEEDED);
      EXPECT_NE(res->results(i).detail().find("quota"), std::string::npos) << res->results(i).detail();
      EXPECT_EQ(res->results(i).uid(), 0u);
      EXPECT_EQ(st.folder().messages(), 0u);
      EXPECT_EQ(st.folder().uidnext(), 1u);  // no UID spent on it
      EXPECT_EQ(bytes, 0u);
      EXPECT_EQ(msgs, 0u);
    } else {
      EXPECT_EQ(res->results(i).status(), v1::DELIVERY_STATUS_DELIVERED) << id << res->results(i).detail();
      EXPECT_EQ(st.folder().messages(), 1u) << id;
      EXPECT_EQ(msgs, 1u) << id;
    }
  }
  EXPECT_EQ(res->results(kMailboxes).status(), v1::DELIVERY_STATUS_MAILBOX_NOT_FOUND);
  EXPECT_EQ(store_->LoadBody("tenant-a", res->body_sha256())->refcount(),
            static_cast<uint64_t>(kMailboxes - 1));
  // Raising the quota and retrying the same delivery stores the missing
  // copy only: the others are DUPLICATE.
  v1::SetQuotaRequest s;
  s.set_mailbox_id(absl::StrCat("q-", kFull));
  s.mutable_limit()->mutable_bytes()->set_unlimited(true);
  ASSERT_TRUE(store_->SetQuota(s).ok());
  auto retry = store_->DeliverBatch(d);
  ASSERT_TRUE(retry.ok()) << retry.status();
  for (int i = 0; i < kMailboxes; ++i)
    EXPECT_EQ(retry->results(i).status(),
              i == kFull ? v1::DELIVERY_STATUS_DELIVERED : v1::DELIVERY_STATUS_DUPLICATE) << i;
  EXPECT_EQ(store_->LoadBody("tenant-a", res->body_sha256())->refcount(),
            static_cast<uint64_t>(kMailboxes));
}

TEST_F(StoreTest, CopyMoveRenameDeleteFolders) {
  auto a = Append(Msg("one", "alpha"));
  auto b = Append(Msg("two", "beta"));
  ASSERT_TRUE(a.ok() && b.ok());
  v1::CreateFolderRequest cf;
  cf.set_mailbox_id("mbx-a");
  cf.set_name("Projects/2026/Q4");
  auto created = store_->CreateFolder(cf);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(store_->CreateFolder(cf).status().code(), absl::StatusCode::kAlreadyExists);
  cf.set_name("bad//name");
  EXPECT_EQ(ReasonOf(store_->CreateFolder(cf).status()), "BAD_NAME");
  v1::CopyRequest cp;
  cp.set_mailbox_id("mbx-a");
  cp.mutable_source()->set_name("INBOX");
  cp.mutable_messages()->mutable_uids()->add_ranges()->set_first(1);
  cp.mutable_messages()->mutable_uids()->mutable_ranges(0)->set_to_last(true);
  cp.mutable_destination()->set_name("Projects/2026/Q4");
  auto copied = store_->Copy(cp);
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(copied->destination_uids_size(), 2);
  v1::MoveRequest mv;
  mv.set_mailbox_id("mbx-a");
  mv.mutable_source()->set_name("INBOX");
  *mv.mutable_messages() = cp.messages();
  mv.mutable_destination()->set_special_use(v1::SPECIAL_USE_ARCHIVE);
  auto moved = store_->Move(mv);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->source_uids_size(), 2);
  EXPECT_EQ(Status().folder().messages(), 0u);
  EXPECT_EQ(Status("Archive").folder().messages(), 2u);
  // Search follows the messages to their new folder.
  EXPECT_EQ(SearchUids(TextQuery(v1::TEXT_FIELD_BODY, "beta"), "Archive").size(), 1u);
  EXPECT_TRUE(SearchUids(TextQuery(v1::TEXT_FIELD_BODY, "beta"), "INBOX").empty());
  v1::RenameFolderRequest rn;
  rn.set_mailbox_id("mbx-a");
  rn.mutable_folder()->set_name("Projects");
  rn.set_new_name("Work");
  auto renamed = store_->RenameFolder(rn);
  ASSERT_TRUE(renamed.ok()) << renamed.status();
  EXPECT_EQ(Status("Work/2026/Q4").folder().messages(), 2u);
  EXPECT_EQ(Status("Work/2026/Q4").folder().uidvalidity(), created->uidvalidity());
  rn.mutable_folder()->set_name("Work");
  rn.set_new_name("Work/Sub");
  EXPECT_EQ(ReasonOf(store_->RenameFolder(rn).status()), "CYCLE");
  v1::DeleteFolderRequest df;
  df.set_mailbox_id("mbx-a");
  df.mutable_folder()->set_name("Work/2026");
  auto del = store_->DeleteFolder(df);  // has a child: becomes \Noselect
  ASSERT_TRUE(del.ok());
  df.mutable_folder()->set_name("Work/2026/Q4");
  del = store_->DeleteFolder(df);
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(del->messages_deleted(), 2);
  df.mutable_folder()->set_name("INBOX");
  EXPECT_EQ(ReasonOf(store_->DeleteFolder(df).status()), "INBOX");
}

// LoadMailbox keeps a mailbox's folder list while the mailbox record's
// version stays the same. Two MailStores over one store (an old and a new
// leader): folder changes made through one are seen by the other, whose
// cached list is from before them.
TEST_F(StoreTest, CachedFolderListFollowsChangesMadeElsewhere) {
  MailStore other(counting_.get(), StoreOptions{});
  auto names = [](MailStore& s) {
    v1::ListFoldersRequest r;
    r.set_mailbox_id("mbx-a");
    auto got = s.ListFolders(r);
    EXPECT_TRUE(got.ok()) << got.status();
    std::set<std::string> out;
    if (got.ok())
      for (const auto& f : got->folders()) out.insert(f.name());
    return out;
  };
  std::set<std::string> before = names(*store_);  // cached by store_
  EXPECT_EQ(names(other), before);
  v1::CreateFolderRequest c;
  c.set_mailbox_id("mbx-a");
  c.set_name("Projects");
  ASSERT_TRUE(other.CreateFolder(c).ok());
  EXPECT_TRUE(names(*store_).count("Projects"));
  ASSERT_TRUE(Append(Msg("cached", "one"), "Projects").ok());  // through store_
  EXPECT_EQ(Status("Projects").folder().messages(), 1u);
  v1::RenameFolderRequest rn;
  rn.set_mailbox_id("mbx-a");
  rn.mutable_folder()->set_name("Projects");
  rn.set_new_name("Archive2026");
  ASSERT_TRUE(other.RenameFolder(rn).ok());
  std::set<std::string> now = names(*store_);
  EXPECT_TRUE(now.count("Archive2026"));
  EXPECT_FALSE(now.count("Projects"));
  // A folder counter changed through `other` (an append) is seen too.
  ASSERT_TRUE(other.Append(AppendRequestFor(Msg("cached", "two"), "Archive2026")).ok());
  EXPECT_EQ(Status("Archive2026").folder().messages(), 2u);
  v1::DeleteFolderRequest d;
  d.set_mailbox_id("mbx-a");
  d.mutable_folder()->set_name("Archive2026");
  ASSERT_TRUE(other.DeleteFolder(d).ok());
  EXPECT_EQ(names(*store_), before);
  // A deleted and re-created mailbox of the same id is not its old self.
  ASSERT_TRUE(other.DeleteMailbox("mbx-a").ok());
  ASSERT_TRUE(NewMailbox("mbx-a", "tenant-a").ok());
  EXPECT_EQ(names(*store_), before);
  EXPECT_EQ(Status().folder().messages(), 0u);
}

TEST_F(StoreTest, ChangeFeedCarriesEveryChange) {
  uint64_t current = 0;
  auto before = store_->ChangesAfter("mbx-a", 0, 1000, &current);
  ASSERT_TRUE(before.ok());
  uint64_t cursor = current;
  auto a = Append(Msg("x", "y"));
  ASSERT_TRUE(a.ok());
  auto events = store_->ChangesAfter("mbx-a", cursor, 100, &current);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].kind(), v1::WATCH_EVENT_KIND_MESSAGES_ADDED);
  EXPECT_EQ((*events)[0].uids().ranges(0).first(), a->uid());
  EXPECT_EQ((*events)[0].cursor(), absl::StrCat(a->modseq()));
  EXPECT_EQ((*events)[0].messages_count(), 1u);
  // Past the kept window: OUT_OF_RANGE (resynchronise).
  v1::StoreFlagsRequest sf = AddFlagsRequest(a->uid(), a->uid(), {"$k"});
  for (int i = 0; i < 1005; ++i) {
    sf.set_mode(i % 2 ? v1::STORE_MODE_REMOVE : v1::STORE_MODE_ADD);
    ASSERT_TRUE(store_->StoreFlags(sf).ok());
  }
  EXPECT_EQ(store_->ChangesAfter("mbx-a", cursor, 100, &current).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST_F(StoreTest, ArchiveJobRetentionAndMboxExport) {
  // Two old messages and one new one in INBOX; one old one in Trash.
  auto old_date = MicrosToTsForTest(absl::Now() - absl::Hours(24 * 400));
  for (const char* subject : {"old one", "old two"}) {
    v1::AppendRequest r = AppendRequestFor(Msg(subject, "From the start\r\n>From quoted"));
    *r.mutable_internal_date() = old_date;
    ASSERT_TRUE(store_->Append(r).ok());
  }
  ASSERT_TRUE(Append(Msg("new", "fresh")).ok());
  v1::AppendRequest t;
  t.set_mailbox_id("mbx-a");
  t.mutable_folder()->set_special_use(v1::SPECIAL_USE_TRASH);
  t.set_message(Msg("trash", "bin"));
  *t.mutable_internal_date() = old_date;
  ASSERT_TRUE(store_->Append(t).ok());

  v1::StartArchiveRequest ar;
  ar.set_mailbox_id("mbx-a");
  *ar.mutable_older_than() = MicrosToTsForTest(absl::Now() - absl::Hours(24));
  ar.set_by_year(true);
  auto job = store_->StartArchive(ar, "user-1");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(ReasonOf(store_->StartArchive(ar, "user-1").status()), "ALREADY_RUNNING");
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(store_->RunArchiveJobs(1).ok());  // batch of 1: resumable steps
  auto done = store_->GetJob(job->job_id());
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->job().state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done->job().moved(), 2u);
  EXPECT_EQ(done->job().total(), 2u);
  EXPECT_EQ(Status().folder().messages(), 1u);
  std::string year = absl::StrCat("Archive/", absl::FormatTime("%Y", absl::Now() - absl::Hours(24 * 400),
                                                               absl::UTCTimeZone()));
  EXPECT_EQ(Status(year).folder().messages(), 2u);

  // Retention: empty Trash of messages older than 30 days.
  v1::SetRetentionRulesRequest rr;
  rr.set_tenant_id("tenant-a");
  auto* rule = rr.add_rules();
  rule->mutable_folder()->set_special_use(v1::SPECIAL_USE_TRASH);
  rule->mutable_older_than()->set_seconds(30 * 86400);
  rule->set_action(v1::RETENTION_ACTION_DELETE);
  rule->set_enabled(true);
  auto rules = store_->SetRetentionRules(rr);
  ASSERT_TRUE(rules.ok()) << rules.status();
  EXPECT_EQ(rules->version(), 1);
  rr.set_expected_version(7);
  EXPECT_EQ(store_->SetRetentionRules(rr).status().code(), absl::StatusCode::kAborted);
  auto applied = store_->RunRetention(absl::Now());
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(*applied, 1u);
  EXPECT_EQ(Status("Trash").folder().messages(), 0u);
  EXPECT_EQ(Status().folder().messages(), 1u);  // INBOX untouched

  // mbox export (mboxrd): "From " lines in bodies are quoted.
  v1::ExportMboxRequest ex;
  ex.set_mailbox_id("mbx-a");
  ex.mutable_folder()->set_name(year);
  std::string mbox;
  uint64_t count = 0;
  ASSERT_TRUE(store_->ExportMbox(ex, [&](const v1::ExportMboxResponse& c) {
    mbox += c.chunk();
    count = c.messages();
    return true;
  }).ok());
  EXPECT_EQ(count, 2u);
  EXPECT_EQ(mbox.rfind("From MAILER-DAEMON ", 0), 0u);
  EXPECT_NE(mbox.find("\n>From the start\n>>From quoted\n"), std::string::npos) << mbox;
  EXPECT_EQ(mbox.find('\r'), std::string::npos);
}

}  // namespace
}  // namespace mailgrid::mailstore
