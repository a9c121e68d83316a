// A MailStore on a real LocalStore (RocksDB in a temp dir) behind a store
// wrapper that counts reads and writes and can fail or hold writes, with
// the request builders the store tests share (one mailbox "mbx-a" of
// "tenant-a"), so that a test reads only what is particular to it.
#ifndef MAILGRID_SERVICES_MAILSTORE_TESTING_STORE_FIXTURE_H_
#define MAILGRID_SERVICES_MAILSTORE_TESTING_STORE_FIXTURE_H_

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "libs/store/local_store.h"
#include "services/mailstore/keys.h"
#include "services/mailstore/mail_store.h"
#include "services/mailstore/store_internal.h"
#include "services/mailstore/testing/raw_write.h"

namespace mailgrid::mailstore::testing {

// Counts reads (scanned entries count one each) and writes; FailNextWrite
// makes the next write answer UNAVAILABLE, either before it reaches the
// store (lost) or after it applied (its answer lost: a failover between
// commit and reply); Hold keeps every write back until Release (a write in
// flight, for the tests of what queues behind it).
class CountingStore : public store::Store {
 public:
  enum class Fail { kNone, kBeforeApply, kAfterApply };
  explicit CountingStore(store::Store* inner) : inner_(inner) {}
  absl::StatusOr<kv::v1::GetResponse> Get(const kv::v1::GetRequest& r, absl::Time d) override {
    reads_ += 1;
    return inner_->Get(r, d);
  }
  absl::StatusOr<kv::v1::ScanResponse> Scan(const kv::v1::ScanRequest& r, absl::Time d) override {
    auto resp = inner_->Scan(r, d);
    if (resp.ok()) reads_ += resp->entries_size();
    return resp;
  }
  absl::StatusOr<kv::v1::WriteResponse> Write(const kv::v1::WriteRequest& r,
                                              absl::Time d) override {
    Fail fail;
    {
      absl::MutexLock lock(&mu_);
      ++writes_;
      fail = fail_;
      fail_ = Fail::kNone;
      if (hold_) {
        ++waiting_;
        mu_.Await(absl::Condition(
            +[](bool* hold) { return !*hold; }, &hold_));
        --waiting_;
      }
    }
    if (fail == Fail::kBeforeApply) return absl::UnavailableError("test: write lost");
    auto resp = inner_->Write(r, d);
    if (fail == Fail::kAfterApply) return absl::UnavailableError("test: answer lost");
    return resp;
  }
  void FailNextWrite(Fail how) {
    absl::MutexLock lock(&mu_);
    fail_ = how;
  }
  void Hold() {
    absl::MutexLock lock(&mu_);
    hold_ = true;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    hold_ = false;
  }
  // Returns once n writes are held.
  void AwaitWaiting(int n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() { return waiting_ >= n; };
    mu_.Await(absl::Condition(&enough));
  }
  size_t writes() {
    absl::MutexLock lock(&mu_);
    return writes_;
  }
  size_t reads() const { return reads_.load(); }

