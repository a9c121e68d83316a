// mailctl health [ADDRESS...|SERVICE...]: asks grpc.health.v1 on each
// address (or each replica of a service named in cluster.json) and prints
// SERVING / NOT_SERVING / UNREACHABLE. Exit status is non-zero unless all
// are SERVING, so scripts and the local launcher can wait on it.
#include <ostream>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "libs/rpc/client.h"
#include "tools/mailctl/command.h"

namespace mailgrid::mailctl {
namespace {

std::string Probe(const std::string& address) {
  rpc::ClientOptions options;
  options.target = address;
  auto channel = rpc::MakeChannel(options);
  if (!channel.ok()) return "INVALID_ADDRESS";
  auto stub = grpc::health::v1::Health::NewStub(*channel);
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  auto ctx = rpc::ContextWithDeadline(absl::Seconds(3));
  grpc::Status s = stub->Check(ctx.get(), req, &resp);
  if (!s.ok()) return "UNREACHABLE";
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status());
}

absl::Status RunHealth(const Invocation& inv) {
  std::vector<std::pair<std::string, std::string>> targets;  // label, address
  for (const std::string& arg : inv.args) {
    if (arg.find(':') != std::string::npos) {
      targets.emplace_back(arg, arg);
      continue;
    }
    if (inv.cluster == nullptr) return absl::InvalidArgumentError(absl::StrCat("\"", arg, "\" needs --cluster"));
    auto addrs = inv.cluster->Addresses(arg);
    if (!addrs.ok()) return addrs.status();
    for (const auto& a : *addrs) targets.emplace_back(arg, a);
  }
  if (targets.empty() && inv.cluster != nullptr) {
    for (const auto& [service, addrs] : inv.cluster->grpc) {
      for (const auto& a : addrs) targets.emplace_back(service, a);
    }
  }
  if (targets.empty()) return absl::InvalidArgumentError("give addresses (host:port) or service names");
  int unhealthy = 0;
  if (inv.json) *inv.out << "[";
  for (size_t i = 0; i < targets.size(); ++i) {
    const auto& [label, address] = targets[i];
    std::string status = Probe(address);
    if (status != "SERVING") ++unhealthy;
    if (inv.json) {
      *inv.out << (i ? "," : "") << R"({"target":")" << label << R"(","address":")" << address << R"(","status":")"
               << status << "\"}";
    } else {
      *inv.out << label << "\t" << address << "\t" << status << "\n";
    }
  }
  if (inv.json) *inv.out << "]\n";
  if (unhealthy > 0) return absl::UnavailableError(absl::StrCat(unhealthy, " of ", targets.size(), " not serving"));
  return absl::OkStatus();
}

const bool kRegistered = RegisterCommand({"health", "check gRPC health of addresses or services",
                                          "mailctl health [host:port | service]...", RunHealth});

}  // namespace
}  // namespace mailgrid::mailctl
