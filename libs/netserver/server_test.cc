// netserver over real loopback sockets and real TLS (a test CA made with the
// openssl CLI). No assertion on durations: waits poll generously.
#include "libs/netserver/server.h"

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <openssl/x509.h>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace mailgrid::netserver {
namespace {

using asio::ip::tcp;

struct TestPki {
  std::string dir, ca, cert, key;
  TestPki() {
    dir = ::testing::TempDir() + "/netserver_test_pki";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    ca = dir + "/ca.pem";
    cert = dir + "/cert.pem";
    key = dir + "/key.pem";
    std::ofstream(dir + "/ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                   "extendedKeyUsage=serverAuth\n";
    Run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + dir +
        "/ca.key -out " + ca + " -days 2 -subj /CN=netserver-test-ca");
    Run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + key +
        " -out " + dir + "/cert.csr -subj /CN=localhost");
    Run("openssl x509 -req -in " + dir + "/cert.csr -CA " + ca + " -CAkey " + dir +
        "/ca.key -CAcreateserial -out " + cert + " -days 2 -extfile " + dir + "/ext");
  }
  static void Run(const std::string& cmd) {
    ASSERT_EQ(std::system((cmd + " >/dev/null 2>&1").c_str()), 0) << cmd;
  }
};

// Everything sessions saw, for assertions from the test thread.
struct Journal {
  absl::Mutex mu;
  std::string received;  // all bytes given to OnBytes, in order
  std::vector<std::string> closes;
  int tls_established = 0;
  void Add(std::string_view s) {
    absl::MutexLock l(&mu);
    received.append(s);
  }
  std::string Received() {
    absl::MutexLock l(&mu);
    return received;
  }
};

// A line protocol: greets "hello", echoes each line as "echo: <line>";
// "STARTTLS" invites a handshake at once; "SLOWTLS" pauses, says "wait",
// and asks for TLS later from another thread; "ASYNC" pauses and answers
// "done" from another thread; "QUIT" says bye and closes.
class EchoSession : public Session {
 public:
  EchoSession(std::shared_ptr<Connection> conn, Journal* j, std::vector<std::thread>* threads,
              std::mutex* threads_mu, absl::Duration idle)
      : conn_(conn), journal_(j), threads_(threads), threads_mu_(threads_mu), idle_(idle) {}

  Output OnConnect() override {
    if (idle_ > absl::ZeroDuration()) conn_.lock()->SetIdleTimeout(idle_);
    return Output::Write("hello\r\n");
  }
  Output OnBytes(std::string_view data) override {
    journal_->Add(data);
    buf_.append(data);
    return Process();
  }
  // Answers the complete lines buffered so far (also after an async pause).
  Output Process() {
    Output out;
    size_t eol;
    while ((eol = buf_.find("\r\n")) != std::string::npos) {
      std::string line = buf_.substr(0, eol);
      buf_.erase(0, eol + 2);
      if (line == "STARTTLS") {
        buf_.clear();  // the session's own CVE-2011-0411 duty
        out.bytes += "go\r\n";
        out.start_tls = true;
        return out;
      }
      if (line == "SLOWTLS" || line == "ASYNC") {
        bool tls = line == "SLOWTLS";
        out.bytes += tls ? "wait\r\n" : "";
        out.pause_reading = true;
        std::weak_ptr<Connection> weak = conn_;
        std::lock_guard<std::mutex> l(*threads_mu_);
        threads_->emplace_back([this, weak, tls] {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          if (auto c = weak.lock()) {
            c->Post([this, tls] {
              Output o;
              o.bytes = tls ? "go\r\n" : "done\r\n";
              o.start_tls = tls;
              if (!tls) {
                Output rest = Process();  // lines pipelined behind ASYNC
                o.bytes += rest.bytes;
                o.close = rest.close;
                o.pause_reading = rest.pause_reading;
              }
              return o;
            });
          }
        });
        return out;
      }
      if (line == "THEN") {
        // The next step as the Output's continuation: "first" is written,
        // then "second", then the lines pipelined behind THEN.
        out.bytes += "first\r\n";
        out.pause_reading = true;
        out.then = [this] {
          Output o = Process();
          o.bytes = "second\r\n" + o.bytes;
          return o;
        };
        return out;
      }
      if (line == "QUIT") {
        out.bytes += "bye\r\n";
        out.close = true;
        return out;
      }
      out.bytes += "echo: " + line + "\r\n";
    }
    return out;
  }
  Output OnTlsEstablished(const TlsInfo& info) override {
    absl::MutexLock l(&journal_->mu);
    ++journal_->tls_established;
    return Output::Write("tls " + info.version + "\r\n");
  }
  Output OnTimeout() override { return Output::Close("bye timeout\r\n"); }
  Output OnShutdown() override { return Output::Close("bye shutdown\r\n"); }
  void OnClose(std::string_view reason) override {
    absl::MutexLock l(&journal_->mu);
    journal_->closes.emplace_back(reason);
  }

 private:
  std::weak_ptr<Connection> conn_;
  Journal* journal_;
  std::vector<std::thread>* threads_;
  std::mutex* threads_mu_;
  absl::Duration idle_;
  std::string buf_;
};

class NetServerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(5));
    std::lock_guard<std::mutex> l(threads_mu_);
    for (auto& t : threads_) t.join();
  }

  void StartServer(ServerOptions o, bool implicit_tls = false,
                   absl::Duration idle = absl::ZeroDuration()) {
    o.tls_cert_file = pki_.cert;
    o.tls_key_file = pki_.key;
    auto s = Server::Create(std::move(o));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    ListenerConfig lc;
    lc.name = "test";
    lc.address = "127.0.0.1:0";
    lc.implicit_tls = implicit_tls;
    lc.over_capacity_reply = "busy\r\n";
    lc.factory = [this, idle](std::shared_ptr<Connection> c) {
      return std::make_unique<EchoSession>(c, &journal_, &threads_, &threads_mu_, idle);
    };
    auto port = server_->AddListener(lc);
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
    ASSERT_TRUE(server_->Start().ok());
  }

  tcp::socket Connect() {
    tcp::socket s(io_);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port_)));
    return s;
  }

  template <typename Stream>
  static std::string ReadLine(Stream& s, asio::streambuf& buf, asio::error_code* ec_out = nullptr) {
    asio::error_code ec;
    size_t n = asio::read_until(s, buf, "\r\n", ec);
    if (ec_out) *ec_out = ec;
    if (ec) return "<" + ec.message() + ">";
    std::string line(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + n - 2);
    buf.consume(n);
    return line;
  }
  template <typename Stream>
  static void Send(Stream& s, std::string_view text) {
    asio::write(s, asio::buffer(text.data(), text.size()));
  }
  // True once the peer has closed (read returns EOF or an error).
  template <typename Stream>
  static bool ReadsEof(Stream& s, asio::streambuf& buf) {
    asio::error_code ec;
    asio::read(s, buf, asio::transfer_at_least(1), ec);
    return static_cast<bool>(ec);
  }

  asio::ssl::context ClientTls() {
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    ctx.load_verify_file(pki_.ca);
    ctx.set_verify_mode(asio::ssl::verify_peer);
    return ctx;
  }

  void WaitActive(uint64_t n) {
    for (int i = 0; i < 1200 && server_->stats().active != n; ++i) absl::SleepFor(absl::Milliseconds(50));
    ASSERT_EQ(server_->stats().active, n);
  }

  TestPki pki_;
  asio::io_context io_;
  std::unique_ptr<Server> server_;
  int port_ = 0;
  Journal journal_;
  std::mutex threads_mu_;
  std::vector<std::thread> threads_;
};

