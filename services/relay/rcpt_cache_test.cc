#include "services/relay/rcpt_cache.h"

#include "gtest/gtest.h"
#include "libs/rpc/errors.h"
#include "mailgrid/common/v1/common.pb.h"

namespace mailgrid::relay {
namespace {

tenant::v1::ResolveRequest Request(const std::string& address, const std::string& from) {
  tenant::v1::ResolveRequest r;
  r.set_address(address);
  r.mutable_sender()->set_envelope_from(from);
  r.set_max_recipients(10000);
  return r;
}

tenant::v1::ResolveResponse Mailbox(const std::string& id) {
  tenant::v1::ResolveResponse r;
  r.set_tenant_id("t1");
  r.add_recipients()->set_mailbox_id(id);
  return r;
}

absl::Status NotHosted() {
  common::v1::RpcStatus d;
  common::v1::ErrorDetail e;
  e.set_reason("DOMAIN_NOT_HOSTED");
  d.add_details()->PackFrom(e);
  return rpc::WithDetails(absl::NotFoundError("domain not hosted"), d);
}

TEST(RcptCacheTest, KeysDependOnTheWholeRequest) {
  EXPECT_EQ(RcptCache::Key(Request("a@x.test", "s@y.test")),
            RcptCache::Key(Request("a@x.test", "s@y.test")));
  EXPECT_NE(RcptCache::Key(Request("a@x.test", "s@y.test")),
            RcptCache::Key(Request("a@x.test", "other@y.test")));
  tenant::v1::ResolveRequest authed = Request("a@x.test", "s@y.test");
  authed.mutable_sender()->set_authenticated(true);
  EXPECT_NE(RcptCache::Key(authed), RcptCache::Key(Request("a@x.test", "s@y.test")));
}

TEST(RcptCacheTest, KeepsAnswersUntilTheyExpire) {
  RcptCache cache(absl::Milliseconds(200));
  absl::Time t0 = absl::FromUnixSeconds(1000);
  std::string key = RcptCache::Key(Request("a@x.test", ""));
  EXPECT_EQ(cache.Get(key, t0), nullptr);
  cache.Put(key, Mailbox("mbx-a"), t0);
  auto hit = cache.Get(key, t0 + absl::Milliseconds(199));
  ASSERT_NE(hit, nullptr);
  ASSERT_TRUE(hit->ok());
  EXPECT_EQ((*hit)->recipients(0).mailbox_id(), "mbx-a");
  EXPECT_EQ(cache.Get(key, t0 + absl::Milliseconds(200)), nullptr);
  EXPECT_EQ(cache.size(), 0u);  // the expired entry is gone
}

TEST(RcptCacheTest, KeepsDomainNotHostedButNeverUnknownAddressesOrErrors) {
  RcptCache cache(absl::Seconds(1));
  absl::Time t0 = absl::FromUnixSeconds(1000);
  cache.Put("remote", NotHosted(), t0);
  auto hit = cache.Get("remote", t0);
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(rpc::ReasonOf(hit->status()), "DOMAIN_NOT_HOSTED");
  cache.Put("unknown", rpc::NotFound("address", "nobody@x.test"), t0);
  EXPECT_EQ(cache.Get("unknown", t0), nullptr);
  cache.Put("down", absl::UnavailableError("tenantd down"), t0);
  EXPECT_EQ(cache.Get("down", t0), nullptr);
  cache.Put("busy", absl::ResourceExhaustedError("too many"), t0);
  EXPECT_EQ(cache.Get("busy", t0), nullptr);
}

TEST(RcptCacheTest, DomainKeysAreCaseInsensitiveAndApartFromRequestKeys) {
  EXPECT_EQ(RcptCache::DomainKey("a@Remote.Example"), RcptCache::DomainKey("b@remote.example"));
  EXPECT_NE(RcptCache::DomainKey("a@remote.example"), RcptCache::DomainKey("a@other.example"));
  EXPECT_EQ(RcptCache::DomainKey("no-domain"), "");
  EXPECT_EQ(RcptCache::DomainKey("trailing@"), "");
  // "a\"@b\"@c": the domain is what follows the last '@'.
  EXPECT_EQ(RcptCache::DomainKey("x@y@remote.example"), RcptCache::DomainKey("z@remote.example"));
  EXPECT_NE(RcptCache::DomainKey("a@x.test"), RcptCache::Key(Request("a@x.test", "")));
  EXPECT_TRUE(RcptCache::NotHosted(NotHosted()));
  EXPECT_FALSE(RcptCache::NotHosted(Mailbox("m")));
  EXPECT_FALSE(RcptCache::NotHosted(rpc::NotFound("address", "nobody@x.test")));
  EXPECT_FALSE(RcptCache::NotHosted(absl::NotFoundError("no detail")));
}

TEST(RcptCacheTest, ForeignDomainsAreKeptTheirOwnTtlAndOnlyWhenNotHosted) {
  RcptCache cache(absl::Milliseconds(200), 10000, absl::Seconds(2));
  absl::Time t0 = absl::FromUnixSeconds(1000);
  std::string foreign = RcptCache::DomainKey("a@remote.example");
  cache.PutDomain(foreign, NotHosted(), t0);
  ASSERT_NE(cache.Get(foreign, t0 + absl::Milliseconds(1999)), nullptr);
  EXPECT_EQ(cache.Get(foreign, t0 + absl::Seconds(2)), nullptr);
  // A resolved answer or an unknown address is never kept for a domain.
  std::string hosted = RcptCache::DomainKey("a@hosted.test");
  cache.PutDomain(hosted, Mailbox("m"), t0);
  cache.PutDomain(hosted, rpc::NotFound("address", "a@hosted.test"), t0);
  EXPECT_EQ(cache.Get(hosted, t0), nullptr);
  // Without a foreign TTL of its own, the cache's TTL applies.
  RcptCache plain(absl::Milliseconds(200));
  plain.PutDomain(foreign, NotHosted(), t0);
  EXPECT_NE(plain.Get(foreign, t0 + absl::Milliseconds(199)), nullptr);
  EXPECT_EQ(plain.Get(foreign, t0 + absl::Milliseconds(200)), nullptr);
}

TEST(RcptCacheTest, ZeroTtlKeepsNothingAndSizeIsBounded) {
  RcptCache off(absl::ZeroDuration());
  off.Put("k", Mailbox("m"), absl::FromUnixSeconds(1));
  EXPECT_EQ(off.Get("k", absl::FromUnixSeconds(1)), nullptr);
  RcptCache small(absl::Seconds(10), 4);
  absl::Time t0 = absl::FromUnixSeconds(1000);
  for (int i = 0; i < 10; ++i) small.Put("k" + std::to_string(i), Mailbox("m"), t0);
  EXPECT_LE(small.size(), 4u);
  EXPECT_NE(small.Get("k9", t0), nullptr);  // the newest is kept
}

}  // namespace
}  // namespace mailgrid::relay
