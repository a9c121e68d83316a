#include "libs/outbound/runner.h"

#include <map>
#include <set>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "libs/outbound/test_util.h"

namespace mailgrid::outbound {
namespace {

// Answers per recipient from a table: 'd'elivered, 't'emporary, 'p'ermanent.
class FakeTransport final : public Transport {
 public:
  absl::Mutex mu;
  size_t Count() {
    absl::MutexLock lock(&mu);
    return sent.size();
  }
  std::map<std::string, char> verdict;
  std::vector<std::pair<std::string, std::string>> sent;  // (rcpt, from)
  std::vector<std::string> messages;

  std::vector<RecipientOutcome> Deliver(const std::string&, const std::string& from,
                                        const std::vector<std::string>& rcpts,
                                        const std::string& message) override {
    absl::MutexLock lock(&mu);
    std::vector<RecipientOutcome> out;
    for (const auto& r : rcpts) {
      RecipientOutcome o;
      o.address = r;
      char v = verdict.count(r) ? verdict[r] : 'd';
      o.kind = v == 'd'   ? RecipientOutcome::Kind::kDelivered
               : v == 't' ? RecipientOutcome::Kind::kDeferred
                          : RecipientOutcome::Kind::kBounced;
      o.reply.set_code(v == 'd' ? 250 : v == 't' ? 451 : 550);
      if (v == 'd') {
        sent.emplace_back(r, from);
        messages.push_back(message);
      }
      out.push_back(o);
    }
    return out;
  }
};

TEST(QueueRunner, DeliversDefersBouncesAndSendsOneDsn) {
  auto store = testing::FreshStore("runner");
  Queue q(store.get(), {});
  FakeTransport t;
  t.verdict["soft@x.test"] = 't';
  t.verdict["hard@y.test"] = 'p';
  RunnerOptions opts;
  opts.reporting_mta = "relay.test";
  QueueRunner runner(&q, &t, opts);
  absl::Time now = absl::Now();
  auto id = q.Enqueue(
      {"t1", "alice@example.org", {"ok@x.test", "soft@x.test", "hard@y.test"}, testing::kMessage},
      now);
  ASSERT_TRUE(id.ok());
  RunStats s = runner.RunOnce(absl::Now());
  EXPECT_EQ(s.leased, 1);
  EXPECT_EQ(s.delivered, 1);
  EXPECT_EQ(s.deferred, 1);
  EXPECT_EQ(s.bounced, 1);
  EXPECT_EQ(s.dsns, 1);
  // The DSN is queued to the sender with the null sender; delivering it
  // bounces nothing further even if it fails.
  s = runner.RunOnce(absl::Now());
  EXPECT_EQ(s.leased, 1);
  EXPECT_EQ(s.delivered, 1);
  ASSERT_EQ(t.sent.back().first, "alice@example.org");
  EXPECT_EQ(t.sent.back().second, "");
  EXPECT_TRUE(absl::StrContains(t.messages.back(), "Final-Recipient: rfc822; hard@y.test"));
  // The soft one waits for its backoff.
  EXPECT_EQ(runner.RunOnce(absl::Now()).leased, 0);
  auto e = q.GetQueueEntry(*id, "", absl::Now());
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->state(), relay::v1::QUEUE_STATE_DEFERRED);
  t.verdict["soft@x.test"] = 'd';
  relay::v1::RetryNowRequest retry;
  retry.set_queue_id(*id);
  ASSERT_TRUE(q.RetryNow(retry, "", absl::Now()).ok());
  s = runner.RunOnce(absl::Now());
  EXPECT_EQ(s.delivered, 1);
  EXPECT_TRUE(absl::IsNotFound(q.GetQueueEntry(*id, "", absl::Now()).status()));
}

TEST(QueueRunner, BounceOfNullSenderIsDropped) {
  auto store = testing::FreshStore("runner_null");
  Queue q(store.get(), {});
  FakeTransport t;
  t.verdict["x@y.test"] = 'p';
  QueueRunner runner(&q, &t, {});
  ASSERT_TRUE(q.Enqueue({"t1", "", {"x@y.test"}, testing::kMessage}, absl::Now()).ok());
  RunStats s = runner.RunOnce(absl::Now());
  EXPECT_EQ(s.bounced, 1);
  EXPECT_EQ(s.dsns, 0);
  EXPECT_TRUE(q.DueIds(absl::Now() + absl::Hours(1000), 10)->empty());
}

// Two runners of one queue poll it often, one thread each.
RunnerOptions OneThreadRunner(const std::string& holder) {
  RunnerOptions o;
  o.holder = holder;
  o.threads = 1;
  o.poll_interval = absl::Milliseconds(20);
  return o;
}

TEST(QueueRunner, ThreadsDeliverEachMessageOnce) {
  auto store = testing::FreshStore("runner_threads");
  Queue q(store.get(), {});
  FakeTransport t, t2;  // one per runner, to see who delivered what
  RunnerOptions a = OneThreadRunner("a");
  RunnerOptions b = OneThreadRunner("b");
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(
        q.Enqueue({"t1", "s@e.test", {"r" + std::to_string(i) + "@x.test"}, testing::kMessage},
                  absl::Now())
            .ok());
  }
  QueueRunner ra(&q, &t, a), rb(&q, &t2, b);
  ra.Start();
  rb.Start();
  for (int i = 0; i < 6000 && (t.Count() + t2.Count() < 40 ||
                               !q.DueIds(absl::Now() + absl::Hours(1), 1)->empty());
       ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ra.Stop();
  rb.Stop();
  std::set<std::string> seen;
  for (const auto& s : t.sent) EXPECT_TRUE(seen.insert(s.first).second) << s.first;
  for (const auto& s : t2.sent) EXPECT_TRUE(seen.insert(s.first).second) << s.first;
  EXPECT_EQ(seen.size(), 40u);
}

// A fake slow peer: the first delivery takes longer than the lease (as a
// slow peer or a big message would); every delivery is recorded.
class SlowTransport final : public Transport {
 public:
  explicit SlowTransport(absl::Duration first_takes) : first_takes_(first_takes) {}
  absl::Mutex mu;
  int calls ABSL_GUARDED_BY(mu) = 0;
  bool in_first ABSL_GUARDED_BY(mu) = false;

