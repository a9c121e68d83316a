#include "libs/outbound/queue.h"

#include "gtest/gtest.h"
#include "libs/outbound/test_util.h"
#include "libs/outbound/time_util.h"

namespace mailgrid::outbound {
namespace {

using testing::FreshStore;
using testing::kMessage;

const absl::Time kT0 = absl::FromUnixSeconds(1800000000);

NewMessage Msg(std::vector<std::string> rcpts, std::string from = "alice@example.org") {
  return NewMessage{"t1", std::move(from), std::move(rcpts), kMessage};
}

TEST(Backoff, DoublesFromFiveMinutesToFourHours) {
  RetryPolicy p;
  EXPECT_EQ(BackoffAfter(p, 1), absl::Minutes(5));
  EXPECT_EQ(BackoffAfter(p, 2), absl::Minutes(10));
  EXPECT_EQ(BackoffAfter(p, 3), absl::Minutes(20));
  EXPECT_EQ(BackoffAfter(p, 6), absl::Minutes(160));
  EXPECT_EQ(BackoffAfter(p, 7), absl::Hours(4));
  EXPECT_EQ(BackoffAfter(p, 1000), absl::Hours(4));
}

TEST(Queue, EnqueueGroupsByDomainAndIsDueNow) {
  auto store = FreshStore("enqueue");
  Queue q(store.get(), {});
  auto id = q.Enqueue(Msg({"z@b.test", "a@A.test", "y@b.test", "a@A.test"}), kT0);
  ASSERT_TRUE(id.ok()) << id.status();
  auto e = q.GetQueueEntry(*id, "", kT0);
  ASSERT_TRUE(e.ok());
  ASSERT_EQ(e->recipients_size(), 3);  // duplicate dropped
  EXPECT_EQ(e->recipients(0).domain(), "a.test");
  EXPECT_EQ(e->recipients(1).domain(), "b.test");
  EXPECT_EQ(e->recipients(1).address(), "y@b.test");
  EXPECT_EQ(e->subject(), "hello there");
  EXPECT_EQ(e->message_id(), "<m1@example.org>");
  EXPECT_EQ(e->state(), relay::v1::QUEUE_STATE_QUEUED);
  EXPECT_EQ(FromProto(e->expires_at()), kT0 + absl::Hours(120));
  auto body = q.ReadBody(*id);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(*body, kMessage);
  auto due = q.DueIds(kT0, 10);
  ASSERT_TRUE(due.ok());
  EXPECT_EQ(*due, std::vector<std::string>{*id});
  EXPECT_TRUE(q.DueIds(kT0 - absl::Seconds(1), 10)->empty());
  EXPECT_FALSE(q.Enqueue(Msg({}), kT0).ok());
  EXPECT_FALSE(q.Enqueue(Msg({"nodomain"}), kT0).ok());
}

// The leader-consistent view of the schedule index (what the 1M bench uses
// to tell a lagging replica from a fault): every key <= now with its time,
// oldest first, from the index's start (no DueIds floor); a reschedule moves
// the key out of it.
TEST(Queue, DueKeysFromLeaderListsTheIndexWithTimes) {
  auto store = FreshStore("due_keys");
  Queue q(store.get(), {});
  auto late = *q.Enqueue(Msg({"a@x.test"}), kT0 + absl::Minutes(2));
  auto early = *q.Enqueue(Msg({"b@x.test"}), kT0);
  auto later = *q.Enqueue(Msg({"c@x.test"}), kT0 + absl::Hours(1));
  // A DueIds scan moves the floor past kT0; the leader's view ignores it.
  ASSERT_TRUE(q.DueIds(kT0 + absl::Minutes(10), 10).ok());
  auto keys = q.DueKeysFromLeader(kT0 + absl::Minutes(10), 10);
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].queue_id, early);
  EXPECT_EQ((*keys)[0].due, kT0);
  EXPECT_EQ((*keys)[1].queue_id, late);
  EXPECT_EQ((*keys)[1].due, kT0 + absl::Minutes(2));
  EXPECT_EQ(q.DueKeysFromLeader(kT0 + absl::Minutes(10), 1)->size(), 1u);
  auto lease = q.TryLease(early, "r", kT0 + absl::Minutes(10));
  ASSERT_TRUE(lease.ok()) << lease.status();
  RecipientOutcome deferred{"b@x.test", RecipientOutcome::Kind::kDeferred, {}};
  deferred.reply.set_code(451);
  ASSERT_TRUE(q.Complete(*lease, {deferred}, kT0 + absl::Minutes(10)).ok());
  keys = q.DueKeysFromLeader(kT0 + absl::Minutes(10), 10);
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].queue_id, late);
  // Rescheduled 5 min out: due again then, with `later` after an hour.
  keys = q.DueKeysFromLeader(kT0 + absl::Hours(2), 10);
  ASSERT_EQ(keys->size(), 3u);
  EXPECT_EQ((*keys)[1].queue_id, early);
  EXPECT_EQ((*keys)[1].due, kT0 + absl::Minutes(15));
  EXPECT_EQ((*keys)[2].queue_id, later);
}