TEST_F(NetServerTest, PlainEchoAndClose) {
  StartServer({});
  tcp::socket s = Connect();
  asio::streambuf buf;
  EXPECT_EQ(ReadLine(s, buf), "hello");
  Send(s, "one\r\ntwo\r\n");
  EXPECT_EQ(ReadLine(s, buf), "echo: one");
  EXPECT_EQ(ReadLine(s, buf), "echo: two");
  Send(s, "QUIT\r\n");
  EXPECT_EQ(ReadLine(s, buf), "bye");
  EXPECT_TRUE(ReadsEof(s, buf));
  WaitActive(0);
  EXPECT_EQ(server_->stats().accepted, 1u);
}

TEST_F(NetServerTest, ImplicitTls) {
  StartServer({}, /*implicit_tls=*/true);
  auto ctx = ClientTls();
  asio::ssl::stream<tcp::socket> s(Connect(), ctx);
  s.handshake(asio::ssl::stream_base::client);
  asio::streambuf buf;
  EXPECT_EQ(ReadLine(s, buf), "hello");
  Send(s, "secret\r\n");
  EXPECT_EQ(ReadLine(s, buf), "echo: secret");
  EXPECT_EQ(server_->stats().tls_handshakes, 1u);
}

// A renewed certificate (the Secret volume updated in place) reaches new
// handshakes without a restart; the session already open keeps working.
TEST_F(NetServerTest, RenewedCertificateServedToNewConnections) {
  ServerOptions o;
  o.tls_reload_interval = absl::Milliseconds(100);
  StartServer(o, /*implicit_tls=*/true);
  auto subject = [](asio::ssl::stream<tcp::socket>& s) {
    X509* peer = SSL_get1_peer_certificate(s.native_handle());
    char cn[256] = {0};
    if (peer != nullptr) {
      X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
      X509_free(peer);
    }
    return std::string(cn);
  };
  auto ctx = ClientTls();
  asio::ssl::stream<tcp::socket> before(Connect(), ctx);
  before.handshake(asio::ssl::stream_base::client);
  asio::streambuf before_buf;
  EXPECT_EQ(ReadLine(before, before_buf), "hello");
  EXPECT_EQ(subject(before), "localhost");

  // The new pair is written beside the old one and moved over it, key
  // first: a reload in between sees a mismatched pair and keeps the old.
  const std::string& d = pki_.dir;
  TestPki::Run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + d +
               "/new.key -out " + d + "/new.csr -subj /CN=renewed.example");
  TestPki::Run("openssl x509 -req -in " + d + "/new.csr -CA " + pki_.ca + " -CAkey " + d +
               "/ca.key -CAcreateserial -out " + d + "/new.pem -days 2 -extfile " + d + "/ext");
  std::filesystem::rename(d + "/new.key", pki_.key);
  std::filesystem::rename(d + "/new.pem", pki_.cert);

  std::string seen;
  for (int i = 0; i < 600 && seen != "renewed.example"; ++i) {
    asio::ssl::stream<tcp::socket> s(Connect(), ctx);
    s.handshake(asio::ssl::stream_base::client);  // verified against the CA both times
    seen = subject(s);
    if (seen != "renewed.example") std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(seen, "renewed.example");
  Send(before, "still here\r\n");
  EXPECT_EQ(ReadLine(before, before_buf), "echo: still here");
}

