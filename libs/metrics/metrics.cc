#include "libs/metrics/metrics.h"

#include <exception>

#include "absl/strings/str_cat.h"
#include "libs/base/net.h"
#include "libs/metrics/process_collector.h"
#include "prometheus/exposer.h"

namespace mailgrid::metrics {

std::shared_ptr<prometheus::Registry> Registry() {
  static auto* registry = new std::shared_ptr<prometheus::Registry>(std::make_shared<prometheus::Registry>());
  return *registry;
}

absl::StatusOr<std::unique_ptr<HttpExposer>> HttpExposer::Start(const std::string& listen,
                                                                std::shared_ptr<prometheus::Registry> registry,
                                                                const std::string& service) {
  auto hp = net::ParseHostPort(listen);
  if (!hp.ok()) return absl::InvalidArgumentError(absl::StrCat("--metrics-listen: ", hp.status().message()));
  if (hp->port == 0) {
    auto port = net::PickFreePort();
    if (!port.ok()) return port.status();
    hp->port = *port;
  } else if (absl::Status free = net::CheckPortFree(*hp); !free.ok()) {
    return absl::UnavailableError(absl::StrCat("metrics listener: ", free.message()));
  }
  std::unique_ptr<HttpExposer> out(new HttpExposer());
  out->host_ = hp->host;
  out->port_ = hp->port;
  // prometheus-cpp (civetweb) reports bind failures by throwing; this is the
  // one place that exception is turned into a status.
  try {
    out->exposer_ = std::make_unique<prometheus::Exposer>(hp->ToString(), /*num_threads=*/1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("metrics listener ", hp->ToString(), ": ", e.what()));
  }
  out->exposer_->RegisterCollectable(registry);
  out->process_ = std::make_shared<ProcessCollector>(service);
  out->exposer_->RegisterCollectable(out->process_);
  return out;
}

HttpExposer::~HttpExposer() = default;

std::string HttpExposer::url() const { return absl::StrCat("http://", net::HostPort{host_, port_}.ToString(), "/metrics"); }

const std::vector<double>& LatencyBuckets() {
  static const auto* buckets = new std::vector<double>{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                       0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10};
  return *buckets;
}

}  // namespace mailgrid::metrics
