// Reads /proc/self at scrape time, so the numbers are exact at every scrape
// and cost nothing between scrapes.
#pragma once

#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace mailgrid::metrics {

class ProcessCollector : public prometheus::Collectable {
 public:
  explicit ProcessCollector(std::string service);
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::string service_;
  double start_time_seconds_;
};

}  // namespace mailgrid::metrics
