#include "libs/outbound/smtp_client.h"

#include "gtest/gtest.h"
#include "libs/outbound/delivery.h"

namespace mailgrid::outbound {
namespace {

TEST(DotStuff, StuffsLeadingDotsNormalizesAndTerminates) {
  EXPECT_EQ(DotStuff("a\r\n.b\r\n"), "a\r\n..b\r\n.\r\n");
  EXPECT_EQ(DotStuff(".\n..x\nlast"), "..\r\n...x\r\nlast\r\n.\r\n");
  EXPECT_EQ(DotStuff("mid.dot\r\n"), "mid.dot\r\n.\r\n");
  EXPECT_EQ(DotStuff(""), ".\r\n");
  EXPECT_EQ(DotStuff("a\rb"), "a\r\nb\r\n.\r\n");
}

TEST(SafeForEnvelope, RefusesInjection) {
  EXPECT_TRUE(SafeForEnvelope("a@b.test"));
  EXPECT_TRUE(SafeForEnvelope(""));
  EXPECT_FALSE(SafeForEnvelope("a@b.test>\r\nRCPT TO:<x@y"));
  EXPECT_FALSE(SafeForEnvelope("a b@c"));
  EXPECT_FALSE(SafeForEnvelope("a>@c"));
}

TEST(SendMail, ConnectionRefusedIsATemporarySessionFailure) {
  TransactionRequest req;
  req.recipients = {"a@b.test"};
  req.message = "Subject: x\r\n\r\nhi\r\n";
  req.timeouts.connect = absl::Seconds(10);
  // Port 1 on loopback: nothing listens there in a test environment.
  TransactionResult r = SendMail("127.0.0.1", 1, "", req);
  EXPECT_TRUE(r.session_failed);
  EXPECT_FALSE(r.session_permanent);
  EXPECT_EQ(r.session_reply.code(), 0u);
  EXPECT_NE(r.session_reply.error().find("connect"), std::string::npos) << r.session_reply.error();
  EXPECT_TRUE(r.recipients.empty());
}

TEST(RouteTable, MostSpecificLowestPriorityEnabledWins) {
  EXPECT_TRUE(RouteTable::PatternMatches("*", "x.test"));
  EXPECT_TRUE(RouteTable::PatternMatches("*.example.com", "a.example.com"));
  EXPECT_FALSE(RouteTable::PatternMatches("*.example.com", "example.com"));
  EXPECT_FALSE(RouteTable::PatternMatches("*.example.com", "badexample.com"));
  EXPECT_TRUE(RouteTable::PatternMatches("Example.com", "example.COM"));
  std::vector<relay::v1::Route> routes(4);
  routes[0].set_route_id("default");
  routes[0].mutable_match()->set_domain_pattern("*");
  routes[1].set_route_id("sub");
  routes[1].mutable_match()->set_domain_pattern("*.example.com");
  routes[2].set_route_id("exact");
  routes[2].mutable_match()->set_domain_pattern("a.example.com");
  routes[3].set_route_id("disabled");
  routes[3].mutable_match()->set_domain_pattern("b.example.com");
  for (int i = 0; i < 3; ++i) routes[i].set_enabled(true);
  RouteTable table;
  table.Set(routes);
  EXPECT_EQ(table.Match("a.example.com")->route_id(), "exact");
  EXPECT_EQ(table.Match("b.example.com")->route_id(), "sub");
  EXPECT_EQ(table.Match("other.test")->route_id(), "default");
  routes[0].set_priority(-1);
  table.Set(routes);
  EXPECT_EQ(table.Match("a.example.com")->route_id(), "default");
}

TEST(RouteTable, RegionRoutesMatchTheDestinationRegion) {
  RouteTable table;
  EXPECT_EQ(table.RegionOf("example.cn"), "CN");
  EXPECT_EQ(table.RegionOf("mail.example.co.uk"), "GB");
  EXPECT_EQ(table.RegionOf("example.com"), "");
  auto map = RouteTable::ParseRegionMap("*.corp-jp.com=jp, corp-jp.com=JP");
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_FALSE(RouteTable::ParseRegionMap("corp.com=JPN").ok());
  EXPECT_FALSE(RouteTable::ParseRegionMap("corp.com").ok());
  table.SetRegionMap(*map);
  EXPECT_EQ(table.RegionOf("corp-jp.com"), "JP");
  EXPECT_EQ(table.RegionOf("a.corp-jp.com"), "JP");

  std::vector<relay::v1::Route> routes(5);
  routes[0].set_route_id("default");
  routes[0].mutable_match()->set_domain_pattern("*");
  routes[1].set_route_id("cn");
  routes[1].mutable_match()->set_region("CN");
  routes[2].set_route_id("exact");
  routes[2].mutable_match()->set_domain_pattern("a.cn");
  routes[3].set_route_id("jp");
  routes[3].mutable_match()->set_region("jp");
  routes[4].set_route_id("de-disabled");
  routes[4].mutable_match()->set_region("DE");
  for (int i = 0; i < 4; ++i) routes[i].set_enabled(true);
  table.Set(routes);
  EXPECT_EQ(table.Match("a.cn")->route_id(), "exact");    // a domain beats a region
  EXPECT_EQ(table.Match("b.cn")->route_id(), "cn");       // a region beats "*"
  EXPECT_EQ(table.Match("corp-jp.com")->route_id(), "jp");  // mapped
  EXPECT_EQ(table.Match("example.com")->route_id(), "default");
  EXPECT_EQ(table.Match("example.de")->route_id(), "default");  // disabled
  routes[0].set_priority(-1);
  table.Set(routes);
  EXPECT_EQ(table.Match("b.cn")->route_id(), "default");  // priority first
}

TEST(SmtpTransport, TargetsFollowMxPreferenceThenAFallbackAndRoutes) {
  mailauth::MemoryResolver dns;
  dns.AddMx("dest.test", 20, "mx2.dest.test");
  dns.AddMx("dest.test", 10, "mx1.dest.test");
  dns.AddA("mx1.dest.test", "192.0.2.1");
  dns.AddA("mx2.dest.test", "192.0.2.2");
  dns.AddA("nomx.test", "192.0.2.9");
  dns.AddMx("null.test", 0, "");
  dns.FailWith("broken.test", mailauth::RrType::kMx);
  RouteTable routes;
  DeliveryOptions opts;
  opts.mx_port = 2525;
  SmtpTransport t(opts, &dns, &routes);
  SmtpReply failure;
  bool permanent = false;
  auto targets = t.Targets("dest.test", &failure, &permanent);
  ASSERT_EQ(targets.size(), 2u);
  EXPECT_EQ(targets[0].ip, "192.0.2.1");
  EXPECT_EQ(targets[0].port, 2525);
  EXPECT_EQ(targets[1].name, "mx2.dest.test");
  targets = t.Targets("nomx.test", &failure, &permanent);
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].ip, "192.0.2.9");
  EXPECT_TRUE(t.Targets("null.test", &failure, &permanent).empty());
  EXPECT_TRUE(permanent);
  EXPECT_EQ(failure.enhanced_code(), "5.1.10");
  permanent = false;
  EXPECT_TRUE(t.Targets("missing.test", &failure, &permanent).empty());
  EXPECT_TRUE(permanent);
  permanent = false;
  EXPECT_TRUE(t.Targets("broken.test", &failure, &permanent).empty());
  EXPECT_FALSE(permanent);
  // The deliver verdicts follow.
  auto out = t.Deliver("missing.test", "a@b", {"x@missing.test"}, "Subject: x\r\n\r\n");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, RecipientOutcome::Kind::kBounced);
  out = t.Deliver("broken.test", "a@b", {"x@broken.test"}, "Subject: x\r\n\r\n");
  EXPECT_EQ(out[0].kind, RecipientOutcome::Kind::kDeferred);

  // A smart-host route with failover, then direct.
  relay::v1::Route r;
  r.set_enabled(true);
  r.mutable_match()->set_domain_pattern("*.dest.test");
  r.add_smart_hosts()->set_host("198.51.100.1");
  r.mutable_smart_hosts(0)->set_port(587);
  r.add_smart_hosts()->set_host("mx1.dest.test");
  r.set_fallback_direct(true);
  routes.Set({r});
  dns.AddMx("sub.dest.test", 5, "mx2.dest.test");
  targets = t.Targets("sub.dest.test", &failure, &permanent);
  ASSERT_EQ(targets.size(), 3u);
  EXPECT_EQ(targets[0].ip, "198.51.100.1");
  EXPECT_EQ(targets[0].port, 587);
  EXPECT_EQ(targets[1].ip, "192.0.2.1");
  EXPECT_EQ(targets[1].port, 25);
  EXPECT_EQ(targets[2].ip, "192.0.2.2");
  EXPECT_EQ(targets[2].port, 2525);
}

}  // namespace
}  // namespace mailgrid::outbound
