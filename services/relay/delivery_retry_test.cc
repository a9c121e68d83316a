// DeliverWithRetry's bookkeeping over a scripted backend: which recipients
// are sent again, how their answers are merged, when it stops. That a real
// mailstored losing its leadership no longer costs a 451 is shown end to
// end by relay_failover_test.py (a SIGSTOPped leader, 3 real replicas).
#include "services/relay/delivery_retry.h"

#include <map>
#include <string>

#include "gtest/gtest.h"
#include "services/relay/config.h"
#include "services/relay/testing/fake_backend.h"

namespace mailgrid::relay {
namespace {

namespace v1 = mailstore::v1;

// Answers each mailbox as scripted: TEMPORARY_FAILURE for the first
// `temporary[id]` attempts (-1: always), `fixed[id]` if set, else DELIVERED.
class ScriptedBackend : public testing::FakeBackend {
 public:
  absl::StatusOr<v1::DeliverBatchResponse> Deliver(uint32_t shard,
                                                   const v1::DeliverBatchRequest& req) override {
    (void)FakeBackend::Deliver(shard, req);  // recorded
    if (!whole_call.ok()) return whole_call;
    v1::DeliverBatchResponse out;
    for (const v1::DeliveryTarget& t : req.recipients()) {
      v1::DeliveryResult* r = out.add_results();
      r->set_mailbox_id(t.mailbox_id());
      int& left = temporary[t.mailbox_id()];
      if (left != 0) {
        if (left > 0) --left;
        r->set_status(v1::DELIVERY_STATUS_TEMPORARY_FAILURE);
        r->set_detail("store: not leader");
      } else if (auto f = fixed.find(t.mailbox_id()); f != fixed.end()) {
        r->set_status(f->second);
      } else {
        r->set_status(v1::DELIVERY_STATUS_DELIVERED);
      }
    }
    return out;
  }

  std::map<std::string, int> temporary;
  std::map<std::string, v1::DeliveryStatus> fixed;
  absl::Status whole_call;
};

v1::DeliverBatchRequest Request(std::initializer_list<const char*> mailboxes) {
  v1::DeliverBatchRequest r;
  r.set_delivery_id("id-1");
  r.set_message("Subject: x\r\n\r\nbody\r\n");
  r.mutable_internal_date()->set_seconds(1700000000);
  for (const char* m : mailboxes) r.add_recipients()->set_mailbox_id(m);
  return r;
}

DeliveryRetry Quick() {
  DeliveryRetry r;
  r.first_pause = absl::Milliseconds(1);
  r.max_pause = absl::Milliseconds(5);
  return r;
}

TEST(DeliveryRetryTest, OnlyTheTemporaryFailuresAreSentAgainAndMergedInOrder) {
  ScriptedBackend b;
  b.temporary = {{"m1", 1}, {"m3", 2}};
  b.fixed = {{"m2", v1::DELIVERY_STATUS_QUOTA_EXCEEDED}};
  auto got = DeliverWithRetry(b, 0, Request({"m1", "m2", "m3"}), Quick());
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->results_size(), 3);
  EXPECT_EQ(got->results(0).mailbox_id(), "m1");
  EXPECT_EQ(got->results(0).status(), v1::DELIVERY_STATUS_DELIVERED);
  EXPECT_EQ(got->results(1).status(), v1::DELIVERY_STATUS_QUOTA_EXCEEDED) << "not retried";
  EXPECT_EQ(got->results(2).mailbox_id(), "m3");
  EXPECT_EQ(got->results(2).status(), v1::DELIVERY_STATUS_DELIVERED);
  ASSERT_EQ(b.Delivered(), 3u);
  const v1::DeliverBatchRequest& second = b.delivered[1];
  ASSERT_EQ(second.recipients_size(), 2);
  EXPECT_EQ(second.recipients(0).mailbox_id(), "m1");
  EXPECT_EQ(second.recipients(1).mailbox_id(), "m3");
  EXPECT_EQ(second.delivery_id(), "id-1") << "same id: mailstored deduplicates";
  EXPECT_EQ(second.message(), b.delivered[0].message());
  EXPECT_EQ(second.internal_date().seconds(), 1700000000);
  ASSERT_EQ(b.delivered[2].recipients_size(), 1);
  EXPECT_EQ(b.delivered[2].recipients(0).mailbox_id(), "m3");
}

TEST(DeliveryRetryTest, GivesUpWhenTheBudgetIsSpentWithTheLastAnswer) {
  ScriptedBackend b;
  b.temporary = {{"m1", -1}};
  DeliveryRetry r = Quick();
  r.budget = absl::Milliseconds(30);
  auto got = DeliverWithRetry(b, 0, Request({"m1", "m2"}), r);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->results(0).status(), v1::DELIVERY_STATUS_TEMPORARY_FAILURE);  // relayd: 451
  EXPECT_EQ(got->results(0).detail(), "store: not leader");
  EXPECT_EQ(got->results(1).status(), v1::DELIVERY_STATUS_DELIVERED);
  EXPECT_GT(b.Delivered(), 1u);
  for (size_t i = 1; i < b.Delivered(); ++i) EXPECT_EQ(b.delivered[i].recipients_size(), 1);
}