TEST_F(NetServerTest, PlainClientOnImplicitTlsListenerIsClosed) {
  StartServer({}, /*implicit_tls=*/true);
  tcp::socket s = Connect();
  Send(s, "EHLO plain\r\n");
  asio::streambuf buf;
  EXPECT_TRUE(ReadsEof(s, buf));
  WaitActive(0);
  EXPECT_EQ(server_->stats().tls_failures, 1u);
  EXPECT_EQ(journal_.Received(), "");
}

TEST_F(NetServerTest, StartTlsUpgradesInPlace) {
  StartServer({});
  tcp::socket raw = Connect();
  asio::streambuf buf;
  EXPECT_EQ(ReadLine(raw, buf), "hello");
  Send(raw, "STARTTLS\r\n");
  EXPECT_EQ(ReadLine(raw, buf), "go");
  ASSERT_EQ(buf.size(), 0u);
  auto ctx = ClientTls();
  asio::ssl::stream<tcp::socket&> s(raw, ctx);
  s.handshake(asio::ssl::stream_base::client);
  asio::streambuf tbuf;
  std::string tls_line = ReadLine(s, tbuf);
  EXPECT_TRUE(tls_line == "tls TLSv1.3" || tls_line == "tls TLSv1.2") << tls_line;
  Send(s, "inside\r\n");
  EXPECT_EQ(ReadLine(s, tbuf), "echo: inside");
  EXPECT_EQ(journal_.Received(), "STARTTLS\r\ninside\r\n");
}