TEST(Queue, LargeBodyIsChunked) {
  auto store = FreshStore("large");
  Queue q(store.get(), {});
  NewMessage m = Msg({"b@x.test"});
  m.body = std::string("Subject: big\r\n\r\n") + std::string(3 << 20, 'x');
  auto id = q.Enqueue(m, kT0);
  ASSERT_TRUE(id.ok()) << id.status();
  auto body = q.ReadBody(*id);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(*body, m.body);
}

TEST(Queue, LeaseIsExclusiveUntilItExpires) {
  auto store = FreshStore("lease");
  QueueOptions opts;
  opts.lease_duration = absl::Minutes(1);
  Queue q(store.get(), opts);
  auto id = *q.Enqueue(Msg({"b@x.test"}), kT0);
  auto a = q.TryLease(id, "runner-a", kT0);
  ASSERT_TRUE(a.ok()) << a.status();
  // Leased: not due again until the lease expires, and B cannot take it.
  EXPECT_TRUE(q.DueIds(kT0 + absl::Seconds(59), 10)->empty());
  EXPECT_TRUE(
      absl::IsFailedPrecondition(q.TryLease(id, "runner-b", kT0 + absl::Seconds(30)).status()));
  EXPECT_EQ(q.GetQueueEntry(id, "", kT0)->state(), relay::v1::QUEUE_STATE_ACTIVE);
  EXPECT_EQ(q.GetQueueEntry(id, "", kT0)->lease_holder(), "runner-a");
  // Expired: it shows up as due by itself and B takes it over.
  absl::Time later = kT0 + absl::Minutes(2);
  EXPECT_EQ(*q.DueIds(later, 10), std::vector<std::string>{id});
  auto b = q.TryLease(id, "runner-b", later);
  ASSERT_TRUE(b.ok()) << b.status();
  // A's late completion is refused; B's is recorded.
  RecipientOutcome ok{"b@x.test", RecipientOutcome::Kind::kDelivered, {}};
  EXPECT_TRUE(absl::IsAborted(q.Complete(*a, {ok}, later).status()));
  auto done = q.Complete(*b, {ok}, later);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_TRUE(done->finished);
  // Finished entries are removed with their body and due key.
  EXPECT_TRUE(absl::IsNotFound(q.GetQueueEntry(id, "", later).status()));
  EXPECT_TRUE(absl::IsNotFound(q.ReadBody(id).status()));
  EXPECT_TRUE(q.DueIds(later + absl::Hours(1000), 10)->empty());
}

