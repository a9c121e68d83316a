// services/relay/outbound.cc's own pieces (the queue itself is tested in
// libs/outbound): queued local delivery resolves its recipients with one
// ResolveMany; relayd's queue flags reach the queue.
#include "services/relay/outbound.h"

#include "gtest/gtest.h"
#include "libs/base/config.h"
#include "libs/outbound/test_util.h"
#include "libs/rpc/errors.h"
#include "services/relay/testing/fake_backend.h"

namespace mailgrid::relay {
namespace {

// The shared fake directory (bob@hosted.test exists, nobody@ does not,
// other domains are remote) that counts its Resolve and ResolveMany calls.
class CountingBackend final : public testing::FakeBackend {
 public:
  absl::StatusOr<tenant::v1::ResolveResponse> Resolve(
      const tenant::v1::ResolveRequest& req) override {
    ++resolve_calls;
    return FakeBackend::Resolve(req);
  }
  absl::StatusOr<tenant::v1::ResolveManyResponse> ResolveMany(
      const tenant::v1::ResolveManyRequest& req) override {
    ++many_calls;
    if (!has_many) return absl::UnimplementedError("old tenantd");
    int before = resolve_calls;
    auto out = Backend::ResolveMany(req);  // the default: Resolve per request
    resolve_calls = before;                // ... inside this one call
    return out;
  }

  bool has_many = true;
  int resolve_calls = 0;
  int many_calls = 0;
};

void ExpectAnswers(const std::vector<absl::StatusOr<ResolvedRecipient>>& got) {
  ASSERT_EQ(got.size(), 3u);
  ASSERT_TRUE(got[0].ok()) << got[0].status();
  EXPECT_FALSE(got[0]->remote);
  EXPECT_EQ(got[0]->address, "bob@hosted.test");
  ASSERT_EQ(got[0]->response.recipients_size(), 1);
  EXPECT_EQ(got[0]->response.recipients(0).mailbox_id(), "mbx-bob@hosted.test");
  ASSERT_TRUE(got[1].ok()) << got[1].status();
  EXPECT_TRUE(got[1]->remote);  // DOMAIN_NOT_HOSTED
  EXPECT_EQ(got[1]->address, "x@far.example");
  ASSERT_FALSE(got[2].ok());
  EXPECT_EQ(got[2].status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(rpc::ReasonOf(got[2].status()), "DOMAIN_NOT_HOSTED");
}

TEST(ResolveRecipients, SeveralAreOneResolveMany) {
  CountingBackend b;
  auto got = ResolveRecipients(b, {"bob@hosted.test", "x@far.example", "nobody@hosted.test"}, {});
  EXPECT_EQ(b.many_calls, 1);
  EXPECT_EQ(b.resolve_calls, 0);
  ExpectAnswers(got);
}

TEST(ResolveRecipients, WithoutResolveManyOneByOneWithTheSameAnswers) {
  CountingBackend b;
  b.has_many = false;
  auto got = ResolveRecipients(b, {"bob@hosted.test", "x@far.example", "nobody@hosted.test"}, {});
  EXPECT_EQ(b.many_calls, 1);
  EXPECT_EQ(b.resolve_calls, 3);
  ExpectAnswers(got);
}

TEST(ResolveRecipients, OneIsOneResolve) {
  CountingBackend b;
  auto got = ResolveRecipients(b, {"bob@hosted.test"}, {});
  EXPECT_EQ(b.many_calls, 0);
  EXPECT_EQ(b.resolve_calls, 1);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].ok());
  EXPECT_FALSE(got[0]->remote);
}

// --queue-removal-ride-wait (MAILGRID_QUEUE_REMOVAL_RIDE_WAIT) is the
// queue's completion_ride_wait; out-of-range values are refused.
absl::StatusOr<Options> ParseRelayFlags(std::vector<const char*> argv,
                                        std::vector<const char*> env = {}) {
  Options options;
  config::Flags flags("relayd");
  AddFlags(flags, options);
  argv.insert(argv.begin(), "relayd");
  env.push_back(nullptr);
  absl::Status parsed = flags.Parse(static_cast<int>(argv.size()), argv.data(), env.data());
  if (!parsed.ok()) return parsed;
  absl::Status valid = Validate(options);
  if (!valid.ok()) return valid;
  return options;
}

absl::Duration RideWaitOfQueue(const Options& options, const std::string& name) {
  CountingBackend backend;
  auto o = Outbound::Create(options, &backend, outbound::testing::FreshStore(name), nullptr,
                            nullptr);
  return o->queue()->options().completion_ride_wait;
}

TEST(QueueRemovalRideWait, DefaultIsTenMilliseconds) {
  auto options = ParseRelayFlags({});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(RideWaitOfQueue(*options, "ride_default"), absl::Milliseconds(10));
}

TEST(QueueRemovalRideWait, FlagAndEnvironmentReachTheQueue) {
  auto zero = ParseRelayFlags({"--queue-removal-ride-wait=0s"});
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_EQ(RideWaitOfQueue(*zero, "ride_zero"), absl::ZeroDuration());
  auto env = ParseRelayFlags({}, {"MAILGRID_QUEUE_REMOVAL_RIDE_WAIT=25ms"});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(RideWaitOfQueue(*env, "ride_env"), absl::Milliseconds(25));
}

TEST(QueueRemovalRideWait, OutOfRangeIsRefused) {
  for (const char* bad : {"--queue-removal-ride-wait=-1ms", "--queue-removal-ride-wait=2s",
                          "--queue-removal-ride-wait=soon"}) {
    auto options = ParseRelayFlags({bad});
    EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace mailgrid::relay
