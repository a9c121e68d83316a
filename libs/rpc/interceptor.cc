#include "libs/rpc/interceptor.h"

#include <chrono>
#include <string>

#include "libs/metrics/metrics.h"
#include "libs/rpc/status.h"

namespace mailgrid::rpc {
namespace {

// "/mailgrid.tenant.v1.TenantService/GetTenant" -> service and method.
void SplitMethod(const char* full, std::string* service, std::string* method) {
  std::string s = full != nullptr ? full : "";
  if (!s.empty() && s[0] == '/') s.erase(0, 1);
  size_t slash = s.find('/');
  *service = s.substr(0, slash);
  *method = slash == std::string::npos ? "" : s.substr(slash + 1);
}

class MetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(MetricsInterceptorFactory* factory, grpc::experimental::ServerRpcInfo* info)
      : factory_(factory), start_(std::chrono::steady_clock::now()) {
    SplitMethod(info->method(), &service_, &method_);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      factory_->started().Add({{"grpc_service", service_}, {"grpc_method", method_}}).Increment();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::Status status = methods->GetSendStatus();
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      factory_->handled()
          .Add({{"grpc_service", service_}, {"grpc_method", method_}, {"grpc_code", CodeName(status.error_code())}})
          .Increment();
      factory_->latency()
          .Add({{"grpc_service", service_}, {"grpc_method", method_}}, metrics::LatencyBuckets())
          .Observe(seconds);
    }
    methods->Proceed();
  }

 private:
  MetricsInterceptorFactory* factory_;
  std::chrono::steady_clock::time_point start_;
  std::string service_;
  std::string method_;
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

}  // namespace mailgrid::rpc