 private:
  store::Store* inner_;
  absl::Mutex mu_;
  Fail fail_ = Fail::kNone;
  bool hold_ = false;
  int waiting_ = 0;
  size_t writes_ = 0;
  std::atomic<size_t> reads_{0};
};

class StoreFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("mailstore_fixture_", std::random_device{}());
    auto local = store::LocalStore::Open(dir_.string());
    ASSERT_TRUE(local.ok()) << local.status();
    kv_ = std::move(*local);
    counting_ = std::make_unique<CountingStore>(kv_.get());
    store_ = std::make_unique<MailStore>(Interpose(counting_.get()), Options());
    CreateMailbox("mbx-a");
  }
  void TearDown() override {
    store_.reset();
    counting_.reset();
    kv_.reset();
    std::filesystem::remove_all(dir_);
  }
  // Overridden by tests that need other StoreOptions.
  virtual StoreOptions Options() {
    StoreOptions o;
    o.limits.max_message_bytes = 8 << 20;
    return o;
  }
  // Overridden by tests that put a store of their own between store_ and
  // counting_ (it must outlive store_); returns what store_ writes to.
  virtual store::Store* Interpose(store::Store* counting) { return counting; }

  // ---- request builders and calls (mailbox "mbx-a", folder INBOX unless named)
  absl::StatusOr<v1::MailboxInfo> NewMailbox(const std::string& id,
                                             const std::string& tenant = "tenant-a",
                                             int64_t quota_bytes = 0, MailStore* on = nullptr) {
    v1::CreateMailboxRequest r;
    r.set_mailbox_id(id);
    r.set_tenant_id(tenant);
    r.set_owner_id(absl::StrCat("owner-", id));
    r.set_kind(common::v1::MAILBOX_KIND_USER);
    if (quota_bytes > 0) r.mutable_quota()->mutable_bytes()->set_value(quota_bytes);
    return (on ? on : store_.get())->CreateMailbox(r);
  }
  void CreateMailbox(const std::string& id, MailStore* on = nullptr) {
    auto got = NewMailbox(id, "tenant-a", 0, on);
    ASSERT_TRUE(got.ok()) << got.status();
  }
  static constexpr char kAlice[] = "Alice <alice@example.com>";
  // A small message; with a message_id it carries a Message-ID header too.
  static std::string Msg(const std::string& subject, const std::string& body,
                         const std::string& from = kAlice, const std::string& message_id = "") {
    std::string id_header =
        message_id.empty() ? "" : absl::StrCat("Message-ID: <", message_id, ">\r\n");
    return absl::StrCat("From: ", from, "\r\nTo: bob@example.com\r\nSubject: ", subject,
                        "\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n", id_header, "\r\n", body,
                        "\r\n");
  }
  static v1::AppendRequest AppendRequestFor(const std::string& raw,
                                            const std::string& folder = "INBOX",
                                            const std::string& mailbox = "mbx-a") {
    v1::AppendRequest r;
    r.set_mailbox_id(mailbox);
    r.mutable_folder()->set_name(folder);
    r.set_message(raw);
    return r;
  }
  absl::StatusOr<v1::AppendResponse> Append(const std::string& raw,
                                            const std::string& folder = "INBOX",
                                            const std::string& mailbox = "mbx-a") {
    return store_->Append(AppendRequestFor(raw, folder, mailbox));
  }
  static v1::FolderStatusRequest FolderStatusRequestFor(const std::string& folder = "INBOX",
                                                        const std::string& mailbox = "mbx-a") {
    v1::FolderStatusRequest r;
    r.set_mailbox_id(mailbox);
    r.mutable_folder()->set_name(folder);
    return r;
  }
  // The folder's status with its UID list.
  v1::FolderStatusResponse Status(const std::string& folder = "INBOX",
                                  const std::string& mailbox = "mbx-a", MailStore* on = nullptr) {
    v1::FolderStatusRequest r = FolderStatusRequestFor(folder, mailbox);
    r.set_include_uids(true);
    auto s = (on ? on : store_.get())->FolderStatus(r);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : v1::FolderStatusResponse();
  }
  static constexpr uint32_t kToLast = 0;  // as `last` of a UID range: "first:*"
  // Adds `flags` to the UIDs first..last of INBOX.
  static v1::StoreFlagsRequest AddFlagsRequest(uint32_t first, uint32_t last,
                                               const std::vector<std::string>& flags,
                                               const std::string& mailbox = "mbx-a") {
    v1::StoreFlagsRequest sf;
    sf.set_mailbox_id(mailbox);
    sf.mutable_folder()->set_name("INBOX");
    auto* r = sf.mutable_messages()->mutable_uids()->add_ranges();
    r->set_first(first);
    if (last == kToLast)
      r->set_to_last(true);
    else
      r->set_last(last);
    sf.set_mode(v1::STORE_MODE_ADD);
    for (const std::string& f : flags) sf.add_flags(f);
    return sf;
  }
  // Adds one flag to one UID of INBOX; returns the folder's HIGHESTMODSEQ after.
  uint64_t SetFlag(uint32_t uid, const std::string& flag) {
    auto s = store_->StoreFlags(AddFlagsRequest(uid, uid, {flag}));
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->highest_modseq() : 0;
  }
  static v1::ExpungeRequest ExpungeRequestFor(const std::string& mailbox = "mbx-a") {
    v1::ExpungeRequest ex;
    ex.set_mailbox_id(mailbox);
    ex.mutable_folder()->set_name("INBOX");
    return ex;
  }
  // Changes (and VANISHED UIDs) since `modseq` in a folder of "mbx-a".
  static v1::ChangesSinceRequest ChangesSinceRequestFor(uint64_t modseq,
                                                        const std::string& folder = "INBOX") {
    v1::ChangesSinceRequest cs;
    cs.set_mailbox_id("mbx-a");
    cs.mutable_folder()->set_name(folder);
    cs.set_modseq(modseq);
    cs.set_include_vanished(true);
    return cs;
  }
  static std::vector<uint32_t> Uids(const v1::IdSet& set) {
    std::vector<uint32_t> out;
    for (const auto& r : set.ranges())
      for (uint32_t u = r.first(); u <= r.last(); ++u) out.push_back(u);
    return out;
  }
  // Marks `uid` of INBOX \Deleted in `on` and expunges the folder.
  static absl::StatusOr<v1::ExpungeResponse> DeleteAndExpunge(MailStore& on, uint32_t uid,
                                                              const std::string& mailbox) {
    auto flagged = on.StoreFlags(AddFlagsRequest(uid, uid, {"\\Deleted"}, mailbox));
    if (!flagged.ok()) return flagged.status();
    return on.Expunge(ExpungeRequestFor(mailbox));
  }
  // The same, expecting exactly that UID to go.
  static void ExpungeUid(MailStore& on, uint32_t uid, const std::string& mailbox = "mbx-a") {
    auto got = DeleteAndExpunge(on, uid, mailbox);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(Uids(got->expunged()), std::vector<uint32_t>{uid});
  }
  static v1::SearchQuery TextQuery(v1::TextField field, const std::string& value) {
    v1::SearchQuery q;
    q.mutable_text()->set_field(field);
    q.mutable_text()->set_value(value);
    return q;
  }
  absl::StatusOr<v1::SearchResponse> Search(const v1::SearchQuery& q,
                                            const std::string& folder = "INBOX",
                                            const std::string& mailbox = "mbx-a",
                                            MailStore* on = nullptr) {
    v1::SearchRequest r;
    r.set_mailbox_id(mailbox);
    r.mutable_folder()->set_name(folder);
    *r.mutable_query() = q;
    return (on ? on : store_.get())->Search(r);
  }
  // UIDs of a search in a folder (and that the count says as many).
  std::vector<uint32_t> SearchUids(const v1::SearchQuery& q, const std::string& folder = "INBOX",
                                   const std::string& mailbox = "mbx-a", MailStore* on = nullptr) {
    auto got = Search(q, folder, mailbox, on);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) return {};
    std::vector<uint32_t> uids = Uids(got->uids());
    EXPECT_EQ(uids.size(), got->count());
    return uids;
  }
  // UIDs of a text search (field, value) in a folder.
  std::vector<uint32_t> SearchText(v1::TextField field, const std::string& value,
                                   const std::string& folder = "INBOX",
                                   const std::string& mailbox = "mbx-a", MailStore* on = nullptr) {
    return SearchUids(TextQuery(field, value), folder, mailbox, on);
  }
  // Rewrites the stored record of folder `name` of "mbx-a" straight in the
  // kv store (a folder as an older mailstored stored it); `also` adds more
  // ops to the same write.
  void EditFolderRecord(const std::string& name,
                        const std::function<void(storage::FolderRecord*)>& edit,
                        const std::function<void(kv::v1::WriteRequest*)>& also = nullptr) {
    std::string fkey = keys::Folder("tenant-a", "mbx-a", Status(name).folder().folder_id());
    kv::v1::GetRequest g;
    g.set_key(fkey);
    auto got = kv_->Get(g, absl::InfiniteFuture());
    ASSERT_TRUE(got.ok() && got->found());
    storage::FolderRecord rec;
    ASSERT_TRUE(rec.ParseFromString(got->value()));
    edit(&rec);
    kv::v1::WriteRequest w;
    auto* put = w.add_ops()->mutable_put();
    put->set_key(fkey);
    put->set_value(rec.SerializeAsString());
    if (also) also(&w);
    WithMailboxRecord(kv_.get(), &w);
    ASSERT_TRUE(kv_->Write(w, absl::InfiniteFuture()).ok());
  }
  // A folder's record as the store reads it (LoadMailbox).
  storage::FolderRecord FolderRecordOf(const std::string& name = "INBOX",
                                       const std::string& mailbox = "mbx-a") {
    auto m = store_->LoadMailbox(mailbox);
    EXPECT_TRUE(m.ok()) << m.status();
    const storage::FolderRecord* f = m.ok() ? FindFolderByName(*m, name) : nullptr;
    EXPECT_NE(f, nullptr) << "no folder " << name;
    return f ? *f : storage::FolderRecord();
  }
  // The key range of one kind of a mailbox's INBOX keys ("p": per-UID
  // postings, "w": term blocks, ...).
  std::string InboxRange(const char* kind, const std::string& mailbox = "mbx-a") {
    return absl::StrCat(keys::MailboxRange("tenant-a", mailbox), kind, "/",
                        FolderRecordOf("INBOX", mailbox).folder_id(), "/");
  }
  // Every message of INBOX below it is in the search blocks (IndexMark or
  // the folder record; deferred_index).
  uint32_t Watermark() {
    auto m = store_->LoadMailbox("mbx-a");
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) return 0;
    auto w = ReadIndexWatermark(store_.get(), *m, FolderRecordOf());
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? w->below : 0;
  }
  size_t CountPrefix(const std::string& prefix) {
    size_t n = 0;
    EXPECT_TRUE(store_->ScanRange(prefix, keys::PrefixEnd(prefix), true, SIZE_MAX, false,
                                  [&](const kv::v1::KeyValue&) { return ++n, true; })
                    .ok());
    return n;
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> kv_;
  std::unique_ptr<CountingStore> counting_;
  std::unique_ptr<MailStore> store_;
};

}  // namespace mailgrid::mailstore::testing

#endif  // MAILGRID_SERVICES_MAILSTORE_TESTING_STORE_FIXTURE_H_
