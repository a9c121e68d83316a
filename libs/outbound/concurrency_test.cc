// Per-destination concurrency limits of the queue runner (runner.h) and the
// destinations SmtpTransport names (delivery.h).
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "libs/outbound/runner.h"
#include "libs/outbound/test_util.h"

namespace mailgrid::outbound {
namespace {

// Counts the sessions open at once per destination domain. Deliveries to
// `gated` wait until `gate` opens, so the test sees the runner with that
// destination saturated; every other domain is answered at once.
class CountingTransport final : public Transport {
 public:
  explicit CountingTransport(std::string gated) : gated_(std::move(gated)) {}

  std::vector<RecipientOutcome> Deliver(const std::string& domain, const std::string&,
                                        const std::vector<std::string>& rcpts,
                                        const std::string&) override {
    {
      absl::MutexLock lock(&mu);
      int now = ++open[domain];
      max_open[domain] = std::max(max_open[domain], now);
    }
    if (domain == gated_) gate.WaitForNotification();
    std::vector<RecipientOutcome> out;
    for (const auto& r : rcpts) {
      RecipientOutcome o{r, RecipientOutcome::Kind::kDelivered, {}};
      o.reply.set_code(250);
      out.push_back(o);
    }
    absl::MutexLock lock(&mu);
    --open[domain];
    delivered[domain] += static_cast<int>(rcpts.size());
    return out;
  }

  int Get(const std::map<std::string, int>& m, const std::string& k) {
    absl::MutexLock lock(&mu);
    auto it = m.find(k);
    return it == m.end() ? 0 : it->second;
  }

  absl::Notification gate;
  absl::Mutex mu;
  std::map<std::string, int> open ABSL_GUARDED_BY(mu);
  std::map<std::string, int> max_open ABSL_GUARDED_BY(mu);
  std::map<std::string, int> delivered ABSL_GUARDED_BY(mu);

 private:
  std::string gated_;
};

// Polls `done` for up to ten minutes (a shared machine can be slow; the
// test asserts on what happened, never on how long it took).
template <typename F>
bool Eventually(F done) {
  for (int i = 0; i < 60000; ++i) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return done();
}

// `threads` workers, at most `per_destination` sessions to one destination.
RunnerOptions LimitedRunner(int threads, int per_destination) {
  RunnerOptions o;
  o.threads = threads;
  o.destination_concurrency = per_destination;
  o.poll_interval = absl::Milliseconds(20);
  return o;
}

TEST(DestinationConcurrency, FullDestinationIsParkedAndOtherMailFlows) {
  auto store = testing::FreshStore("concurrency");
  Queue q(store.get(), {});
  CountingTransport t("slow.test");
  RunnerOptions opts = LimitedRunner(8, 2);
  QueueRunner runner(&q, &t, opts);
  const absl::Time now = absl::Now();
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(q.Enqueue({"t1", "s@e.test", {absl::StrCat("r", i, "@slow.test")}, testing::kMessage},
                          now)
                    .ok());
  }
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(q.Enqueue({"t1", "s@e.test", {absl::StrCat("r", i, "@fast.test")}, testing::kMessage},
                          now + absl::Milliseconds(1))
                    .ok());
  }
  runner.Start();
  // While slow.test holds its two slots (and its other eight entries wait
  // parked), the six fast.test messages are delivered by the free workers.
  EXPECT_TRUE(Eventually([&] { return t.Get(t.delivered, "fast.test") == 6; }));
  EXPECT_TRUE(Eventually([&] { return runner.parked() == 8; })) << runner.parked();
  EXPECT_EQ(t.Get(t.open, "slow.test"), 2);
  EXPECT_EQ(runner.active("domain:slow.test"), 2);
  EXPECT_EQ(t.Get(t.delivered, "slow.test"), 0);
  t.gate.Notify();
  EXPECT_TRUE(Eventually([&] { return t.Get(t.delivered, "slow.test") == 10; }));
  EXPECT_TRUE(Eventually([&] { return runner.parked() == 0; }));
  runner.Stop();
  EXPECT_EQ(t.Get(t.max_open, "slow.test"), 2) << "more sessions than the limit";
  EXPECT_EQ(runner.active("domain:slow.test"), 0);
  EXPECT_EQ(runner.totals().delivered, 16);
  EXPECT_EQ(runner.totals().lost_leases, 0);
}

