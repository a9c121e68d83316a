// echod: a daemon built on RunService that serves the test Echo service.
// It exists so tests can exercise the bootstrap every real daemon uses
// (flags, config file, bad-input exits, metrics, health, SIGTERM drain)
// without depending on any one service. Never deployed.
#include <map>
#include <mutex>
#include <thread>

#include "grpcpp/server_context.h"
#include "libs/rpc/service_main.h"
#include "mailgrid/testing/v1/echo.grpc.pb.h"

namespace {

using mailgrid::testing::v1::EchoRequest;
using mailgrid::testing::v1::EchoResponse;

class EchoImpl final : public mailgrid::testing::v1::EchoService::Service {
 public:
  explicit EchoImpl(std::string prefix) : prefix_(std::move(prefix)) {}
  grpc::Status Echo(grpc::ServerContext*, const EchoRequest* req, EchoResponse* resp) override {
    if (req->delay_ms() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(req->delay_ms()));
    resp->set_text(prefix_ + req->text());
    return grpc::Status::OK;
  }
  grpc::Status EchoOnce(grpc::ServerContext* ctx, const EchoRequest* req, EchoResponse* resp) override {
    return Echo(ctx, req, resp);
  }

 private:
  std::string prefix_;
};

class EchoApp : public mailgrid::rpc::ServiceApp {
 public:
  explicit EchoApp(std::string prefix) : impl_(std::move(prefix)) {}
  std::vector<grpc::Service*> Services() override { return {&impl_}; }

 private:
  EchoImpl impl_;
};

std::string g_prefix;

}  // namespace

int main(int argc, char** argv) {
  mailgrid::rpc::ServiceDef def;
  def.name = "echod";
  def.add_flags = [](mailgrid::config::Flags& flags) { flags.String("prefix", &g_prefix, "prepended to every echo"); };
  def.create = [](const mailgrid::rpc::CommonConfig&, std::shared_ptr<prometheus::Registry>)
      -> absl::StatusOr<std::unique_ptr<mailgrid::rpc::ServiceApp>> { return std::make_unique<EchoApp>(g_prefix); };
  return mailgrid::rpc::RunService(def, argc, argv);
}
