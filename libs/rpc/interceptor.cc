#include "libs/rpc/interceptor.h"

#include <chrono>
#include <string>

#include "libs/metrics/metrics.h"
#include "libs/rpc/status.h"

namespace mailgrid::rpc {
namespace {

// "/mailgrid.tenant.v1.TenantService/GetTenant" -> service and method.
void SplitMethod(std::string_view s, std::string* service, std::string* method) {
  if (!s.empty() && s[0] == '/') s.remove_prefix(1);
  size_t slash = s.find('/');
  *service = std::string(s.substr(0, slash));
  *method = slash == std::string_view::npos ? "" : std::string(s.substr(slash + 1));
}

class MetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(MetricsInterceptorFactory* factory, grpc::experimental::ServerRpcInfo* info)
      : factory_(factory),
        series_(factory->SeriesFor(info->method() != nullptr ? info->method() : "")),
        start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      series_->started->Increment();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::Status status = methods->GetSendStatus();
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      factory_->Handled(*series_, status.error_code()).Increment();
      series_->latency->Observe(seconds);
    }
    methods->Proceed();
  }

 private:
  MetricsInterceptorFactory* factory_;
  MetricsInterceptorFactory::MethodSeries* series_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

MetricsInterceptorFactory::MetricsInterceptorFactory(prometheus::Registry& registry)
    : started_(prometheus::BuildCounter()
                   .Name("grpc_server_started_total")
                   .Help("RPCs started on the server.")
                   .Register(registry)),
      handled_(prometheus::BuildCounter()
                   .Name("grpc_server_handled_total")
                   .Help("RPCs completed on the server, by status code.")
                   .Register(registry)),
      latency_(prometheus::BuildHistogram()
                   .Name("grpc_server_handling_seconds")
                   .Help("Time from receiving an RPC to sending its status.")
                   .Register(registry)) {}

grpc::experimental::Interceptor* MetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new MetricsInterceptor(this, info);
}

MetricsInterceptorFactory::MethodSeries* MetricsInterceptorFactory::SeriesFor(
    std::string_view full_method) {
  absl::MutexLock lock(&mu_);
  auto it = by_method_.find(absl::string_view(full_method.data(), full_method.size()));
  if (it != by_method_.end()) return it->second.get();
  auto series = std::make_unique<MethodSeries>();
  SplitMethod(full_method, &series->service, &series->method);
  series->started = &started_.Add({{"grpc_service", series->service}, {"grpc_method", series->method}});
  series->latency = &latency_.Add({{"grpc_service", series->service}, {"grpc_method", series->method}},
                                  metrics::LatencyBuckets());
  MethodSeries* raw = series.get();
  by_method_.emplace(std::string(full_method), std::move(series));
  return raw;
}

prometheus::Counter& MetricsInterceptorFactory::Handled(MethodSeries& series, int code) {
  if (code < 0 || code >= static_cast<int>(series.handled.size())) code = grpc::StatusCode::UNKNOWN;
  prometheus::Counter* counter = series.handled[code].load(std::memory_order_acquire);
  if (counter != nullptr) return *counter;
  // Family::Add returns the same series for the same labels, so two threads
  // racing here store the same pointer.
  counter = &handled_.Add({{"grpc_service", series.service},
                           {"grpc_method", series.method},
                           {"grpc_code", CodeName(static_cast<grpc::StatusCode>(code))}});
  series.handled[code].store(counter, std::memory_order_release);
  return *counter;
}

}  // namespace mailgrid::rpc
