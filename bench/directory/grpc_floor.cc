// gRPC's own floor on this machine (issue 5): a server that answers
// grpc.health.v1.Health/Check with no work at all, in one of gRPC's two
// server modes, so `directory_bench --phases floor` against it tells what
// the transport costs without tenantd (its interceptor, its other services,
// its Raft threads):
//   sync      the generated Service: gRPC's sync thread pool takes each call
//             and hands it to a worker thread;
//   callback  the generated CallbackService: answered on gRPC's own polling
//             thread (what tenantd's Resolve and its health service use);
// with --metrics, libs/rpc's metrics interceptor on every call, as every
// mailgrid daemon serves.
// Usage: grpc_floor --mode sync|callback [--metrics] [--listen 127.0.0.1:0] [--minimal-stack]
//          [--arg NAME=INT]... [--deadlock-detection]
// Prints "listening HOST:PORT" once serving; runs until SIGTERM/SIGINT.
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "libs/rpc/interceptor.h"
#include "prometheus/registry.h"

namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

class SyncHealth final : public grpc::health::v1::Health::Service {
  grpc::Status Check(grpc::ServerContext*, const HealthCheckRequest*,
                     HealthCheckResponse* resp) override {
    resp->set_status(HealthCheckResponse::SERVING);
    return grpc::Status::OK;
  }
};

class CallbackHealth final : public grpc::health::v1::Health::CallbackService {
  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* ctx, const HealthCheckRequest*,
                                  HealthCheckResponse* resp) override {
    resp->set_status(HealthCheckResponse::SERVING);
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
};

volatile std::sig_atomic_t g_stop = 0;

}  // namespace

int main(int argc, char** argv) {
  std::string mode, listen = "127.0.0.1:0";
  bool metrics = false, minimal = false, deadlock_detection = false;
  std::vector<std::pair<std::string, int>> int_args;  // --arg NAME=INT: a server channel argument
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--mode" && i + 1 < argc) mode = argv[++i];
    else if (a == "--listen" && i + 1 < argc) listen = argv[++i];
    else if (a == "--metrics") metrics = true;
    else if (a == "--minimal-stack") minimal = true;
    else if (a == "--arg" && i + 1 < argc) {
      std::string kv = argv[++i];
      size_t eq = kv.find('=');
      if (eq != std::string::npos) int_args.emplace_back(kv.substr(0, eq), std::atoi(kv.c_str() + eq + 1));
    }
    else if (a == "--deadlock-detection") deadlock_detection = true;
  }
  // As every daemon (rpc::RunService): Debian's Abseil is built with mutex
  // deadlock detection on, a global graph update on every gRPC lock.
  if (!deadlock_detection) absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  SyncHealth sync;
  CallbackHealth callback;
  grpc::Service* service = nullptr;
  if (mode == "sync") service = &sync;
  if (mode == "callback") service = &callback;
  if (service == nullptr) {
    std::fprintf(stderr, "usage: grpc_floor --mode sync|callback [--metrics] [--listen A]\n");
    return 2;
  }
  auto registry = std::make_shared<prometheus::Registry>();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service);
  if (minimal) builder.AddChannelArgument(GRPC_ARG_MINIMAL_STACK, 1);
  for (const auto& [name, value] : int_args) builder.AddChannelArgument(name, value);
  if (metrics) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(std::make_unique<mailgrid::rpc::MetricsInterceptorFactory>(*registry));
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "cannot listen on %s\n", listen.c_str());
    return 1;
  }
  std::string host = listen.substr(0, listen.rfind(':'));
  std::printf("listening %s:%d\n", host.c_str(), port);
  std::fflush(stdout);
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  std::signal(SIGINT, [](int) { g_stop = 1; });
  while (!g_stop) pause();
  server->Shutdown();
  return 0;
}
