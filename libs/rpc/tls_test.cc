// Certificates that change under a running server, and who may call what:
// a real gRPC server from libs/rpc on loopback, certificates made with the
// openssl CLI as an operator (or cert-manager) would, rotated the way a
// Kubernetes Secret volume rotates them (a new directory, then an atomic
// swap of the `current` symlink).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "libs/metrics/cert_expiry.h"
#include "libs/rpc/client.h"
#include "libs/rpc/peer_acl.h"
#include "libs/rpc/server.h"
#include "libs/rpc/status.h"
#include "mailgrid/testing/v1/echo.grpc.pb.h"
#include "prometheus/registry.h"

namespace mailgrid::rpc {
namespace {

namespace fs = std::filesystem;
using mailgrid::testing::v1::EchoRequest;
using mailgrid::testing::v1::EchoResponse;
using mailgrid::testing::v1::EchoService;

class EchoServer final : public EchoService::Service {
  grpc::Status Echo(grpc::ServerContext*, const EchoRequest* req, EchoResponse* resp) override {
    resp->set_text(req->text());
    return grpc::Status::OK;
  }
  grpc::Status EchoOnce(grpc::ServerContext*, const EchoRequest* req, EchoResponse* resp) override {
    resp->set_text(req->text());
    return grpc::Status::OK;
  }
};

void Run(const std::string& cmd) {
  ASSERT_EQ(std::system((cmd + " >/dev/null 2>&1").c_str()), 0) << cmd;
}

// A CA and the certificates it signs, each in a directory of its own
// (cert.pem, key.pem, ca.pem), all valid for 127.0.0.1 and localhost.
struct Pki {
  std::string root;
  explicit Pki(const std::string& name) : root(::testing::TempDir() + "/" + name) {
    fs::remove_all(root);
    fs::create_directories(root);
    std::ofstream(root + "/ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                    "extendedKeyUsage=serverAuth,clientAuth\n";
    Run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + root +
        "/ca.key -out " + root + "/ca.pem -days 2 -subj /CN=test-ca");
  }
  // Writes <root>/<dir>/{cert,key,ca}.pem for CN=`cn`, valid `days` days.
  std::string Issue(const std::string& dir, const std::string& cn, int days = 2) {
    std::string d = root + "/" + dir;
    fs::create_directories(d);
    Run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + d +
        "/key.pem -out " + d + "/csr.pem -subj /CN=" + cn);
    Run("openssl x509 -req -in " + d + "/csr.pem -CA " + root + "/ca.pem -CAkey " + root +
        "/ca.key -CAcreateserial -out " + d + "/cert.pem -days " + std::to_string(days) +
        " -extfile " + root + "/ext");
    fs::copy_file(root + "/ca.pem", d + "/ca.pem", fs::copy_options::overwrite_existing);
    return d;
  }
  // Points <root>/<link> at <root>/<dir> atomically (as kubelet swaps ..data).
  void Point(const std::string& link, const std::string& dir) {
    std::string tmp = root + "/" + link + ".tmp";
    fs::remove(tmp);
    fs::create_directory_symlink(root + "/" + dir, tmp);
    fs::rename(tmp, root + "/" + link);
  }
};

ClientOptions ClientOf(const std::string& target, const std::string& dir, bool with_cert) {
  ClientOptions co;
  co.target = target;
  co.tls_ca_file = dir + "/ca.pem";
  if (with_cert) {
    co.tls_cert_file = dir + "/cert.pem";
    co.tls_key_file = dir + "/key.pem";
  }
  co.tls_reload_interval = absl::Seconds(1);
  // A fresh connection per channel, never one shared through gRPC's global
  // subchannel pool: each call below must be a new handshake.
  co.channel_int_args.push_back({GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1});
  return co;
}

// Calls Echo or EchoOnce on a new channel; `server_cn` gets the CN of the
// certificate the server presented.
grpc::Status Call(const ClientOptions& co, bool once, std::string* server_cn = nullptr) {
  auto channel = MakeChannel(co);
  if (!channel.ok()) return ToGrpc(channel.status());
  auto stub = EchoService::NewStub(*channel);
  EchoRequest req;
  req.set_text("hi");
  EchoResponse resp;
  auto ctx = ContextWithDeadline(absl::Seconds(10));
  grpc::Status s = once ? stub->EchoOnce(ctx.get(), req, &resp) : stub->Echo(ctx.get(), req, &resp);
  if (server_cn != nullptr && ctx->auth_context() != nullptr) {
    auto cn = ctx->auth_context()->FindPropertyValues("x509_common_name");
    if (!cn.empty()) *server_cn = std::string(cn.front().data(), cn.front().size());
  }
  return s;
}

// Polls (generously: the machine is shared) until `done` holds.
bool Eventually(const std::function<bool()>& done) {
  absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (absl::Now() < give_up) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(200));
  }
  return done();
}

