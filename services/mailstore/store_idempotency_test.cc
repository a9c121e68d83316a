// A retried Append/DeliverBatch racing its own first attempt, made
// deterministic with a store that decides when each write reaches the state
// machine. Two shapes of the race, both "two plans before either commits":
//  * LIMBO: the first attempt's write times out at the caller (outcome
//    unknown: Raft cannot cancel an entry it proposed), the retry is planned
//    from a state without it, and the first entry commits just before the
//    retry's (the order of the Raft log);
//  * TWO LEADERS: two MailStore instances over one store (a deposed leader
//    and the new one), each plans the same request, then both write.
// Either way: one stored copy, and every caller that is told a UID is told
// the same one.
#include <functional>
#include <optional>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "services/mailstore/keys.h"
#include "services/mailstore/mail_store.h"
#include "services/mailstore/testing/store_fixture.h"

namespace mailgrid::mailstore {
namespace {

// Forwards to the real store, except that the write after Hold() is kept
// back (its caller gets "outcome unknown") and applied just before the next
// write, as the earlier entry of the log; before_write runs ahead of each
// write that is forwarded. Every write request is recorded.
class LimboStore : public store::Store {
 public:
  explicit LimboStore(store::Store* inner) : inner_(inner) {}
  absl::StatusOr<kv::v1::GetResponse> Get(const kv::v1::GetRequest& r, absl::Time d) override {
    return inner_->Get(r, d);
  }
  absl::StatusOr<kv::v1::ScanResponse> Scan(const kv::v1::ScanRequest& r, absl::Time d) override {
    return inner_->Scan(r, d);
  }
  absl::StatusOr<kv::v1::WriteResponse> Write(const kv::v1::WriteRequest& r, absl::Time d) override {
    std::optional<kv::v1::WriteRequest> earlier;
    std::function<void()> hook;
    {
      absl::MutexLock l(&mu_);
      writes_.push_back(r);
      if (hold_next_) {
        hold_next_ = false;
        held_ = r;
        return absl::DeadlineExceededError("write outcome unknown (held by the test)");
      }
      earlier = std::move(held_);
      held_.reset();
      hook = std::move(before_write_);
      before_write_ = nullptr;
    }
    if (earlier) {
      auto first = inner_->Write(*earlier, d);
      if (!first.ok()) return first.status();
      first_outcome_ = *first;
    }
    if (hook) hook();
    return inner_->Write(r, d);
  }

  void Hold() {
    absl::MutexLock l(&mu_);
    hold_next_ = true;
  }
  bool holding() {
    absl::MutexLock l(&mu_);
    return held_.has_value();
  }
  // Runs once, before the next forwarded write.
  void BeforeNextWrite(std::function<void()> f) {
    absl::MutexLock l(&mu_);
    before_write_ = std::move(f);
  }
  std::vector<kv::v1::WriteRequest> writes() {
    absl::MutexLock l(&mu_);
    return writes_;
  }
  // How the held entry fared when it was applied.
  const kv::v1::WriteResponse& first_outcome() const { return first_outcome_; }

 private:
  store::Store* inner_;
  absl::Mutex mu_;
  bool hold_next_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<kv::v1::WriteRequest> held_ ABSL_GUARDED_BY(mu_);
  std::function<void()> before_write_ ABSL_GUARDED_BY(mu_);
  std::vector<kv::v1::WriteRequest> writes_ ABSL_GUARDED_BY(mu_);
  kv::v1::WriteResponse first_outcome_;
};

const char kMessage[] =
    "From: Partner <partner@example.org>\r\nTo: alice@example.com\r\nSubject: once\r\n"
    "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <once@example.org>\r\n\r\n"
    "delivered exactly once\r\n";

// store_ writes through a LimboStore; other_ (a second leader) straight to
// the same kv store. Mailbox "mbx-a".
class IdempotencyRaceTest : public testing::StoreFixture {
 protected:
  void SetUp() override {
    StoreFixture::SetUp();
    // The other "leader" reads and writes the same replicated state.
    other_ = std::make_unique<MailStore>(kv_.get(), StoreOptions{});
  }
  void TearDown() override {
    other_.reset();
    StoreFixture::TearDown();
  }
  StoreOptions Options() override { return StoreOptions{}; }
  store::Store* Interpose(store::Store* counting) override {
    limbo_ = std::make_unique<LimboStore>(counting);
    return limbo_.get();
  }

  static v1::DeliverBatchRequest Delivery() {
    v1::DeliverBatchRequest d;
    d.set_delivery_id("relay-queue-id-1");
    d.set_message(kMessage);
    d.add_recipients()->set_mailbox_id("mbx-a");
    return d;
  }
  static v1::AppendRequest AppendWithKey() {
    v1::AppendRequest a = AppendRequestFor(kMessage);
    a.set_idempotency_key("imap-append-1");
    return a;
  }
  // INBOX as stored, read through the other instance (no test store).
  v1::FolderStatusResponse Inbox() { return Status("INBOX", "mbx-a", other_.get()); }
  uint64_t BodyRefs(const std::string& sha) {
    auto b = other_->LoadBody("tenant-a", sha);
    return b.ok() ? b->refcount() : 0;
  }

