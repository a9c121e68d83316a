// A MailStore on a real LocalStore (RocksDB in a temp dir) behind a store
// wrapper that counts reads and writes and can fail the next write, with
// the helpers most store tests need (one mailbox "mbx-a" of "tenant-a").
#ifndef MAILGRID_SERVICES_MAILSTORE_TESTING_STORE_FIXTURE_H_
#define MAILGRID_SERVICES_MAILSTORE_TESTING_STORE_FIXTURE_H_

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "libs/store/local_store.h"
#include "services/mailstore/keys.h"
#include "services/mailstore/mail_store.h"

namespace mailgrid::mailstore::testing {

// Counts reads (scanned entries count one each) and writes; FailNextWrite
// makes the next write answer UNAVAILABLE, either before it reaches the
// store (lost) or after it applied (its answer lost: a failover between
// commit and reply).
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
  size_t writes() {
    absl::MutexLock lock(&mu_);
    return writes_;
  }
  size_t reads() const { return reads_.load(); }

 private:
  store::Store* inner_;
  absl::Mutex mu_;
  Fail fail_ = Fail::kNone;
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
    store_ = std::make_unique<MailStore>(counting_.get(), Options());
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
  void CreateMailbox(const std::string& id, MailStore* on = nullptr) {
    v1::CreateMailboxRequest r;
    r.set_mailbox_id(id);
    r.set_tenant_id("tenant-a");
    r.set_owner_id(absl::StrCat("owner-", id));
    r.set_kind(common::v1::MAILBOX_KIND_USER);
    auto got = (on ? on : store_.get())->CreateMailbox(r);
    ASSERT_TRUE(got.ok()) << got.status();
  }
  static std::string Msg(const std::string& subject, const std::string& body,
                         const std::string& from = "Alice <alice@example.com>") {
    return absl::StrCat("From: ", from, "\r\nTo: bob@example.com\r\nSubject: ", subject,
                        "\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n", body, "\r\n");
  }
  absl::StatusOr<v1::AppendResponse> Append(const std::string& raw,
                                            const std::string& folder = "INBOX",
                                            const std::string& mailbox = "mbx-a") {
    v1::AppendRequest r;
    r.set_mailbox_id(mailbox);
    r.mutable_folder()->set_name(folder);
    r.set_message(raw);
    return store_->Append(r);
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
    v1::StoreFlagsRequest sf;
    sf.set_mailbox_id(mailbox);
    sf.mutable_folder()->set_name("INBOX");
    auto* r = sf.mutable_messages()->mutable_uids()->add_ranges();
    r->set_first(uid);
    r->set_last(uid);
    sf.set_mode(v1::STORE_MODE_ADD);
    sf.add_flags("\\Deleted");
    if (auto flagged = on.StoreFlags(sf); !flagged.ok()) return flagged.status();
    v1::ExpungeRequest ex;
    ex.set_mailbox_id(mailbox);
    ex.mutable_folder()->set_name("INBOX");
    return on.Expunge(ex);
  }
  // The same, expecting exactly that UID to go.
  static void ExpungeUid(MailStore& on, uint32_t uid, const std::string& mailbox = "mbx-a") {
    auto got = DeleteAndExpunge(on, uid, mailbox);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(Uids(got->expunged()), std::vector<uint32_t>{uid});
  }
  // UIDs of a text search (field, value) in a folder.
  std::vector<uint32_t> SearchText(v1::TextField field, const std::string& value,
                                   const std::string& folder = "INBOX",
                                   const std::string& mailbox = "mbx-a",
                                   MailStore* on = nullptr) {
    v1::SearchRequest r;
    r.set_mailbox_id(mailbox);
    r.mutable_folder()->set_name(folder);
    r.mutable_query()->mutable_text()->set_field(field);
    r.mutable_query()->mutable_text()->set_value(value);
    auto got = (on ? on : store_.get())->Search(r);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) return {};
    std::vector<uint32_t> uids = Uids(got->uids());
    EXPECT_EQ(uids.size(), got->count());
    return uids;
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