double GaugeValue(prometheus::Registry& registry, const std::string& name) {
  for (const auto& family : registry.Collect()) {
    if (family.name == name && !family.metric.empty()) return family.metric.front().gauge.value;
  }
  return -1e18;
}

// The counter with label method_prefix=`prefix`, or -1 when the series
// does not exist.
double DeniedCount(prometheus::Registry& registry, const std::string& prefix) {
  for (const auto& family : registry.Collect()) {
    if (family.name != "mailgrid_rpc_peer_acl_denied_total") continue;
    for (const auto& m : family.metric) {
      for (const auto& label : m.label) {
        if (label.name == "method_prefix" && label.value == prefix) return m.counter.value;
      }
    }
  }
  return -1;
}

TEST(TlsReloadTest, NewConnectionsGetTheRenewedServerCertificateAndTheGaugeFollows) {
  Pki pki("tls_reload_server");
  pki.Issue("v1", "server-v1", /*days=*/2);
  pki.Issue("v2", "server-v2", /*days=*/30);
  pki.Point("current", "v1");
  const std::string current = pki.root + "/current";

  EchoServer impl;
  ServerOptions so;
  so.tls_cert_file = current + "/cert.pem";
  so.tls_key_file = current + "/key.pem";
  so.tls_reload_interval = absl::Seconds(1);
  auto server = Server::Start(so, {&impl});
  ASSERT_TRUE(server.ok()) << server.status();
  auto registry = std::make_shared<prometheus::Registry>();
  metrics::CertificateExpiry expiry(registry, absl::Seconds(1));
  ASSERT_TRUE(expiry.Watch("grpc", so.tls_cert_file).ok());
  const std::string gauge = "mailgrid_tls_certificate_expiry_seconds";
  EXPECT_LT(GaugeValue(*registry, gauge), absl::ToDoubleSeconds(absl::Hours(72)));

  // The client trusts the CA (one file for both versions: same CA).
  ClientOptions co = ClientOf((*server)->address(), pki.root + "/v1", /*with_cert=*/false);
  std::string cn;
  grpc::Status first = Call(co, false, &cn);
  ASSERT_TRUE(first.ok()) << first.error_message();
  EXPECT_EQ(cn, "server-v1");

  pki.Point("current", "v2");
  EXPECT_TRUE(Eventually([&] {
    std::string seen;
    return Call(co, false, &seen).ok() && seen == "server-v2";
  })) << "the server kept presenting the old certificate";
  EXPECT_TRUE(Eventually([&] {
    return GaugeValue(*registry, gauge) > absl::ToDoubleSeconds(absl::Hours(24 * 29));
  })) << "the expiry gauge did not follow the renewed certificate";
}

TEST(TlsReloadTest, StaticModeAndStartChecks) {
  Pki pki("tls_reload_static");
  pki.Issue("a", "server-a");
  pki.Issue("b", "server-b");
  EchoServer impl;
  ServerOptions so;
  so.tls_cert_file = pki.root + "/a/cert.pem";
  so.tls_key_file = pki.root + "/b/key.pem";  // not the key of that certificate
  auto mismatched = Server::Start(so, {&impl});
  ASSERT_FALSE(mismatched.ok());
  EXPECT_NE(mismatched.status().message().find("--tls-key: " + so.tls_key_file +
                                               " is not the key of --tls-cert"),
            std::string::npos)
      << mismatched.status();

  so.tls_key_file = pki.root + "/a/key.pem";
  so.tls_reload_interval = absl::ZeroDuration();  // read once, as before
  auto server = Server::Start(so, {&impl});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions co = ClientOf((*server)->address(), pki.root + "/a", false);
  co.tls_reload_interval = absl::ZeroDuration();
  std::string cn;
  grpc::Status s = Call(co, false, &cn);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(cn, "server-a");

  // The server name is checked with reloading credentials too.
  ClientOptions named = ClientOf((*server)->address(), pki.root + "/a", false);
  named.tls_server_name = "localhost";
  s = Call(named, false);
  EXPECT_TRUE(s.ok()) << s.error_message();
  named.tls_server_name = "someone-else.test";
  EXPECT_FALSE(Call(named, false).ok());
}