  std::unique_ptr<LimboStore> limbo_;  // outlives store_ (the fixture resets it in TearDown)
  std::unique_ptr<MailStore> other_;
};

TEST_F(IdempotencyRaceTest, DeliveryRetriedWhileTheFirstAttemptIsUncommittedIsStoredOnce) {
  limbo_->Hold();
  auto first = store_->DeliverBatch(Delivery());
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(limbo_->holding());
  EXPECT_EQ(first->results(0).status(), v1::DELIVERY_STATUS_TEMPORARY_FAILURE);  // relayd: 451
  EXPECT_EQ(Inbox().folder().messages(), 0u) << "planned, not committed yet";

  // The retry is planned from the state without the first attempt; the
  // first attempt's entry commits ahead of the retry's write.
  auto retry = store_->DeliverBatch(Delivery());
  ASSERT_TRUE(retry.ok()) << retry.status();
  ASSERT_TRUE(limbo_->first_outcome().has_ok()) << "the first attempt committed";
  EXPECT_EQ(retry->results(0).status(), v1::DELIVERY_STATUS_DUPLICATE);
  EXPECT_EQ(retry->results(0).uid(), 1u);

  v1::FolderStatusResponse inbox = Inbox();
  EXPECT_EQ(inbox.folder().messages(), 1u);
  EXPECT_EQ(inbox.folder().uidnext(), 2u);
  EXPECT_EQ(BodyRefs(retry->body_sha256()), 1u);
  // A third attempt changes nothing either.
  auto third = store_->DeliverBatch(Delivery());
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->results(0).status(), v1::DELIVERY_STATUS_DUPLICATE);
  EXPECT_EQ(third->results(0).uid(), 1u);
  EXPECT_EQ(Inbox().folder().messages(), 1u);
}

TEST_F(IdempotencyRaceTest, DeliveryPlannedByTwoLeadersBeforeEitherCommitsIsStoredOnce) {
  // Our plan is made; before its write, the other instance plans and
  // commits the same delivery (both read a state without it).
  absl::StatusOr<v1::DeliverBatchResponse> theirs;
  limbo_->BeforeNextWrite([&] { theirs = other_->DeliverBatch(Delivery()); });
  auto ours = store_->DeliverBatch(Delivery());
  ASSERT_TRUE(ours.ok()) << ours.status();
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  EXPECT_EQ(theirs->results(0).status(), v1::DELIVERY_STATUS_DELIVERED);
  EXPECT_EQ(ours->results(0).status(), v1::DELIVERY_STATUS_DUPLICATE);
  EXPECT_EQ(ours->results(0).uid(), theirs->results(0).uid());
  EXPECT_EQ(ours->results(0).modseq(), theirs->results(0).modseq());
  EXPECT_EQ(ours->results(0).folder_id(), theirs->results(0).folder_id());
  EXPECT_EQ(Inbox().folder().messages(), 1u);
  EXPECT_EQ(BodyRefs(ours->body_sha256()), 1u);
}

TEST_F(IdempotencyRaceTest, AppendWithAKeyRacingItselfReturnsOneUidToBoth) {
  absl::StatusOr<v1::AppendResponse> theirs;
  limbo_->BeforeNextWrite([&] { theirs = other_->Append(AppendWithKey()); });
  auto ours = store_->Append(AppendWithKey());
  ASSERT_TRUE(ours.ok()) << ours.status();
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  EXPECT_EQ(ours->uid(), theirs->uid());
  EXPECT_EQ(ours->modseq(), theirs->modseq());
  EXPECT_EQ(ours->uidvalidity(), theirs->uidvalidity());
  EXPECT_EQ(Inbox().folder().messages(), 1u);

  // And the limbo shape: outcome unknown, retried, first commits first.
  v1::AppendRequest second = AppendWithKey();
  second.set_idempotency_key("imap-append-2");
  limbo_->Hold();
  EXPECT_FALSE(store_->Append(second).ok());
  auto retry = store_->Append(second);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->uid(), ours->uid() + 1);
  EXPECT_EQ(Inbox().folder().messages(), 2u);
  EXPECT_EQ(Inbox().folder().uidnext(), ours->uid() + 2);
}

// The idempotency key itself is a condition of the write that creates it
// (version 0 = must not exist yet), so the dedupe does not depend on every
// other writer of the mailbox rewriting the mailbox record.
TEST_F(IdempotencyRaceTest, TheIdempotencyRecordIsAConditionOfItsWrite) {
  ASSERT_TRUE(store_->DeliverBatch(Delivery()).ok());
  ASSERT_TRUE(store_->Append(AppendWithKey()).ok());
  std::string dkey = keys::Idem("tenant-a", "mbx-a", "d:relay-queue-id-1");
  std::string akey = keys::Idem("tenant-a", "mbx-a", "a:imap-append-1");
  int found = 0;
  for (const kv::v1::WriteRequest& w : limbo_->writes()) {
    bool puts_d = false, puts_a = false;
    for (const auto& op : w.ops()) {
      puts_d |= op.has_put() && op.put().key() == dkey;
      puts_a |= op.has_put() && op.put().key() == akey;
    }
    if (!puts_d && !puts_a) continue;
    const std::string& key = puts_d ? dkey : akey;
    bool conditioned = false;
    for (const auto& c : w.conditions()) {
      conditioned |= c.key() == key && c.kind() == kv::v1::Condition::VERSION_EQUALS &&
                     c.version() == 0;
    }
    EXPECT_TRUE(conditioned) << key;
    ++found;
  }
  EXPECT_EQ(found, 2);
}

}  // namespace
}  // namespace mailgrid::mailstore