TEST(DestinationConcurrency, StopGivesBackParkedLeases) {
  auto store = testing::FreshStore("concurrency_stop");
  Queue q(store.get(), {});
  CountingTransport t("slow.test");
  RunnerOptions opts = LimitedRunner(3, 1);
  QueueRunner runner(&q, &t, opts);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(
        q.Enqueue({"t1", "s@e.test", {absl::StrCat("r", i, "@slow.test")}, testing::kMessage},
                  absl::Now())
            .ok());
  }
  runner.Start();
  EXPECT_TRUE(Eventually([&] { return runner.parked() == 3; }));
  EXPECT_EQ(t.Get(t.max_open, "slow.test"), 1);
  t.gate.Notify();  // the one in delivery finishes; Stop abandons the rest
  EXPECT_TRUE(Eventually([&] { return t.Get(t.delivered, "slow.test") >= 1; }));
  runner.Stop();
  EXPECT_EQ(runner.parked(), 0u);
  // Given back: every undelivered entry is due now for any runner.
  auto due = q.DueIds(absl::Now() + absl::Seconds(1), 16);
  ASSERT_TRUE(due.ok());
  EXPECT_EQ(static_cast<int>(due->size()), 4 - t.Get(t.delivered, "slow.test"));
  EXPECT_EQ(t.Get(t.max_open, "slow.test"), 1);
}

TEST(DestinationConcurrency, SmtpTransportNamesSmartHostRoutesAndMxHosts) {
  mailauth::MemoryResolver dns;
  dns.AddMx("direct.test", 20, "mx2.hosting.test");
  dns.AddMx("direct.test", 10, "MX1.hosting.test");
  dns.AddMx("other.test", 10, "mx1.hosting.test");
  dns.FailWith("broken.test", mailauth::RrType::kMx);
  RouteTable routes;
  relay::v1::Route r;
  r.mutable_match()->set_domain_pattern("*.relayed.test");
  r.set_enabled(true);
  r.set_concurrency_limit(3);
  auto* h = r.add_smart_hosts();
  h->set_host("Relay1.test");
  h->set_port(587);
  r.add_smart_hosts()->set_host("relay2.test");
  relay::v1::Route direct;
  direct.mutable_match()->set_domain_pattern("other.test");
  direct.set_enabled(true);
  direct.set_direct(true);
  direct.set_concurrency_limit(7);
  routes.Set({r, direct});
  SmtpTransport smtp(DeliveryOptions{}, &dns, &routes);

  Destination relayed = smtp.DestinationOf("a.relayed.test");
  EXPECT_EQ(relayed.key, "relay:relay1.test:587,relay2.test:0");
  EXPECT_EQ(relayed.limit, 3);
  // Two domains with the same most preferred MX host are one destination.
  Destination d1 = smtp.DestinationOf("direct.test");
  Destination d2 = smtp.DestinationOf("other.test");
  EXPECT_EQ(d1.key, "mx:mx1.hosting.test");
  EXPECT_EQ(d2.key, d1.key);
  EXPECT_EQ(d1.limit, 0);  // no route: the runner's default
  EXPECT_EQ(d2.limit, 7);  // a direct route's limit
  // The answer is remembered: no second MX lookup.
  dns.ClearQueries();
  EXPECT_EQ(smtp.DestinationOf("direct.test").key, d1.key);
  EXPECT_TRUE(dns.queries().empty());
  // Without DNS (or when it fails) the domain stands for itself.
  EXPECT_EQ(smtp.DestinationOf("broken.test").key, "domain:broken.test");
  EXPECT_EQ(smtp.DestinationOf("unasked.test", false).key, "domain:unasked.test");
}

}  // namespace
}  // namespace mailgrid::outbound
