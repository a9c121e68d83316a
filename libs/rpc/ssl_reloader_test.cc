// A real TLS listener on loopback (plain sockets + OpenSSL, as netserver's
// asio context is underneath) whose certificate files are rotated while it
// runs: a new connection sees the new certificate, a broken rotation keeps
// the old one.
#include "libs/rpc/ssl_reloader.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace mailgrid::rpc {
namespace {

namespace fs = std::filesystem;

void Run(const std::string& cmd) {
  ASSERT_EQ(std::system((cmd + " >/dev/null 2>&1").c_str()), 0) << cmd;
}

// Self-signed certificate for CN=`cn` in <dir>/<cn>/{cert,key}.pem.
void SelfSigned(const std::string& dir, const std::string& cn) {
  fs::create_directories(dir + "/" + cn);
  Run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + dir + "/" +
      cn + "/key.pem -out " + dir + "/" + cn + "/cert.pem -days 2 -subj /CN=" + cn);
}

// Accepts TLS connections on 127.0.0.1 until stopped, one at a time.
class TlsListener {
 public:
  explicit TlsListener(SSL_CTX* ctx) : ctx_(ctx) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~TlsListener() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  int port() const { return port_; }

 private:
  void Serve() {
    while (!stop_) {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      SSL* ssl = SSL_new(ctx_);
      SSL_set_fd(ssl, c);
      if (SSL_accept(ssl) == 1) SSL_shutdown(ssl);
      SSL_free(ssl);
      close(c);
    }
  }
  SSL_CTX* ctx_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Connects, handshakes without verification, returns the server's CN
// ("" when the handshake failed).
std::string ServerCommonName(int port) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  std::string cn;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) == 1) {
      X509* peer = SSL_get1_peer_certificate(ssl);
      char buf[256] = {};
      X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, buf, sizeof(buf));
      cn = buf;
      X509_free(peer);
      SSL_shutdown(ssl);
    }
    SSL_free(ssl);
  }
  close(fd);
  SSL_CTX_free(ctx);
  return cn;
}

bool Eventually(const std::function<bool()>& done) {
  absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (absl::Now() < give_up) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return done();
}

TEST(SslCertificateReloaderTest, NewConnectionsSeeTheRotatedCertificate) {
  // Either side's close_notify may hit a socket the peer already closed;
  // daemons ignore SIGPIPE too (asio writes with MSG_NOSIGNAL).
  std::signal(SIGPIPE, SIG_IGN);
  std::string dir = ::testing::TempDir() + "/ssl_reloader_test";
  fs::remove_all(dir);
  SelfSigned(dir, "one");
  SelfSigned(dir, "two");
  fs::create_directory_symlink(dir + "/one", dir + "/current");
  std::string cert = dir + "/current/cert.pem", key = dir + "/current/key.pem";

  auto reloader = SslCertificateReloader::Start(cert, key, absl::Milliseconds(100));
  ASSERT_TRUE(reloader.ok()) << reloader.status();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  // As netserver does: the context's own pair, checked at start...
  ASSERT_EQ(SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM), 1);
  // ...then the reloader on top.
  (*reloader)->Install(ctx);
  {
    TlsListener listener(ctx);
    EXPECT_EQ(ServerCommonName(listener.port()), "one");
    EXPECT_EQ((*reloader)->generation(), 1);

    // Rotation as kubelet does it: one atomic symlink swap.
    fs::create_directory_symlink(dir + "/two", dir + "/next");
    fs::rename(dir + "/next", dir + "/current");
    EXPECT_TRUE(Eventually([&] { return ServerCommonName(listener.port()) == "two"; }));
    EXPECT_EQ((*reloader)->generation(), 2);

    // A broken rotation (a key that is not the certificate's) is refused;
    // the listener keeps presenting "two".
    fs::copy_file(dir + "/one/key.pem", dir + "/two/key.pem", fs::copy_options::overwrite_existing);
    absl::Status refused = (*reloader)->ReloadNow();
    EXPECT_FALSE(refused.ok());
    EXPECT_NE(refused.message().find("does not match"), std::string::npos) << refused;
    EXPECT_EQ(ServerCommonName(listener.port()), "two");
    EXPECT_EQ((*reloader)->generation(), 2);
  }
  SSL_CTX_free(ctx);
}

TEST(SslCertificateReloaderTest, StartNamesTheBadFile) {
  auto missing = SslCertificateReloader::Start("/nonexistent/cert.pem", "/nonexistent/key.pem");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/cert.pem"), std::string::npos)
      << missing.status();
}

}  // namespace
}  // namespace mailgrid::rpc
