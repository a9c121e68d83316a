// Starts a real gRPC server from libs/rpc on loopback and checks what every
// service gets from it: health, reflection, RED metrics scraped over HTTP,
// retries of idempotent calls only, and graceful shutdown.
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "libs/rpc/errors.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/server_context.h"
#include "gtest/gtest.h"
#include "libs/metrics/metrics.h"
#include "libs/rpc/client.h"
#include "libs/rpc/server.h"
#include "libs/rpc/status.h"
#include "libs/testing/http_get.h"
#include "mailgrid/testing/v1/echo.grpc.pb.h"

namespace mailgrid::rpc {
namespace {

using mailgrid::testing::v1::EchoRequest;
using mailgrid::testing::v1::EchoResponse;
using mailgrid::testing::v1::EchoService;

class EchoImpl final : public EchoService::Service {
 public:
  grpc::Status Echo(grpc::ServerContext*, const EchoRequest* req, EchoResponse* resp) override {
    return Handle(req, resp);
  }
  grpc::Status EchoOnce(grpc::ServerContext*, const EchoRequest* req, EchoResponse* resp) override {
    return Handle(req, resp);
  }

 private:
  grpc::Status Handle(const EchoRequest* req, EchoResponse* resp) {
    int seen;
    {
      std::lock_guard<std::mutex> lock(mu_);
      seen = ++seen_[req->text()];
    }
    if (req->delay_ms() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(req->delay_ms()));
    resp->set_text(req->text());
    resp->set_seen(seen);
    if (req->fail_with_code() != 0) {
      return grpc::Status(static_cast<grpc::StatusCode>(req->fail_with_code()), "asked to fail");
    }
    return grpc::Status::OK;
  }
  std::mutex mu_;
  std::map<std::string, int> seen_;
};

struct Fixture {
  EchoImpl impl;
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<Server> server;
  std::unique_ptr<metrics::HttpExposer> exposer;
  std::shared_ptr<grpc::Channel> channel;

