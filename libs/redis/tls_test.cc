// rediss:// against a real redis-server listening with --tls-port only, with
// a throw-away PKI made by the openssl command line. No duration is asserted.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/redis/client.h"
#include "libs/redis/subscriber.h"
#include "libs/redis/testing/eventually.h"
#include "libs/redis/testing/redis_server.h"
#include "libs/redis/testing/status_macros.h"
#include "libs/redis/testing/test_pki.h"

namespace mailgrid::redis {
namespace {

using ::mailgrid::redis::testing::MakeTestPki;
using ::mailgrid::redis::testing::RedisServer;
using ::mailgrid::redis::testing::RedisServerOptions;
using ::mailgrid::redis::testing::TestPki;

using ::mailgrid::redis::testing::Eventually;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "mg-redis-pki-XXXXXX");
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    MG_ASSERT_OK_AND_ASSIGN(pki_, MakeTestPki(dir_));
  }
  void TearDown() override {
    server_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  void StartServer(bool auth_clients, std::string password = "") {
    RedisServerOptions o;
    o.password = std::move(password);
    o.tls.cert_file = pki_.server_cert_file;
    o.tls.key_file = pki_.server_key_file;
    o.tls.ca_file = pki_.ca_file;
    o.tls.auth_clients = auth_clients;
    if (auth_clients) {
      o.tls.client_cert_file = pki_.client_cert_file;
      o.tls.client_key_file = pki_.client_key_file;
    }
    auto server = RedisServer::Start(std::move(o));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  // Options for the server's TLS port, with short dials so a refusal is quick.
  Options TlsClientOptions() const {
    Options o = server_->ClientOptions();
    o.pool_size = 1;
    return o;
  }

  std::string dir_;
  TestPki pki_;
  std::unique_ptr<RedisServer> server_;
};

TEST_F(TlsTest, CommandsPipelinesAndLargeValuesOverTls) {
  StartServer(/*auth_clients=*/false, "s3cret");
  // Through the URL, as a daemon's --redis flag gives it.
  MG_ASSERT_OK_AND_ASSIGN(Options from_url, Options::FromUrl(server_->url()));
  ASSERT_TRUE(from_url.tls.enabled);
  Client client(from_url);
  MG_ASSERT_OK(client.Ping());
  MG_ASSERT_OK_AND_ASSIGN(bool stored, client.Set("k", "over tls"));
  EXPECT_TRUE(stored);
  MG_ASSERT_OK_AND_ASSIGN(std::optional<std::string> v, client.Get("k"));
  EXPECT_EQ(v, "over tls");

  // Larger than one TLS record and than one read buffer, binary.
  std::string big(300 * 1024, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + 3);
  MG_ASSERT_OK(client.Set("big", big).status());
  MG_ASSERT_OK_AND_ASSIGN(v, client.Get("big"));
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(*v, big);

  MG_ASSERT_OK_AND_ASSIGN(std::vector<Reply> replies,
                          client.Pipeline({{"INCR", "n"}, {"INCR", "n"}, {"GET", "n"}}));
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[1].as_integer(), 2);
  EXPECT_EQ(replies[2].as_string(), "2");

  // An error reply is a status, and the stream stays in step.
  absl::StatusOr<Reply> wrong = client.Command({"INCR", "k"});
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInternal) << wrong.status();
  MG_ASSERT_OK_AND_ASSIGN(v, client.Get("k"));
  EXPECT_EQ(v, "over tls");
}

TEST_F(TlsTest, IdlePooledConnectionIsReused) {
  StartServer(/*auth_clients=*/false);
  Client client(TlsClientOptions());
  // TLS 1.3 servers send session tickets after the handshake; an idle
  // connection with those unread must still count as alive, not stale.
  MG_ASSERT_OK_AND_ASSIGN(Reply first, client.Command({"CLIENT", "ID"}));
  absl::SleepFor(absl::Milliseconds(200));
  for (int i = 0; i < 5; ++i) {
    MG_ASSERT_OK_AND_ASSIGN(Reply again, client.Command({"CLIENT", "ID"}));
    EXPECT_EQ(again.as_integer(), first.as_integer()) << "the pooled connection was redialed";
  }
}

TEST_F(TlsTest, WorksAgainAfterRedisRestarts) {
  StartServer(/*auth_clients=*/false);
  Client client(TlsClientOptions());
  MG_ASSERT_OK(client.Set("a", "1").status());
  MG_ASSERT_OK(server_->Kill());
  EXPECT_FALSE(client.Ping().ok());
  MG_ASSERT_OK(server_->Restart());
  EXPECT_TRUE(Eventually([&] { return client.Ping().ok(); }));
  MG_ASSERT_OK_AND_ASSIGN(std::optional<std::string> v, client.Get("a"));
  EXPECT_FALSE(v.has_value());  // no persistence: a new Redis
}

TEST_F(TlsTest, WrongCaIsRefusedWithAClearError) {
  StartServer(/*auth_clients=*/false);
  Options o = TlsClientOptions();
  o.tls.ca_file = pki_.other_ca_file;
  Client client(o);
  absl::Status s = client.Ping();
  std::cout << "wrong CA: " << s << "\n";  // what an operator reads
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "certificate verify failed")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), server_->ClientOptions().Endpoint())) << s;
}

