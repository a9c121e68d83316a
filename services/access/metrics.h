// accessd's Prometheus families: sessions by protocol, commands by name and
// result, latency per command, IMAP IDLE count.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

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
  // Command() runs for every command: the series by "protocol command
  // result", so the families' label maps are built once per series, not
  // once per command.
  struct Series {
    prometheus::Counter* count;
    prometheus::Histogram* latency;
  };
  std::mutex mu_;
  std::unordered_map<std::string, Series> series_;
};

}  // namespace mailgrid::access