  Fixture() {
    ServerOptions o;
    o.service_name = "echotest";
    o.registry = registry;
    auto s = Server::Start(o, {&impl});
    EXPECT_TRUE(s.ok()) << s.status();
    server = std::move(*s);
    auto e = metrics::HttpExposer::Start("127.0.0.1:0", registry, "echotest");
    EXPECT_TRUE(e.ok()) << e.status();
    exposer = std::move(*e);
    ClientOptions co;
    co.target = server->address();
    co.services = {"mailgrid.testing.v1.EchoService"};
    channel = *MakeChannel(co);
  }
};

grpc::health::v1::HealthCheckResponse::ServingStatus Health(std::shared_ptr<grpc::Channel> channel) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  auto ctx = ContextWithDeadline(absl::Seconds(10));
  grpc::Status s = stub->Check(ctx.get(), req, &resp);
  if (!s.ok()) return grpc::health::v1::HealthCheckResponse::UNKNOWN;
  return resp.status();
}

TEST(RpcServerTest, HealthFollowsServingState) {
  Fixture f;
  EXPECT_EQ(Health(f.channel), grpc::health::v1::HealthCheckResponse::SERVING);
  f.server->SetServing(false);
  EXPECT_EQ(Health(f.channel), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
}

TEST(RpcServerTest, ReflectionListsOurService) {
  Fixture f;
  // ServerReflectionRequest{list_services: ""} is field 7, length 0.
  grpc::GenericStub stub(f.channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok;
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  const char request[] = {0x3a, 0x00};
  grpc::Slice slice(request, sizeof(request));
  grpc::ByteBuffer out(&slice, 1);
  call->Write(out, reinterpret_cast<void*>(2));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  grpc::ByteBuffer in;
  call->Read(&in, reinterpret_cast<void*>(3));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(in.Dump(&slices).ok());
  std::string bytes;
  for (auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_NE(bytes.find("mailgrid.testing.v1.EchoService"), std::string::npos);
  EXPECT_NE(bytes.find("grpc.health.v1.Health"), std::string::npos);
  call->WritesDone(reinterpret_cast<void*>(4));
  cq.Next(&tag, &ok);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  while (cq.Next(&tag, &ok) && tag != reinterpret_cast<void*>(5)) {
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

std::string Scrape(Fixture& f) {
  auto resp = mailgrid::testing::HttpGet(f.exposer->url());
  EXPECT_TRUE(resp.ok()) << resp.status();
  return resp.ok() ? resp->body : "";
}

TEST(RpcServerTest, MetricsCountCallsByCode) {
  Fixture f;
  auto stub = EchoService::NewStub(f.channel);
  for (int i = 0; i < 3; ++i) {
    EchoRequest req;
    req.set_text("ok" + std::to_string(i));
    EchoResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->EchoOnce(&ctx, req, &resp).ok());
  }
  EchoRequest bad;
  bad.set_text("bad");
  bad.set_fail_with_code(grpc::StatusCode::INVALID_ARGUMENT);
  EchoResponse resp;
  grpc::ClientContext ctx;
  EXPECT_EQ(stub->EchoOnce(&ctx, bad, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  std::string body = Scrape(f);
  EXPECT_NE(body.find(R"(grpc_server_handled_total{grpc_code="OK",grpc_method="EchoOnce",grpc_service="mailgrid.testing.v1.EchoService"} 3)"),
            std::string::npos)
      << body;
  EXPECT_NE(body.find(R"(grpc_server_handled_total{grpc_code="INVALID_ARGUMENT",grpc_method="EchoOnce",grpc_service="mailgrid.testing.v1.EchoService"} 1)"),
            std::string::npos)
      << body;
  EXPECT_NE(body.find(R"(grpc_server_handling_seconds_count{grpc_method="EchoOnce",grpc_service="mailgrid.testing.v1.EchoService"} 4)"),
            std::string::npos)
      << body;
}

TEST(RpcClientTest, RetriesOnlyIdempotentMethods) {
  Fixture f;
  auto stub = EchoService::NewStub(f.channel);
  EchoRequest req;
  req.set_fail_with_code(grpc::StatusCode::UNAVAILABLE);
  EchoResponse resp;
  {
    req.set_text("idempotent");
    grpc::ClientContext ctx;
    EXPECT_EQ(stub->Echo(&ctx, req, &resp).error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  {
    req.set_text("once");
    grpc::ClientContext ctx;
    EXPECT_EQ(stub->EchoOnce(&ctx, req, &resp).error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  // The server counted every attempt: 4 for the idempotent call, 1 for the other.
  req.set_fail_with_code(0);
  req.set_text("idempotent");
  grpc::ClientContext c1;
  ASSERT_TRUE(stub->EchoOnce(&c1, req, &resp).ok());
  EXPECT_EQ(resp.seen(), 5);
  req.set_text("once");
  grpc::ClientContext c2;
  ASSERT_TRUE(stub->EchoOnce(&c2, req, &resp).ok());
  EXPECT_EQ(resp.seen(), 2);
}

TEST(RpcClientTest, RetryConfigNamesOnlyMarkedMethods) {
  std::string config = RetryServiceConfig({"mailgrid.testing.v1.EchoService"}, 3);
  EXPECT_NE(config.find(R"("method":"Echo")"), std::string::npos) << config;
  EXPECT_EQ(config.find("EchoOnce"), std::string::npos) << config;
  EXPECT_EQ(RetryServiceConfig({"no.such.Service"}, 3), "");
}

TEST(RpcServerTest, GracefulShutdownLetsInFlightCallsFinish) {
  Fixture f;
  auto stub = EchoService::NewStub(f.channel);
  std::atomic<bool> done{false};
  grpc::Status in_flight;
  std::thread caller([&] {
    EchoRequest req;
    req.set_text("slow");
    req.set_delay_ms(500);
    EchoResponse resp;
    grpc::ClientContext ctx;
    in_flight = stub->EchoOnce(&ctx, req, &resp);
    done = true;
  });
  // Wait until the server has the call (the metrics say it started).
  for (int i = 0; i < 1000 && Scrape(f).find("grpc_server_started_total{grpc_method=\"EchoOnce\"") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  f.server->Shutdown(absl::Seconds(30));
  caller.join();
  EXPECT_TRUE(done);
  EXPECT_TRUE(in_flight.ok()) << in_flight.error_message();
  // After shutdown nothing is served.
  EchoRequest req;
  EchoResponse resp;
  auto ctx = ContextWithDeadline(absl::Seconds(2));
  EXPECT_FALSE(stub->EchoOnce(ctx.get(), req, &resp).ok());
}

TEST(RpcServerTest, BadOptionsFailAtStart) {
  EchoImpl impl;
  ServerOptions o;
  o.tls_cert_file = "/nonexistent/cert.pem";
  o.tls_key_file = "/nonexistent/key.pem";
  auto s = Server::Start(o, {&impl});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("--tls-cert: cannot read /nonexistent/cert.pem"), std::string::npos) << s.status();

  ServerOptions first_opts;
  auto first = Server::Start(first_opts, {});
  ASSERT_TRUE(first.ok());
  ServerOptions clash;
  clash.listen = (*first)->address();
  auto second = Server::Start(clash, {});
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("port in use"), std::string::npos) << second.status();
}

// Makes a CA and a certificate it signs for 127.0.0.1/localhost (usable as
// server and client certificate) with the openssl CLI, as an operator would.
struct TestPki {
  std::string dir, ca, cert, key, other_ca;
  TestPki() {
    dir = ::testing::TempDir() + "/rpc_test_pki";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    ca = dir + "/ca.pem";
    cert = dir + "/cert.pem";
    key = dir + "/key.pem";
    other_ca = dir + "/other_ca.pem";
    std::ofstream(dir + "/ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                   "extendedKeyUsage=serverAuth,clientAuth\n";
    Run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + dir +
        "/ca.key -out " + ca + " -days 2 -subj /CN=test-ca");
    Run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + dir +
        "/other.key -out " + other_ca + " -days 2 -subj /CN=other-ca");
    Run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + key + " -out " + dir +
        "/cert.csr -subj /CN=localhost");
    Run("openssl x509 -req -in " + dir + "/cert.csr -CA " + ca + " -CAkey " + dir + "/ca.key -CAcreateserial -out " +
        cert + " -days 2 -extfile " + dir + "/ext");
  }
  static void Run(const std::string& cmd) {
    ASSERT_EQ(std::system((cmd + " >/dev/null 2>&1").c_str()), 0) << cmd;
  }
};

grpc::Status CallEcho(const ClientOptions& co) {
  auto channel = MakeChannel(co);
  if (!channel.ok()) return ToGrpc(channel.status());
  auto stub = EchoService::NewStub(*channel);
  EchoRequest req;
  req.set_text("over tls");
  EchoResponse resp;
  auto ctx = ContextWithDeadline(absl::Seconds(10));
  return stub->EchoOnce(ctx.get(), req, &resp);
}

TEST(RpcTlsTest, MutualTlsAcceptsOnlyClientsWithACertificateFromTheCa) {
  TestPki pki;
  EchoImpl impl;
  ServerOptions so;
  so.tls_cert_file = pki.cert;
  so.tls_key_file = pki.key;
  so.tls_client_ca_file = pki.ca;
  auto server = Server::Start(so, {&impl});
  ASSERT_TRUE(server.ok()) << server.status();

  ClientOptions good;
  good.target = (*server)->address();
  good.tls_ca_file = pki.ca;
  good.tls_cert_file = pki.cert;
  good.tls_key_file = pki.key;
  grpc::Status ok = CallEcho(good);
  EXPECT_TRUE(ok.ok()) << ok.error_message();

  ClientOptions no_cert = good;
  no_cert.tls_cert_file.clear();
  no_cert.tls_key_file.clear();
  EXPECT_FALSE(CallEcho(no_cert).ok());

  ClientOptions plain = good;
  plain.tls_ca_file.clear();
  plain.tls_cert_file.clear();
  plain.tls_key_file.clear();
  EXPECT_FALSE(CallEcho(plain).ok());

  ClientOptions wrong_ca = good;  // the server's certificate is not from this CA
  wrong_ca.tls_ca_file = pki.other_ca;
  EXPECT_FALSE(CallEcho(wrong_ca).ok());
}

// Probes cannot present client certificates: the health-only port answers
// health in plain text, mirrors the main listener's state, and serves
// nothing else.
TEST(RpcTlsTest, HealthOnlyPortServesHealthInPlainTextAndNothingElse) {
  TestPki pki;
  EchoImpl impl;
  ServerOptions so;
  so.tls_cert_file = pki.cert;
  so.tls_key_file = pki.key;
  so.tls_client_ca_file = pki.ca;
  so.health_listen = "127.0.0.1:0";
  auto server = Server::Start(so, {&impl});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_FALSE((*server)->health_address().empty());
  ASSERT_NE((*server)->health_address(), (*server)->address());

  auto probe = grpc::CreateChannel((*server)->health_address(), grpc::InsecureChannelCredentials());
  EXPECT_EQ(Health(probe), grpc::health::v1::HealthCheckResponse::SERVING);
  (*server)->SetServing(false);
  EXPECT_EQ(Health(probe), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  (*server)->SetServing(true);
  EXPECT_EQ(Health(probe), grpc::health::v1::HealthCheckResponse::SERVING);

  ClientOptions plain;
  plain.target = (*server)->health_address();
  grpc::Status echo = CallEcho(plain);
  EXPECT_EQ(echo.error_code(), grpc::StatusCode::UNIMPLEMENTED) << echo.error_message();
}

TEST(RpcStatusTest, RoundTrip) {
  absl::Status s = absl::InvalidArgumentError("contact_phone: not E.164");
  grpc::Status g = ToGrpc(s);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(g.error_message(), "contact_phone: not E.164");
  EXPECT_EQ(FromGrpc(g), s);
  EXPECT_TRUE(FromGrpc(ToGrpc(absl::OkStatus())).ok());
}

// Details survive the wire: what a server sets with the error vocabulary,
// a client reads back after FromGrpc (relayd reads tenantd's NOT_FOUND reason).
TEST(RpcStatusTest, DetailsTravelInTheTrailer) {
  absl::Status s = InvalidField("address", "BAD_ADDRESS", "not an addr-spec");
  grpc::Status g = ToGrpc(s);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_FALSE(g.error_details().empty());
  absl::Status back = FromGrpc(g);
  EXPECT_EQ(back.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(back), "BAD_ADDRESS");
  ASSERT_TRUE(ErrorDetailOf(back).has_value());
  EXPECT_EQ(ErrorDetailOf(back)->field(), "address");

  EXPECT_EQ(ReasonOf(FromGrpc(grpc::Status(grpc::StatusCode::NOT_FOUND, "x"))), "");
  // Garbage in the trailer is ignored, not trusted.
  absl::Status junk = FromGrpc(grpc::Status(grpc::StatusCode::NOT_FOUND, "x", "\xff\xff\xff"));
  EXPECT_EQ(junk.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ReasonOf(junk), "");
}

}  // namespace
}  // namespace mailgrid::rpc