// CVE-2011-0411: plaintext sent after STARTTLS but before the handshake
// never reaches the Session; here it breaks the handshake instead.
TEST_F(NetServerTest, PlaintextInjectedBeforeHandshakeNeverReachesSession) {
  StartServer({});
  tcp::socket raw = Connect();
  asio::streambuf buf;
  EXPECT_EQ(ReadLine(raw, buf), "hello");
  Send(raw, "SLOWTLS\r\n");
  EXPECT_EQ(ReadLine(raw, buf), "wait");
  Send(raw, "INJECTED\r\n");  // while the session waits on its async call
  EXPECT_EQ(ReadLine(raw, buf), "go");
  auto ctx = ClientTls();
  asio::ssl::stream<tcp::socket&> s(raw, ctx);
  asio::error_code ec;
  s.handshake(asio::ssl::stream_base::client, ec);
  EXPECT_TRUE(ec) << "the injected bytes must be read by OpenSSL, not accepted";
  WaitActive(0);
  EXPECT_EQ(journal_.Received(), "SLOWTLS\r\n");
  EXPECT_EQ(server_->stats().tls_failures, 1u);
}

TEST_F(NetServerTest, AsyncPostResumesInOrder) {
  StartServer({});
  tcp::socket s = Connect();
  asio::streambuf buf;
  EXPECT_EQ(ReadLine(s, buf), "hello");
  // Pipelined: "after" must be answered only after the async "done".
  Send(s, "ASYNC\r\n");
  Send(s, "after\r\n");
  EXPECT_EQ(ReadLine(s, buf), "done");
  EXPECT_EQ(ReadLine(s, buf), "echo: after");
}

TEST_F(NetServerTest, ContinuationRunsAfterTheBytesAndInOrder) {
  StartServer({});
  tcp::socket s = Connect();
  asio::streambuf buf;
  EXPECT_EQ(ReadLine(s, buf), "hello");
  Send(s, "THEN\r\nafter\r\n");
  EXPECT_EQ(ReadLine(s, buf), "first");
  EXPECT_EQ(ReadLine(s, buf), "second");
  EXPECT_EQ(ReadLine(s, buf), "echo: after");
  Send(s, "again\r\n");  // reading resumed after the continuation
  EXPECT_EQ(ReadLine(s, buf), "echo: again");
}

TEST_F(NetServerTest, ActivityPostponesTheIdleTimeout) {
  // The idle timer is not re-armed at every read and write (ArmTimer only
  // notes the later deadline); the connection must still live as long as
  // it is active, then time out once idle.
  StartServer({}, false, absl::Seconds(2));
  tcp::socket s = Connect();
  asio::streambuf buf;
  EXPECT_EQ(ReadLine(s, buf), "hello");
  for (int i = 0; i < 25; ++i) {  // 2.5 s of traffic, one line per 100 ms
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    Send(s, "ping\r\n");
    ASSERT_EQ(ReadLine(s, buf), "echo: ping") << "line " << i;
  }
  EXPECT_EQ(server_->stats().timeouts, 0u);
  EXPECT_EQ(ReadLine(s, buf), "bye timeout");
  EXPECT_TRUE(ReadsEof(s, buf));
  WaitActive(0);
  EXPECT_EQ(server_->stats().timeouts, 1u);
}

TEST_F(NetServerTest, SlowTlsThenTrafficWorks) {
  StartServer({});
  tcp::socket raw = Connect();
  asio::streambuf buf;
  EXPECT_EQ(ReadLine(raw, buf), "hello");
  Send(raw, "SLOWTLS\r\n");
  EXPECT_EQ(ReadLine(raw, buf), "wait");
  EXPECT_EQ(ReadLine(raw, buf), "go");
  auto ctx = ClientTls();
  asio::ssl::stream<tcp::socket&> s(raw, ctx);
  s.handshake(asio::ssl::stream_base::client);
  asio::streambuf tbuf;
  EXPECT_EQ(ReadLine(s, tbuf).substr(0, 4), "tls ");
  Send(s, "x\r\n");
  EXPECT_EQ(ReadLine(s, tbuf), "echo: x");
}

TEST_F(NetServerTest, IdleTimeoutSaysGoodbye) {
  StartServer({}, false, absl::Milliseconds(300));
  tcp::socket s = Connect();
  asio::streambuf buf;
  EXPECT_EQ(ReadLine(s, buf), "hello");
  EXPECT_EQ(ReadLine(s, buf), "bye timeout");
  EXPECT_TRUE(ReadsEof(s, buf));
  WaitActive(0);
  EXPECT_EQ(server_->stats().timeouts, 1u);
}

