// The SMTP client against a scripted in-process peer: STARTTLS (self-signed
// certificate, opportunistic: not verified), a peer answering garbage, and
// a peer that hangs after the data. Each peer serves one connection.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "libs/outbound/smtp_client.h"

namespace mailgrid::outbound {
namespace {

enum class Mode { kTls, kGarbage, kHangAfterData };

class FakePeer {
 public:
  explicit FakePeer(Mode mode) : mode_(mode) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(listen_fd_, 1);
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakePeer() {
    thread_.join();
    close(listen_fd_);
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
  }
  uint16_t port() const { return port_; }
  std::vector<std::string> lines() {
    absl::MutexLock lock(&mu_);
    return lines_;
  }
  bool saw_tls() {
    absl::MutexLock lock(&mu_);
    return saw_tls_;
  }

 private:
  void Send(const std::string& s) {
    if (ssl_ != nullptr) {
      SSL_write(ssl_, s.data(), static_cast<int>(s.size()));
    } else {
      send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
    }
  }
  // One line without CRLF; false at EOF.
  bool ReadLine(std::string* line) {
    line->clear();
    char c;
    while (true) {
      int n = ssl_ != nullptr ? SSL_read(ssl_, &c, 1) : static_cast<int>(recv(fd_, &c, 1, 0));
      if (n <= 0) return false;
      if (c == '\n') break;
      if (c != '\r') line->push_back(c);
    }
    absl::MutexLock lock(&mu_);
    lines_.push_back(*line);
    return true;
  }
  void StartTls() {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("mx.fake.test"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
    ctx_ = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(ctx_, cert);
    SSL_CTX_use_PrivateKey(ctx_, key);
    X509_free(cert);
    EVP_PKEY_free(key);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    if (SSL_accept(ssl_) == 1) {
      absl::MutexLock lock(&mu_);
      saw_tls_ = true;
    }
  }
  void Serve() {
    fd_ = accept(listen_fd_, nullptr, nullptr);
    Send("220 fake ESMTP\r\n");
    std::string line;
    while (ReadLine(&line)) {
      std::string verb = line.substr(0, 4);
      if (mode_ == Mode::kGarbage) {
        Send("2x0 what\r\n");
        continue;
      }
      if (verb == "EHLO") {
        Send(ssl_ == nullptr ? "250-fake\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
                             : "250-fake\r\n250 PIPELINING\r\n");
      } else if (verb == "STAR") {
        Send("220 2.0.0 go ahead\r\n");
        StartTls();
      } else if (verb == "MAIL" || verb == "RCPT") {
        Send(absl::StrContains(line, "nobody@") ? "550 5.1.1 no such user\r\n"
                                                : "250 2.1.0 ok\r\n");
      } else if (verb == "DATA") {
        Send("354 go\r\n");
        while (ReadLine(&line) && line != ".") {
        }
        if (mode_ == Mode::kHangAfterData) {
          // Never answer: the client's end-of-data timeout must fire.
          while (ReadLine(&line)) {
          }
          break;
        }
        Send("250 2.0.0 queued as X\r\n");
      } else if (verb == "QUIT") {
        Send("221 bye\r\n");
        break;
      } else {
        Send("502 5.5.2 what\r\n");
      }
    }
    if (ssl_ != nullptr) SSL_shutdown(ssl_);
    close(fd_);
  }

  Mode mode_;
  int listen_fd_ = -1, fd_ = -1;
  uint16_t port_ = 0;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<std::string> lines_;
  bool saw_tls_ = false;
};

TransactionRequest Request() {
  TransactionRequest req;
  req.helo_name = "relay.test";
  req.envelope_from = "a@sender.test";
  req.recipients = {"bob@fake.test", "nobody@fake.test"};
  req.message = "Subject: x\r\n\r\n.dot\r\n";
  req.tls_server_name = "mx.fake.test";
  return req;
}

TEST(FakePeer, OpportunisticStartTlsThenPipelinedPerRecipientOutcomes) {
  FakePeer peer(Mode::kTls);
  TransactionResult r = SendMail("127.0.0.1", peer.port(), "mx.fake.test", Request());
  EXPECT_FALSE(r.session_failed) << r.session_reply.error();
  EXPECT_TRUE(r.tls_used);
  ASSERT_EQ(r.recipients.size(), 2u);
  EXPECT_EQ(r.recipients[0].kind, RecipientOutcome::Kind::kDelivered);
  EXPECT_EQ(r.recipients[0].reply.code(), 250u);
  EXPECT_EQ(r.recipients[1].kind, RecipientOutcome::Kind::kBounced);
  EXPECT_EQ(r.recipients[1].reply.enhanced_code(), "5.1.1");
  EXPECT_EQ(r.recipients[1].reply.remote_host(), "mx.fake.test [127.0.0.1]");
  auto lines = peer.lines();
  EXPECT_TRUE(peer.saw_tls());
  // EHLO twice (before and after STARTTLS), dot-stuffed data.
  EXPECT_EQ(std::count_if(lines.begin(), lines.end(),
                          [](const std::string& l) { return absl::StartsWith(l, "EHLO"); }),
            2);
  EXPECT_NE(std::find(lines.begin(), lines.end(), "..dot"), lines.end());
}

// PIPELINING: DATA leaves in the group with MAIL and RCPT. A peer that
// says 354 to it although it refused every recipient gets an empty message
// (no line of ours), and nothing is reported delivered.
TEST(FakePeer, PipelinedDataWithEveryRecipientRefusedSendsNoBody) {
  FakePeer peer(Mode::kTls);
  TransactionRequest req = Request();
  req.recipients = {"nobody@fake.test"};
  TransactionResult r = SendMail("127.0.0.1", peer.port(), "mx.fake.test", req);
  EXPECT_FALSE(r.session_failed) << r.session_reply.error();
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].kind, RecipientOutcome::Kind::kBounced);
  auto lines = peer.lines();
  auto data = std::find(lines.begin(), lines.end(), "DATA");
  ASSERT_NE(data, lines.end());
  ASSERT_NE(data + 1, lines.end());
  EXPECT_EQ(*(data + 1), ".");
  EXPECT_EQ(std::find(lines.begin(), lines.end(), "..dot"), lines.end());
  EXPECT_EQ(std::find(lines.begin(), lines.end(), "Subject: x"), lines.end());
}

TEST(FakePeer, RequiredTlsWithUntrustedCertificateFails) {
  FakePeer peer(Mode::kTls);
  TransactionRequest req = Request();
  req.tls = TlsPolicy::kRequire;
  TransactionResult r = SendMail("127.0.0.1", peer.port(), "mx.fake.test", req);
  EXPECT_TRUE(r.session_failed);
  EXPECT_FALSE(r.session_permanent);
  EXPECT_TRUE(absl::StrContains(r.session_reply.error(), "TLS handshake failed"))
      << r.session_reply.error();
}

// MTA-STS testing mode: the same untrusted certificate is reported, and the
// mail is delivered anyway over the encrypted session.
TEST(FakePeer, ReportedVerificationDeliversAndSaysWhyTheCertificateFails) {
  FakePeer peer(Mode::kTls);
  TransactionRequest req = Request();
  req.report_tls_verification = true;
  TransactionResult r = SendMail("127.0.0.1", peer.port(), "mx.fake.test", req);
  EXPECT_FALSE(r.session_failed) << r.session_reply.error();
  EXPECT_TRUE(r.tls_used);
  EXPECT_FALSE(r.tls_verify_error.empty());
  ASSERT_EQ(r.recipients.size(), 2u);
  EXPECT_EQ(r.recipients[0].kind, RecipientOutcome::Kind::kDelivered);
  // Without the flag nothing is checked, nothing reported.
  FakePeer other(Mode::kTls);  // a peer serves one connection
  TransactionResult plain = SendMail("127.0.0.1", other.port(), "mx.fake.test", Request());
  EXPECT_TRUE(plain.tls_used);
  EXPECT_TRUE(plain.tls_verify_error.empty());
}

TEST(FakePeer, GarbageReplyIsATemporaryFailureWithTheReason) {
  FakePeer peer(Mode::kGarbage);
  TransactionResult r = SendMail("127.0.0.1", peer.port(), "", Request());
  EXPECT_TRUE(r.session_failed);
  EXPECT_FALSE(r.session_permanent);
  EXPECT_TRUE(absl::StrContains(r.session_reply.error(), "malformed reply"))
      << r.session_reply.error();
}

TEST(FakePeer, HangAfterDataDefersAcceptedRecipients) {
  FakePeer peer(Mode::kHangAfterData);
  TransactionRequest req = Request();
  req.tls = TlsPolicy::kNone;
  req.timeouts.data_end = absl::Seconds(1);
  TransactionResult r = SendMail("127.0.0.1", peer.port(), "", req);
  ASSERT_EQ(r.recipients.size(), 2u);
  EXPECT_EQ(r.recipients[0].kind, RecipientOutcome::Kind::kDeferred);
  EXPECT_TRUE(absl::StrContains(r.recipients[0].reply.error(), "timeout"))
      << r.recipients[0].reply.error();
  EXPECT_EQ(r.recipients[1].kind, RecipientOutcome::Kind::kBounced);
}

}  // namespace
}  // namespace mailgrid::outbound