  std::vector<RecipientOutcome> Deliver(const std::string&, const std::string&,
                                        const std::vector<std::string>& rcpts,
                                        const std::string&) override {
    bool slow = false;
    {
      absl::MutexLock lock(&mu);
      slow = ++calls == 1;
      in_first = slow;
    }
    if (slow) absl::SleepFor(first_takes_);
    {
      absl::MutexLock lock(&mu);
      in_first = false;
    }
    std::vector<RecipientOutcome> out;
    for (const auto& r : rcpts) {
      RecipientOutcome o{r, RecipientOutcome::Kind::kDelivered, {}};
      o.reply.set_code(250);
      out.push_back(o);
    }
    return out;
  }

 private:
  absl::Duration first_takes_;
};

TEST(QueueRunner, SlowDeliveryRenewsItsLeaseAndIsNotTakenOver) {
  auto store = testing::FreshStore("runner_renew");
  QueueOptions qo;
  qo.lease_duration = absl::Seconds(2);
  Queue q(store.get(), qo);
  // Both runners share one slow transport: the second call would be the
  // duplicate a takeover sends.
  SlowTransport slow(absl::Seconds(7));
  RunnerOptions a = OneThreadRunner("a");
  RunnerOptions b = OneThreadRunner("b");
  auto id = q.Enqueue({"t1", "s@e.test", {"r@x.test"}, testing::kMessage}, absl::Now());
  ASSERT_TRUE(id.ok());
  QueueRunner ra(&q, &slow, a), rb(&q, &slow, b);
  ra.Start();
  rb.Start();
  auto in_first = [&] {
    absl::MutexLock lock(&slow.mu);
    return slow.in_first;
  };
  for (int i = 0; i < 6000 && !in_first(); ++i) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_TRUE(in_first());
  // Past the first lease's end, still delivering: the lease was renewed.
  absl::SleepFor(absl::Seconds(3));
  if (in_first()) {
    auto e = q.GetQueueEntry(*id, "", absl::Now());
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->state(), relay::v1::QUEUE_STATE_ACTIVE);
  }
  for (int i = 0; i < 12000 && !absl::IsNotFound(q.GetQueueEntry(*id, "", absl::Now()).status());
       ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(absl::IsNotFound(q.GetQueueEntry(*id, "", absl::Now()).status()));
  ra.Stop();
  rb.Stop();
  absl::MutexLock lock(&slow.mu);
  EXPECT_EQ(slow.calls, 1) << "taken over and sent twice";
  EXPECT_EQ(ra.totals().lost_leases + rb.totals().lost_leases, 0);
}

}  // namespace
}  // namespace mailgrid::outbound