TEST(Queue, DeferralBacksOffThenBouncesAtLifetime) {
  auto store = FreshStore("defer");
  QueueOptions opts;
  opts.retry.lifetime = absl::Hours(1);
  opts.retry.delay_warning_after = absl::Minutes(10);
  Queue q(store.get(), opts);
  auto id = *q.Enqueue(Msg({"b@x.test", "c@x.test"}), kT0);
  SmtpReply soft;
  soft.set_code(451);
  soft.set_enhanced_code("4.3.0");
  soft.set_text("try later");
  auto lease = *q.TryLease(id, "r", kT0);
  auto report = q.Complete(*&lease,
                           {{"b@x.test", RecipientOutcome::Kind::kDeferred, soft},
                            {"c@x.test", RecipientOutcome::Kind::kDelivered, {}}},
                           kT0);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->finished);
  EXPECT_FALSE(report->delay_warning_due);
  auto e = *q.GetQueueEntry(id, "", kT0);
  EXPECT_EQ(e.state(), relay::v1::QUEUE_STATE_DEFERRED);
  EXPECT_EQ(e.recipients(0).state(), relay::v1::RECIPIENT_STATE_DEFERRED);
  EXPECT_EQ(e.recipients(0).last_reply().code(), 451u);
  EXPECT_EQ(FromProto(e.recipients(0).next_attempt_at()), kT0 + absl::Minutes(5));
  EXPECT_EQ(e.recipients(1).state(), relay::v1::RECIPIENT_STATE_DELIVERED);
  EXPECT_TRUE(q.DueIds(kT0 + absl::Minutes(4), 10)->empty());
  EXPECT_EQ(q.DueIds(kT0 + absl::Minutes(5), 10)->size(), 1u);

  // Second failure after 15 minutes: 10 minutes backoff, and the delay warning.
  absl::Time t2 = kT0 + absl::Minutes(15);
  lease = *q.TryLease(id, "r", t2);
  report = q.Complete(lease, {{"b@x.test", RecipientOutcome::Kind::kDeferred, soft}}, t2);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->delay_warning_due);
  ASSERT_EQ(report->delayed.size(), 1u);
  e = *q.GetQueueEntry(id, "", t2);
  EXPECT_TRUE(e.delay_warning_sent());
  EXPECT_EQ(FromProto(e.recipients(0).next_attempt_at()), t2 + absl::Minutes(10));

  // Past the lifetime a deferral is a bounce.
  absl::Time t3 = kT0 + absl::Hours(2);
  lease = *q.TryLease(id, "r", t3);
  report = q.Complete(lease, {{"b@x.test", RecipientOutcome::Kind::kDeferred, soft}}, t3);
  ASSERT_TRUE(report.ok());
  EXPECT_FALSE(report->delay_warning_due);  // only once
  ASSERT_EQ(report->newly_bounced.size(), 1u);
  EXPECT_EQ(report->newly_bounced[0].address(), "b@x.test");
  EXPECT_TRUE(report->finished);
}

