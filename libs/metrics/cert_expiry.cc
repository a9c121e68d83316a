#include "libs/metrics/cert_expiry.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/base/file.h"
#include "libs/base/log.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace mailgrid::metrics {

absl::StatusOr<absl::Time> CertificateNotAfter(std::string_view pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  if (bio == nullptr) return absl::ResourceExhaustedError("BIO_new_mem_buf");
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), &X509_free);
  if (cert == nullptr) return absl::InvalidArgumentError("no PEM certificate");
  struct tm t = {};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert.get()), &t) != 1)
    return absl::InvalidArgumentError("unreadable notAfter");
  return absl::FromTM(t, absl::UTCTimeZone());
}

CertificateExpiry::CertificateExpiry(std::shared_ptr<prometheus::Registry> registry,
                                     absl::Duration refresh)
    : registry_(std::move(registry)),
      family_(&prometheus::BuildGauge()
                   .Name("mailgrid_tls_certificate_expiry_seconds")
                   .Help("Seconds until the notAfter of the certificate a listener serves "
                         "(negative once expired)")
                   .Register(*registry_)),
      refresh_(refresh) {
  thread_ = std::thread([this] {
    while (!stop_.WaitForNotificationWithTimeout(refresh_)) RefreshAll();
  });
}

CertificateExpiry::~CertificateExpiry() {
  stop_.Notify();
  thread_.join();
}

absl::Status CertificateExpiry::Refresh(const std::string& pem_file, prometheus::Gauge* gauge) {
  auto pem = file::ReadAll(pem_file);
  if (!pem.ok()) return pem.status();
  auto not_after = CertificateNotAfter(*pem);
  if (!not_after.ok())
    return absl::InvalidArgumentError(absl::StrCat(pem_file, ": ", not_after.status().message()));
  gauge->Set(absl::ToDoubleSeconds(*not_after - absl::Now()));
  return absl::OkStatus();
}

absl::Status CertificateExpiry::Watch(const std::string& listener, const std::string& pem_file) {
  prometheus::Gauge* gauge = &family_->Add({{"listener", listener}});
  absl::Status s = Refresh(pem_file, gauge);
  if (!s.ok()) {
    family_->Remove(gauge);
    return s;
  }
  absl::MutexLock lock(&mu_);
  watched_[listener] = {pem_file, gauge};
  return absl::OkStatus();
}

void CertificateExpiry::RefreshAll() {
  absl::MutexLock lock(&mu_);
  for (const auto& [listener, entry] : watched_) {
    if (absl::Status s = Refresh(entry.first, entry.second); !s.ok())
      log::Warn("certificate expiry not refreshed",
                {{"listener", listener}, {"error", s.ToString()}});
  }
}

}  // namespace mailgrid::metrics
