#include "services/access/metrics.h"

namespace mailgrid::access {

AccessMetrics::AccessMetrics(std::shared_ptr<prometheus::Registry> registry)
    : registry_(std::move(registry)) {
  if (!registry_) return;
  sessions_ = &prometheus::BuildGauge()
                   .Name("mailgrid_access_sessions")
                   .Help("Open IMAP/POP3 sessions")
                   .Register(*registry_);
  commands_ = &prometheus::BuildCounter()
                   .Name("mailgrid_access_commands_total")
                   .Help("Protocol commands by name and result")
                   .Register(*registry_);
  latency_ = &prometheus::BuildHistogram()
                  .Name("mailgrid_access_command_seconds")
                  .Help("Command latency, from parse to tagged answer")
                  .Register(*registry_);
  idle_ = &prometheus::BuildGauge()
               .Name("mailgrid_access_idle_sessions")
               .Help("IMAP sessions in IDLE")
               .Register(*registry_)
               .Add({});
}

void AccessMetrics::SessionOpened(std::string_view protocol) {
  if (sessions_) sessions_->Add({{"protocol", std::string(protocol)}}).Increment();
}

void AccessMetrics::SessionClosed(std::string_view protocol) {
  if (sessions_) sessions_->Add({{"protocol", std::string(protocol)}}).Decrement();
}

void AccessMetrics::Command(std::string_view protocol, std::string_view command,
                            std::string_view result, absl::Duration latency) {
  if (!commands_) return;
  std::string key;
  key.reserve(protocol.size() + command.size() + result.size() + 2);
  key.append(protocol).append(1, ' ').append(command).append(1, ' ').append(result);
  Series s;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = series_.find(key);
    if (it == series_.end()) {
      static const prometheus::Histogram::BucketBoundaries kBuckets = {
          0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
      Series fresh{&commands_->Add({{"protocol", std::string(protocol)},
                                    {"command", std::string(command)},
                                    {"result", std::string(result)}}),
                   &latency_->Add({{"protocol", std::string(protocol)},
                                   {"command", std::string(command)}},
                                  kBuckets)};
      it = series_.emplace(std::move(key), fresh).first;
    }
    s = it->second;
  }
  s.count->Increment();
  s.latency->Observe(absl::ToDoubleSeconds(latency));
}

void AccessMetrics::IdleStarted() {
  if (idle_) idle_->Increment();
}

void AccessMetrics::IdleEnded() {
  if (idle_) idle_->Decrement();
}

}  // namespace mailgrid::access
