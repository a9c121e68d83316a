// mailgrid_tls_certificate_expiry_seconds{listener}: seconds until the
// notAfter of the certificate a listener serves (negative once expired),
// for the MailgridTlsCertificateExpiry alerts. The files are re-read every
// refresh, because cert-manager renews them in place. libs/rpc re-reads the
// gRPC listener's files on the same interval (--tls-reload-interval), so the
// gauge shows what new connections get; for a listener that reads its files
// only at start (libs/netserver today), it shows what a restart would load.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Gauge;
}  // namespace prometheus

namespace mailgrid::metrics {

// The notAfter of the first certificate in a PEM text (pure).
absl::StatusOr<absl::Time> CertificateNotAfter(std::string_view pem);

class CertificateExpiry {
 public:
  explicit CertificateExpiry(std::shared_ptr<prometheus::Registry> registry,
                             absl::Duration refresh = absl::Minutes(1));
  ~CertificateExpiry();  // stops the refresher thread
  CertificateExpiry(const CertificateExpiry&) = delete;
  CertificateExpiry& operator=(const CertificateExpiry&) = delete;

  // Exports the gauge for `listener`, read from `pem_file` now (an
  // unreadable file is an error here, and only logged on later refreshes).
  absl::Status Watch(const std::string& listener, const std::string& pem_file);

 private:
  void RefreshAll();
  absl::Status Refresh(const std::string& pem_file, prometheus::Gauge* gauge);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>* family_;
  const absl::Duration refresh_;
  absl::Mutex mu_;
  std::map<std::string, std::pair<std::string, prometheus::Gauge*>> watched_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace mailgrid::metrics