TEST_F(TlsTest, WrongServerNameIsRefused) {
  StartServer(/*auth_clients=*/false);
  Options o = TlsClientOptions();
  o.tls.server_name = "redis.elsewhere.example";
  Client client(o);
  absl::Status s = client.Ping();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "certificate verify failed")) << s;
  // The certificate's DNS name is accepted when asked for by name.
  o.tls.server_name = "localhost";
  Client by_name(o);
  MG_EXPECT_OK(by_name.Ping());
}

TEST_F(TlsTest, PlainTextClientGetsNoAnswerFromATlsPort) {
  StartServer(/*auth_clients=*/false);
  Options o = TlsClientOptions();
  o.tls = {};
  o.command_timeout = absl::Seconds(3);
  Client client(o);
  EXPECT_FALSE(client.Ping().ok());
}

TEST_F(TlsTest, SilentServerBoundsTheHandshakeByConnectTimeout) {
  // Listening, never accepting: the kernel completes TCP, nobody answers
  // the ClientHello. The dial must give up, not hang.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  Options o;
  o.port = ntohs(addr.sin_port);
  o.tls.enabled = true;
  o.tls.ca_file = pki_.ca_file;
  o.connect_timeout = absl::Milliseconds(300);
  o.pool_size = 1;
  Client client(o);
  absl::Status s = client.Ping();
  ::close(fd);
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "TLS handshake")) << s;
}

TEST_F(TlsTest, ClientCertificateWhenRedisRequiresOne) {
  StartServer(/*auth_clients=*/true);  // its own readiness check used the client cert
  Client with_cert(TlsClientOptions());
  MG_EXPECT_OK(with_cert.Ping());

  Options without = TlsClientOptions();
  without.tls.cert_file.clear();
  without.tls.key_file.clear();
  Client no_cert(without);
  EXPECT_FALSE(no_cert.Ping().ok());
}

TEST_F(TlsTest, SubscriberOverTls) {
  StartServer(/*auth_clients=*/false);
  absl::Mutex mu;
  std::vector<std::string> got;
  Subscriber sub(TlsClientOptions(), {"ch"}, [&](std::string_view, std::string_view m) {
    absl::MutexLock lock(&mu);
    got.emplace_back(m);
  });
  MG_ASSERT_OK(sub.Start());
  ASSERT_TRUE(Eventually([&] { return sub.subscribed(); })) << sub.last_error();
  Client client(TlsClientOptions());
  MG_ASSERT_OK(client.Publish("ch", "one").status());
  MG_ASSERT_OK(client.Publish("ch", "two").status());
  EXPECT_TRUE(Eventually([&] {
    absl::MutexLock lock(&mu);
    return got.size() == 2;
  }));
  sub.Stop();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(got, (std::vector<std::string>{"one", "two"}));
}

TEST(TlsOptionsTest, UrlAndFlags) {
  MG_ASSERT_OK_AND_ASSIGN(Options o, Options::FromUrl("rediss://:pw@redis.example:6380/2"));
  EXPECT_TRUE(o.tls.enabled);
  EXPECT_EQ(o.host, "redis.example");
  EXPECT_EQ(o.port, 6380);
  EXPECT_EQ(o.db, 2);
  EXPECT_EQ(o.password, "pw");
  EXPECT_TRUE(o.tls.ca_file.empty());

  // Query keys need TLS, are known, and files must be readable at start.
  EXPECT_EQ(Options::FromUrl("redis://h:1?ca=/etc/hostname").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Options::FromUrl("rediss://h:1?verify=no").status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status missing = Options::FromUrl("rediss://h:1?ca=/nonexistent/ca.pem").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(missing.message(), "/nonexistent/ca.pem")) << missing;
  EXPECT_EQ(Options::FromUrl("rediss://h:1?cert=/etc/hostname").status().code(),
            absl::StatusCode::kInvalidArgument);  // a certificate without its key
  MG_ASSERT_OK_AND_ASSIGN(o, Options::FromUrl("rediss://h?ca=%2Fetc%2Fhostname&server_name=r"));
  EXPECT_EQ(o.tls.ca_file, "/etc/hostname");
  EXPECT_EQ(o.tls.server_name, "r");

  // A daemon's --redis value plus its --redis-tls-* flags.
  TlsOptions flags;
  flags.ca_file = "/etc/hostname";
  MG_ASSERT_OK_AND_ASSIGN(o, Options::FromAddress("rediss://h:7", flags));
  EXPECT_EQ(o.tls.ca_file, "/etc/hostname");
  MG_ASSERT_OK_AND_ASSIGN(o, Options::FromAddress("rediss://h:7?ca=%2Fetc%2Fpasswd", flags));
  EXPECT_EQ(o.tls.ca_file, "/etc/passwd");  // the URL wins
  MG_ASSERT_OK_AND_ASSIGN(o, Options::FromAddress("h:7"));
  EXPECT_FALSE(o.tls.enabled);
  EXPECT_EQ(o.port, 7);
  // TLS configured for a plain endpoint is refused, never silently dropped.
  absl::Status plain = Options::FromAddress("h:7", flags).status();
  EXPECT_EQ(plain.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(plain.message(), "rediss://h:7")) << plain;
}

}  // namespace
}  // namespace mailgrid::redis
