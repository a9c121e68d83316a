#include "libs/metrics/metrics.h"

#include "gtest/gtest.h"
#include "libs/base/net.h"
#include "libs/testing/http_get.h"
#include "prometheus/counter.h"

namespace mailgrid::metrics {
namespace {

TEST(MetricsTest, ServesRegistryAndProcessMetrics) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto& family = prometheus::BuildCounter().Name("mailgrid_test_events_total").Help("test").Register(*registry);
  family.Add({{"kind", "a"}}).Increment(3);
  auto exposer = HttpExposer::Start("127.0.0.1:0", registry, "testd");
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  auto resp = testing::HttpGet((*exposer)->url());
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->status, 200);
  EXPECT_NE(resp->body.find("mailgrid_test_events_total{kind=\"a\"} 3"), std::string::npos) << resp->body;
  EXPECT_NE(resp->body.find("process_resident_memory_bytes "), std::string::npos);
  EXPECT_NE(resp->body.find("process_open_fds "), std::string::npos);
  EXPECT_NE(resp->body.find("process_cpu_seconds_total "), std::string::npos);
  EXPECT_NE(resp->body.find("mailgrid_build_info{service=\"testd\""), std::string::npos);
  // RSS is a real reading, not a placeholder.
  size_t at = resp->body.find("\nprocess_resident_memory_bytes ") + 1;
  double rss = std::stod(resp->body.substr(at + std::string("process_resident_memory_bytes ").size()));
  EXPECT_GT(rss, 1024 * 1024);
}

TEST(MetricsTest, PortInUseIsAClearError) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto first = HttpExposer::Start("127.0.0.1:0", registry, "testd");
  ASSERT_TRUE(first.ok());
  auto second = HttpExposer::Start("127.0.0.1:" + std::to_string((*first)->port()), registry, "testd");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("port in use"), std::string::npos) << second.status();
}

}  // namespace
}  // namespace mailgrid::metrics