TEST(Queue, HoldReleaseRetryDeleteBounce) {
  auto store = FreshStore("admin");
  Queue q(store.get(), {});
  auto id = *q.Enqueue(Msg({"b@x.test"}), kT0);
  relay::v1::HoldRequest hold;
  hold.set_queue_id(id);
  hold.set_reason("looks odd");
  auto held = q.Hold(hold, "", kT0);
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->state(), relay::v1::QUEUE_STATE_HELD);
  EXPECT_TRUE(absl::IsFailedPrecondition(q.Hold(hold, "", kT0).status()));
  EXPECT_TRUE(q.DueIds(kT0 + absl::Hours(1), 10)->empty());  // held: never due
  EXPECT_TRUE(absl::IsFailedPrecondition(q.TryLease(id, "r", kT0).status()));
  relay::v1::RetryNowRequest retry;
  retry.set_queue_id(id);
  EXPECT_TRUE(absl::IsFailedPrecondition(q.RetryNow(retry, "", kT0).status()));
  // Another tenant sees nothing.
  EXPECT_TRUE(absl::IsNotFound(q.GetQueueEntry(id, "t2", kT0).status()));
  relay::v1::ReleaseRequest release;
  release.set_queue_id(id);
  EXPECT_TRUE(absl::IsNotFound(q.Release(release, "t2", kT0).status()));
  ASSERT_TRUE(q.Release(release, "t1", kT0).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(q.Release(release, "", kT0).status()));
  EXPECT_EQ(q.DueIds(kT0, 10)->size(), 1u);

  // Defer it, then RetryNow makes it due at once.
  auto lease = *q.TryLease(id, "r", kT0);
  SmtpReply soft;
  soft.set_code(421);
  ASSERT_TRUE(q.Complete(lease, {{"b@x.test", RecipientOutcome::Kind::kDeferred, soft}}, kT0).ok());
  absl::Time t1 = kT0 + absl::Minutes(1);
  EXPECT_TRUE(q.DueIds(t1, 10)->empty());
  ASSERT_TRUE(q.RetryNow(retry, "", t1).ok());
  EXPECT_EQ(q.DueIds(t1, 10)->size(), 1u);

  relay::v1::BounceQueueEntryRequest bounce;
  bounce.set_queue_id(id);
  EXPECT_TRUE(absl::IsInvalidArgument(q.BounceQueueEntry(bounce, "", t1).status()));
  bounce.set_reason("operator says no");
  auto bounced = q.BounceQueueEntry(bounce, "", t1);
  ASSERT_TRUE(bounced.ok()) << bounced.status();
  ASSERT_EQ(bounced->newly_bounced.size(), 1u);
  EXPECT_EQ(bounced->body, kMessage);
  EXPECT_TRUE(absl::IsNotFound(q.GetQueueEntry(id, "", t1).status()));
  EXPECT_TRUE(q.DueIds(t1 + absl::Hours(200), 10)->empty());

  auto id2 = *q.Enqueue(Msg({"c@y.test"}), kT0);
  relay::v1::DeleteQueueEntryRequest del;
  del.set_queue_id(id2);
  EXPECT_TRUE(absl::IsInvalidArgument(q.DeleteQueueEntry(del, "", kT0)));
  del.set_reason("spam");
  ASSERT_TRUE(q.DeleteQueueEntry(del, "", kT0).ok());
  EXPECT_TRUE(absl::IsNotFound(q.GetQueueEntry(id2, "", kT0).status()));
  EXPECT_TRUE(q.DueIds(kT0 + absl::Hours(200), 10)->empty());
}

TEST(Queue, HoldWhileLeasedKeepsOutcomesAndHold) {
  auto store = FreshStore("holdleased");
  Queue q(store.get(), {});
  auto id = *q.Enqueue(Msg({"b@x.test", "c@x.test"}), kT0);
  auto lease = *q.TryLease(id, "r", kT0);
  relay::v1::HoldRequest hold;
  hold.set_queue_id(id);
  hold.set_reason("stop");
  ASSERT_TRUE(q.Hold(hold, "", kT0).ok());
  SmtpReply soft;
  soft.set_code(450);
  auto report = q.Complete(lease,
                           {{"b@x.test", RecipientOutcome::Kind::kDelivered, {}},
                            {"c@x.test", RecipientOutcome::Kind::kDeferred, soft}},
                           kT0);
  ASSERT_TRUE(report.ok()) << report.status();
  auto e = *q.GetQueueEntry(id, "", kT0);
  EXPECT_EQ(e.state(), relay::v1::QUEUE_STATE_HELD);
  EXPECT_EQ(e.recipients(0).state(), relay::v1::RECIPIENT_STATE_DELIVERED);
  EXPECT_TRUE(q.DueIds(kT0 + absl::Hours(10), 10)->empty());
}

