#include "libs/metrics/cert_expiry.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"

namespace mailgrid::metrics {
namespace {

// A self-signed certificate valid for `days`, made by the openssl CLI (a
// real certificate, not a hand-written PEM).
std::string MakeCertificate(const std::string& dir, int days) {
  const std::string key = dir + "/k.pem", cert = dir + "/c" + std::to_string(days) + ".pem";
  std::string cmd = absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ", key,
      " -out ", cert, " -days ", days, " -subj /CN=expiry-test >/dev/null 2>&1");
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return cert;
}

std::string Read(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

double GaugeValue(prometheus::Registry& r, const std::string& listener) {
  for (const auto& family : r.Collect()) {
    if (family.name != "mailgrid_tls_certificate_expiry_seconds") continue;
    for (const auto& m : family.metric)
      for (const auto& l : m.label)
        if (l.name == "listener" && l.value == listener) return m.gauge.value;
  }
  ADD_FAILURE() << "no gauge for " << listener;
  return 0;
}

TEST(CertificateExpiryTest, NotAfterOfARealCertificate) {
  const std::string dir = ::testing::TempDir();
  auto not_after = CertificateNotAfter(Read(MakeCertificate(dir, 30)));
  ASSERT_TRUE(not_after.ok()) << not_after.status();
  const absl::Duration left = *not_after - absl::Now();
  EXPECT_GT(left, absl::Hours(24 * 29));
  EXPECT_LE(left, absl::Hours(24 * 30) + absl::Minutes(1));
  EXPECT_FALSE(CertificateNotAfter("not a certificate").ok());
}

TEST(CertificateExpiryTest, GaugePerListenerAndRefusesUnreadableFiles) {
  const std::string dir = ::testing::TempDir();
  auto registry = std::make_shared<prometheus::Registry>();
  CertificateExpiry expiry(registry);
  ASSERT_TRUE(expiry.Watch("smtp", MakeCertificate(dir, 10)).ok());
  ASSERT_TRUE(expiry.Watch("grpc", MakeCertificate(dir, 90)).ok());
  EXPECT_NEAR(GaugeValue(*registry, "smtp"), 10 * 86400.0, 120);
  EXPECT_NEAR(GaugeValue(*registry, "grpc"), 90 * 86400.0, 120);
  EXPECT_FALSE(expiry.Watch("imaps", dir + "/missing.pem").ok());
}

}  // namespace
}  // namespace mailgrid::metrics