TEST(PeerAclTest, ParsesAndDecidesByLongestPrefix) {
  auto rules = ParsePeerAcl(
      " mailgrid.raft.v1.=tenantd ; /mailgrid.kv.v1.=tenantd, "
      "relayd;mailgrid.kv.v1.KvService/Write=tenantd");
  ASSERT_TRUE(rules.ok()) << rules.status();
  ASSERT_EQ(rules->size(), 3u);
  EXPECT_EQ((*rules)[1].method_prefix, "mailgrid.kv.v1.");
  EXPECT_EQ((*rules)[1].allowed_names, (std::vector<std::string>{"tenantd", "relayd"}));

  EXPECT_TRUE(PeerAllowed(*rules, "/mailgrid.raft.v1.RaftService/Send", {"tenantd"}));
  EXPECT_FALSE(
      PeerAllowed(*rules, "/mailgrid.raft.v1.RaftService/Send", {"relayd", "relayd.ns.svc"}));
  EXPECT_TRUE(PeerAllowed(*rules, "/mailgrid.kv.v1.KvService/Read", {"relayd"}));
  EXPECT_FALSE(
      PeerAllowed(*rules, "/mailgrid.kv.v1.KvService/Write", {"relayd"}));  // longer prefix
  EXPECT_TRUE(
      PeerAllowed(*rules, "/mailgrid.tenant.v1.TenantService/Get", {"accessd"}));  // uncovered
  EXPECT_FALSE(PeerAllowed(*rules, "/mailgrid.raft.v1.RaftService/Send", {}));
  EXPECT_TRUE(ParsePeerAcl("")->empty());

  for (const char* bad : {"mailgrid.raft.v1.", "=tenantd", "mailgrid.raft.v1.=", "a.=x;a.=y"}) {
    auto r = ParsePeerAcl(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("--peer-acl"), std::string::npos) << r.status();
  }
}

TEST(PeerAclTest, OnlyNamedCertificatesCallCoveredMethods) {
  Pki pki("peer_acl");
  std::string server_dir = pki.Issue("server", "tenantd");
  std::string tenantd = pki.Issue("tenantd", "tenantd");
  std::string relayd = pki.Issue("relayd", "relayd");
  EchoServer impl;
  ServerOptions so;
  so.tls_cert_file = server_dir + "/cert.pem";
  so.tls_key_file = server_dir + "/key.pem";
  so.tls_client_ca_file = server_dir + "/ca.pem";
  so.peer_acl = *ParsePeerAcl("mailgrid.testing.v1.EchoService/EchoOnce=tenantd;mailgrid.raft.v1.=tenantd");
  auto registry = std::make_shared<prometheus::Registry>();
  so.registry = registry;
  auto server = Server::Start(so, {&impl});
  ASSERT_TRUE(server.ok()) << server.status();
  // Every rule's series exists from the start, at 0.
  EXPECT_EQ(DeniedCount(*registry, "mailgrid.testing.v1.EchoService/EchoOnce"), 0);
  EXPECT_EQ(DeniedCount(*registry, "mailgrid.raft.v1."), 0);

  grpc::Status s = Call(ClientOf((*server)->address(), tenantd, true), /*once=*/true);
  EXPECT_TRUE(s.ok()) << s.error_message();
  s = Call(ClientOf((*server)->address(), relayd, true), /*once=*/true);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_NE(s.error_message().find("relayd may not call /mailgrid.testing.v1.EchoService/EchoOnce"),
            std::string::npos)
      << s.error_message();
  // A method no rule covers: any certificate from the CA.
  s = Call(ClientOf((*server)->address(), relayd, true), /*once=*/false);
  EXPECT_TRUE(s.ok()) << s.error_message();
  // One refusal, counted under the rule that refused it; allowed calls and
  // uncovered methods count nothing.
  EXPECT_EQ(DeniedCount(*registry, "mailgrid.testing.v1.EchoService/EchoOnce"), 1);
  EXPECT_EQ(DeniedCount(*registry, "mailgrid.raft.v1."), 0);

  // An ACL without client certificates cannot work: refused at start.
  ServerOptions no_mtls = so;
  no_mtls.tls_client_ca_file.clear();
  auto refused = Server::Start(no_mtls, {&impl});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("--peer-acl needs mTLS"), std::string::npos)
      << refused.status();
}

// The client side reloads too: a daemon whose certificate is renewed (here:
// to a name the ACL admits) presents the new one on its next connection.
TEST(PeerAclTest, ClientPresentsItsRenewedCertificate) {
  Pki pki("peer_acl_client_reload");
  std::string server_dir = pki.Issue("server", "tenantd");
  pki.Issue("old", "relayd");
  pki.Issue("new", "tenantd");
  pki.Point("client", "old");
  EchoServer impl;
  ServerOptions so;
  so.tls_cert_file = server_dir + "/cert.pem";
  so.tls_key_file = server_dir + "/key.pem";
  so.tls_client_ca_file = server_dir + "/ca.pem";
  so.peer_acl = *ParsePeerAcl("mailgrid.testing.v1.=tenantd");
  auto server = Server::Start(so, {&impl});
  ASSERT_TRUE(server.ok()) << server.status();

  ClientOptions co = ClientOf((*server)->address(), pki.root + "/client", true);
  EXPECT_EQ(Call(co, true).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  pki.Point("client", "new");
  EXPECT_TRUE(Eventually([&] { return Call(co, true).ok(); }))
      << "the client kept presenting its old certificate";
}

}  // namespace
}  // namespace mailgrid::rpc
