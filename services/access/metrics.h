// accessd's Prometheus families: sessions by protocol, commands by name and
// result, latency per command, IMAP IDLE count.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace mailgrid::access {

class AccessMetrics {
 public:
  explicit AccessMetrics(std::shared_ptr<prometheus::Registry> registry);

  void SessionOpened(std::string_view protocol);
  void SessionClosed(std::string_view protocol);
  void Command(std::string_view protocol, std::string_view command, std::string_view result,
               absl::Duration latency);
  void IdleStarted();
  void IdleEnded();

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>* sessions_ = nullptr;
  prometheus::Family<prometheus::Counter>* commands_ = nullptr;
  prometheus::Family<prometheus::Histogram>* latency_ = nullptr;
  prometheus::Gauge* idle_ = nullptr;
};

}  // namespace mailgrid::access