// relayd's --delivery-retry-* flags reach every caller through the backend.
class BackendWithSettings : public ScriptedBackend {
 public:
  DeliveryRetry delivery_retry() const override { return settings; }
  DeliveryRetry settings;
};

TEST(DeliveryRetryTest, WithoutSettingsGivenTheBackendsOwnApply) {
  BackendWithSettings never;
  never.temporary = {{"m1", 1}};
  never.settings.budget = absl::ZeroDuration();  // --delivery-retry-budget=0
  auto got = DeliverWithRetry(never, 0, Request({"m1"}));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->results(0).status(), v1::DELIVERY_STATUS_TEMPORARY_FAILURE);
  EXPECT_EQ(never.Delivered(), 1u);

  BackendWithSettings quick;
  quick.temporary = {{"m1", 1}};
  quick.settings = Quick();
  got = DeliverWithRetry(quick, 0, Request({"m1"}));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->results(0).status(), v1::DELIVERY_STATUS_DELIVERED);
  EXPECT_EQ(quick.Delivered(), 2u);
}

TEST(DeliveryRetryTest, FlagsOutOfRangeAreRefusedByName) {
  Options o;
  EXPECT_TRUE(Validate(o).ok()) << Validate(o);
  o.delivery_retry.budget = absl::Seconds(-1);
  EXPECT_NE(Validate(o).message().find("--delivery-retry-budget"), std::string::npos);
  o = Options();
  o.delivery_retry.first_pause = absl::ZeroDuration();
  EXPECT_EQ(Validate(o).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(Validate(o).message().find("--delivery-retry-first-pause"), std::string::npos);
  o = Options();
  o.delivery_retry.max_pause = o.delivery_retry.first_pause / 2;
  EXPECT_EQ(Validate(o).code(), absl::StatusCode::kInvalidArgument);
}

TEST(DeliveryRetryTest, AWholeCallErrorIsTheCallersAndAllDeliveredIsOneCall) {
  ScriptedBackend b;
  b.whole_call = absl::UnavailableError("no mailstored reachable");
  auto got = DeliverWithRetry(b, 0, Request({"m1"}), Quick());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(b.Delivered(), 1u) << "the mailstore client already retried UNAVAILABLE";

  ScriptedBackend ok;
  auto all = DeliverWithRetry(ok, 0, Request({"m1", "m2"}), Quick());
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(ok.Delivered(), 1u);
}

TEST(DeliveryRetryTest, ARetryThatFailsWholeKeepsTheAnswersSoFar) {
  // The first answer, then every retry fails as a whole.
  class FailingRetries : public ScriptedBackend {
   public:
    absl::StatusOr<v1::DeliverBatchResponse> Deliver(uint32_t shard,
                                                     const v1::DeliverBatchRequest& req) override {
      if (Delivered() > 0) whole_call = absl::DeadlineExceededError("deadline");
      return ScriptedBackend::Deliver(shard, req);
    }
  } f;
  f.temporary = {{"m2", -1}};
  DeliveryRetry r = Quick();
  r.budget = absl::Seconds(600);  // ended by the error, not the budget
  auto got = DeliverWithRetry(f, 0, Request({"m1", "m2"}), r);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->results(0).status(), v1::DELIVERY_STATUS_DELIVERED);
  EXPECT_EQ(got->results(1).status(), v1::DELIVERY_STATUS_TEMPORARY_FAILURE);
  EXPECT_EQ(f.Delivered(), 2u);
}

}  // namespace
}  // namespace mailgrid::relay