TEST_F(NetServerTest, PerIpCap) {
  ServerOptions o;
  o.max_connections_per_ip = 2;
  StartServer(o);
  asio::streambuf b1, b2, b3, b4;
  tcp::socket s1 = Connect();
  tcp::socket s2 = Connect();
  EXPECT_EQ(ReadLine(s1, b1), "hello");
  EXPECT_EQ(ReadLine(s2, b2), "hello");
  tcp::socket s3 = Connect();
  EXPECT_EQ(ReadLine(s3, b3), "busy");
  EXPECT_TRUE(ReadsEof(s3, b3));
  EXPECT_EQ(server_->stats().refused_capacity, 1u);
  Send(s1, "QUIT\r\n");
  EXPECT_EQ(ReadLine(s1, b1), "bye");
  WaitActive(1);
  tcp::socket s4 = Connect();
  EXPECT_EQ(ReadLine(s4, b4), "hello");
}

TEST_F(NetServerTest, GlobalCap) {
  ServerOptions o;
  o.max_connections = 1;
  StartServer(o);
  asio::streambuf b1, b2;
  tcp::socket s1 = Connect();
  EXPECT_EQ(ReadLine(s1, b1), "hello");
  tcp::socket s2 = Connect();
  EXPECT_EQ(ReadLine(s2, b2), "busy");
}

TEST_F(NetServerTest, ShutdownLetsSessionsSayGoodbye) {
  StartServer({});
  tcp::socket plain = Connect();
  asio::streambuf b1, b2;
  EXPECT_EQ(ReadLine(plain, b1), "hello");
  tcp::socket raw = Connect();
  EXPECT_EQ(ReadLine(raw, b2), "hello");
  Send(raw, "STARTTLS\r\n");
  EXPECT_EQ(ReadLine(raw, b2), "go");
  auto ctx = ClientTls();
  asio::ssl::stream<tcp::socket&> s(raw, ctx);
  s.handshake(asio::ssl::stream_base::client);
  asio::streambuf tbuf;
  EXPECT_EQ(ReadLine(s, tbuf).substr(0, 4), "tls ");

  std::thread stopper([this] { server_->Shutdown(absl::Seconds(30)); });
  EXPECT_EQ(ReadLine(plain, b1), "bye shutdown");
  EXPECT_TRUE(ReadsEof(plain, b1));
  EXPECT_EQ(ReadLine(s, tbuf), "bye shutdown");
  stopper.join();
  EXPECT_EQ(server_->stats().active, 0u);
  // Nothing listens any more.
  tcp::socket late(io_);
  asio::error_code ec;
  late.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port_)),
               ec);
  EXPECT_TRUE(ec);
}

TEST_F(NetServerTest, ManyConnectionsConcurrently) {
  StartServer({});
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 20; ++i) {
    clients.emplace_back([this, i, &ok] {
      asio::io_context io;
      tcp::socket s(io);
      s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port_)));
      asio::streambuf buf;
      if (ReadLine(s, buf) != "hello") return;
      for (int j = 0; j < 50; ++j) {
        std::string msg = "c" + std::to_string(i) + "m" + std::to_string(j);
        Send(s, msg + "\r\n");
        if (ReadLine(s, buf) != "echo: " + msg) return;
      }
      ++ok;
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 20);
}

TEST(NetServerConfigTest, BadCertificateIsAnError) {
  ServerOptions o;
  o.tls_cert_file = "/nonexistent/cert.pem";
  o.tls_key_file = "/nonexistent/key.pem";
  auto s = Server::Create(o);
  EXPECT_FALSE(s.ok());
}

TEST(NetServerConfigTest, ImplicitTlsNeedsCertificate) {
  auto s = Server::Create({});
  ASSERT_TRUE(s.ok());
  ListenerConfig lc;
  lc.name = "x";
  lc.address = "127.0.0.1:0";
  lc.implicit_tls = true;
  lc.factory = [](std::shared_ptr<Connection>) -> std::unique_ptr<Session> { return nullptr; };
  EXPECT_FALSE((*s)->AddListener(lc).ok());
}

}  // namespace
}  // namespace mailgrid::netserver
