// Prometheus metrics for one process: a registry every component adds its
// families to, an HTTP exposer serving GET /metrics, and the standard process
// metrics (RSS, CPU, open fds, start time) plus mailgrid_build_info.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/registry.h"

namespace prometheus {
class Exposer;
}

namespace mailgrid::metrics {

// The process-wide registry (created on first use).
std::shared_ptr<prometheus::Registry> Registry();

// Serves /metrics for `registry` on `listen` ("127.0.0.1:9100"; port 0 picks a
// free one), together with process_* metrics and
// mailgrid_build_info{service,version}. A port in use is an UNAVAILABLE error
// naming the address.
class HttpExposer {
 public:
  static absl::StatusOr<std::unique_ptr<HttpExposer>> Start(const std::string& listen,
                                                            std::shared_ptr<prometheus::Registry> registry,
                                                            const std::string& service);
  ~HttpExposer();
  int port() const { return port_; }
  std::string url() const;

 private:
  HttpExposer() = default;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<prometheus::Collectable> process_;
  std::string host_;
  int port_ = 0;
};

// Latency buckets in seconds for RPCs and protocol commands: 100 µs .. 10 s.
const std::vector<double>& LatencyBuckets();

}  // namespace mailgrid::metrics