TEST(Queue, ListFiltersAndPages) {
  auto store = FreshStore("list");
  Queue q(store.get(), {});
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    NewMessage m = Msg({i % 2 == 0 ? "a@even.test" : "a@odd.test"});
    m.tenant_id = i < 4 ? "t1" : "t2";
    ids.push_back(*q.Enqueue(m, kT0 + absl::Seconds(i)));
  }
  relay::v1::ListQueueRequest req;
  req.mutable_page()->set_page_size(2);
  auto page1 = q.ListQueue(req, "t1", kT0);
  ASSERT_TRUE(page1.ok());
  ASSERT_EQ(page1->entries_size(), 2);
  EXPECT_EQ(page1->entries(0).queue_id(), ids[0]);  // oldest first
  req.mutable_page()->set_page_token(page1->page_info().next_page_token());
  auto page2 = q.ListQueue(req, "t1", kT0);
  ASSERT_EQ(page2->entries_size(), 2);
  EXPECT_EQ(page2->entries(1).queue_id(), ids[3]);
  req.mutable_page()->set_page_token(page2->page_info().next_page_token());
  EXPECT_EQ(q.ListQueue(req, "t1", kT0)->entries_size(), 0);

  relay::v1::ListQueueRequest by_domain;
  by_domain.set_domain("even.test");
  EXPECT_EQ(q.ListQueue(by_domain, "", kT0)->entries_size(), 3);
  EXPECT_EQ(q.ListQueue(by_domain, "t1", kT0)->entries_size(), 2);
  relay::v1::ListQueueRequest by_sender;
  by_sender.set_sender("ALICE@example.org");
  EXPECT_EQ(q.ListQueue(by_sender, "", kT0)->entries_size(), 5);
}

TEST(Queue, RenewLeaseExtendsItAndFailsOnceLost) {
  auto store = FreshStore("renew");
  Queue q(store.get(), {});  // 15 min leases
  auto id = q.Enqueue(Msg({"b@x.test"}), kT0);
  ASSERT_TRUE(id.ok());
  auto lease = q.TryLease(*id, "a", kT0);
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(q.RenewLease(&*lease, kT0 + absl::Minutes(10)).ok());
  EXPECT_EQ(lease->expires_at, kT0 + absl::Minutes(25));
  // The old expiry is no longer a due key: nobody takes it at kT0+16min.
  EXPECT_TRUE(q.DueIds(kT0 + absl::Minutes(16), 10)->empty());
  EXPECT_FALSE(q.TryLease(*id, "b", kT0 + absl::Minutes(16)).ok());
  // Renewed lease completes without a read conflict.
  auto done = q.Complete(*lease, {{"b@x.test", RecipientOutcome::Kind::kDelivered, {}}},
                         kT0 + absl::Minutes(20));
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_TRUE(done->finished);

  // Lost: expired and taken by b; a's renewal is refused.
  id = q.Enqueue(Msg({"c@x.test"}), kT0);
  ASSERT_TRUE(id.ok());
  auto a = q.TryLease(*id, "a", kT0);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(q.TryLease(*id, "b", kT0 + absl::Minutes(16)).ok());
  EXPECT_TRUE(absl::IsAborted(q.RenewLease(&*a, kT0 + absl::Minutes(17))));
}

TEST(Queue, DueScanFloorStillFindsLateWritesAndAbandonedEntries) {
  auto store = FreshStore("floor");
  QueueOptions o;
  o.due_scan_margin = absl::Seconds(30);
  o.full_due_scan_every = absl::Minutes(1);
  Queue q(store.get(), o);
  EXPECT_TRUE(q.DueIds(kT0, 10)->empty());  // floor: kT0 - 30 s
  // Written by a relayd whose clock is behind by less than the margin.
  auto late = q.Enqueue(Msg({"late@x.test"}), kT0 - absl::Seconds(20));
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(*q.DueIds(kT0 + absl::Seconds(1), 10), std::vector<std::string>{*late});
  // An abandoned lease is due at the abandon time (>= the floor), not at
  // its old next attempt.
  auto lease = q.TryLease(*late, "a", kT0 + absl::Seconds(2));
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(q.Abandon(*lease, kT0 + absl::Seconds(5)).ok());
  EXPECT_EQ(*q.DueIds(kT0 + absl::Seconds(5), 10), std::vector<std::string>{*late});
  // Far behind the floor (a clock off by more than the margin): found by
  // the periodic full scan.
  auto skewed = q.Enqueue(Msg({"skew@x.test"}), kT0 - absl::Minutes(10));
  ASSERT_TRUE(skewed.ok());
  std::vector<std::string> later;
  for (int s = 6; s <= 70 && later.size() < 2; s += 8) {
    later = *q.DueIds(kT0 + absl::Seconds(s), 10);
  }
  EXPECT_EQ(later.size(), 2u);
}

}  // namespace
}  // namespace mailgrid::outbound
