// relayd's SMTP side end to end over real sockets (libs/netserver, real TLS
// with a test CA), with a fake Backend in place of tenantd / identityd /
// mailstored so every policy branch is reachable. The same flows against
// the real daemons are in relay_integration_test.py.
#include <asio.hpp>
#include <asio/ssl.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/escaping.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "libs/mailauth/dkim.h"
#include "libs/mailauth/dns.h"
#include "libs/base/status.h"
#include "libs/mailauth/test_keys.h"
#include "libs/rpc/errors.h"
#include "libs/store/local_store.h"
#include "services/relay/app.h"
#include "services/relay/audit_holds.h"
#include "services/relay/dns_cache.h"
#include "services/relay/headers.h"
#include "services/relay/sasl.h"

namespace mailgrid::relay {
namespace {

using asio::ip::tcp;

struct TestPki {
  std::string dir, ca, cert, key;
  TestPki() {
    dir = ::testing::TempDir() + "/relay_smtp_test_pki";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    ca = dir + "/ca.pem";
    cert = dir + "/cert.pem";
    key = dir + "/key.pem";
    std::ofstream(dir + "/ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    Run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + dir +
        "/ca.key -out " + ca + " -days 2 -subj /CN=relay-test-ca");
    Run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + key +
        " -out " + dir + "/cert.csr -subj /CN=localhost");
    Run("openssl x509 -req -in " + dir + "/cert.csr -CA " + ca + " -CAkey " + dir +
        "/ca.key -CAcreateserial -out " + cert + " -days 2 -extfile " + dir + "/ext");
  }
  static void Run(const std::string& cmd) {
    ASSERT_EQ(std::system((cmd + " >/dev/null 2>&1").c_str()), 0) << cmd;
  }
};

// tenantd/identityd/mailstored in one, with answers set by the test.
class FakeBackend : public Backend {
 public:
  absl::Mutex mu;
  std::map<std::string, std::string> mailboxes;  // address -> mailbox id
  std::set<std::string> hosted_domains = {"hosted.test"};
  std::map<std::string, std::string> passwords;  // address -> password
  std::set<std::string> send_as;                 // "user_id|address"
  std::vector<mailstore::v1::DeliverBatchRequest> delivered;
  absl::Status deliver_error;
  absl::Status rate_error;
  int resolve_calls = 0;
  int resolve_many_calls = 0;
  int resolve_many_requests = 0;
  int can_send_as_calls = 0;
  bool counts_submissions = true;  // false: as GrpcBackend without a rate limiter
  bool CountsSubmissions() const override { return counts_submissions; }

  absl::StatusOr<tenant::v1::ResolveResponse> Resolve(
      const tenant::v1::ResolveRequest& req) override {
    absl::MutexLock l(&mu);
    ++resolve_calls;
    std::string addr = req.address();
    std::string domain = addr.substr(addr.rfind('@') + 1);
    if (!hosted_domains.count(domain)) {
      common::v1::RpcStatus d;
      common::v1::ErrorDetail e;
      e.set_reason("DOMAIN_NOT_HOSTED");
      d.add_details()->PackFrom(e);
      return rpc::WithDetails(absl::NotFoundError("domain not hosted"), d);
    }
    if (moderated_groups.count(addr)) {
      tenant::v1::ResolveResponse r;
      r.set_tenant_id("t1");
      r.set_canonical_address(addr);
      r.set_posting_decision(tenant::v1::POSTING_DECISION_MODERATED);
      r.set_group_id("g-" + addr);
      r.add_moderator_user_ids("u-mod");
      auto* rc = r.add_recipients();
      rc->set_mailbox_id("mbx-bob");
      rc->set_address("bob@hosted.test");
      return r;
    }
    auto it = mailboxes.find(addr);
    if (it == mailboxes.end()) return rpc::NotFound("address", addr);
    tenant::v1::ResolveResponse r;
    r.set_tenant_id("t1");
    r.set_canonical_address(addr);
    r.set_posting_decision(tenant::v1::POSTING_DECISION_ALLOWED);
    auto* rc = r.add_recipients();
    rc->set_mailbox_id(it->second);
    rc->set_address(addr);
    rc->set_user_id("u-" + addr);
    rc->set_tenant_id("t1");
    return r;
  }
  absl::StatusOr<tenant::v1::ResolveManyResponse> ResolveMany(
      const tenant::v1::ResolveManyRequest& req) override {
    {
      absl::MutexLock l(&mu);
      ++resolve_many_calls;
      resolve_many_requests += req.requests_size();
    }
    return Backend::ResolveMany(req);  // Resolve per request, counted there too
  }
  absl::StatusOr<bool> CanSendAs(const std::string& user_id, const std::string& address) override {
    absl::MutexLock l(&mu);
    ++can_send_as_calls;
    return send_as.count(user_id + "|" + address) > 0;
  }
  absl::StatusOr<identity::v1::CheckSaslResponse> CheckSasl(
      const identity::v1::CheckSaslRequest& req) override {
    absl::MutexLock l(&mu);
    auto it = passwords.find(req.authcid());
    if (it == passwords.end() || it->second != req.password()) {
      return absl::UnauthenticatedError("bad credentials");
    }
    identity::v1::CheckSaslResponse r;
    r.set_tenant_id("t1");
    r.set_user_id("u-" + req.authcid());
    r.set_address(req.authcid());
    return r;
  }
  absl::StatusOr<mailstore::v1::DeliverBatchResponse> Deliver(
      uint32_t shard, const mailstore::v1::DeliverBatchRequest& req) override {
    if (hold != nullptr && req.message().find("Subject: HOLD") != std::string::npos)
      hold->WaitForNotification();  // the thread making the call stays inside it
    absl::MutexLock l(&mu);
    if (!deliver_error.ok()) return deliver_error;
    delivered.push_back(req);
    mailstore::v1::DeliverBatchResponse r;
    for (const auto& t : req.recipients()) {
      auto* res = r.add_results();
      res->set_mailbox_id(t.mailbox_id());
      res->set_status(full.count(t.mailbox_id()) ? mailstore::v1::DELIVERY_STATUS_QUOTA_EXCEEDED
                                                 : mailstore::v1::DELIVERY_STATUS_DELIVERED);
    }
    return r;
  }
  absl::Status CountSubmission(const std::string&, const std::string&) override {
    absl::MutexLock l(&mu);
    ++count_calls;
    return rate_error;
  }
  absl::StatusOr<int64_t> CountSubmissionRoom(const std::string& t, const std::string& u) override {
    RETURN_IF_ERROR(CountSubmission(t, u));
    absl::MutexLock l(&mu);
    return rate_room;
  }
  // When set, a delivery whose message has "Subject: HOLD" waits for it.
  absl::Notification* hold = nullptr;
  int count_calls = 0;
  int64_t rate_room = 0;  // what the limiter says is left after a count
  // Mailboxes over quota at delivery time (issue 8).
  std::set<std::string> full;
  // Tenant policies and the directory facts they need (mail_policy.h).
  std::optional<tenant::v1::AuditPolicy> audit_policy;
  std::optional<tenant::v1::MonitoringPolicy> monitoring_policy;
  std::map<std::string, std::vector<std::string>> user_departments;  // user id -> departments
  std::map<std::string, std::string> department_parent;
  std::vector<tenant::v1::AdminAuditEntry> audit_log;
  absl::StatusOr<tenant::v1::AuditPolicy> GetAuditPolicy(const std::string&) override {
    absl::MutexLock l(&mu);
    if (!audit_policy) return rpc::NotFound("policy", "audit");
    return *audit_policy;
  }
  absl::StatusOr<tenant::v1::MonitoringPolicy> GetMonitoringPolicy(const std::string&) override {
    absl::MutexLock l(&mu);
    if (!monitoring_policy) return rpc::NotFound("policy", "monitoring");
    return *monitoring_policy;
  }
  absl::StatusOr<tenant::v1::User> GetUser(const std::string& id) override {
    absl::MutexLock l(&mu);
    tenant::v1::User u;
    u.set_user_id(id);
    for (const std::string& d : user_departments[id]) u.add_department_ids(d);
    return u;
  }
  absl::StatusOr<tenant::v1::Department> GetDepartment(const std::string& id) override {
    absl::MutexLock l(&mu);
    tenant::v1::Department d;
    d.set_department_id(id);
    d.set_parent_id(department_parent[id]);
    return d;
  }
  absl::Status AppendAdminAuditLog(const tenant::v1::AdminAuditEntry& e) override {
    absl::MutexLock l(&mu);
    audit_log.push_back(e);
    return absl::OkStatus();
  }
  std::map<std::string, tenant::v1::GetDkimSigningKeyResponse> dkim;
  std::set<std::string> moderated_groups;
  absl::StatusOr<tenant::v1::GetDkimSigningKeyResponse> GetDkimSigningKey(
      const std::string& domain) override {
    absl::MutexLock l(&mu);
    auto it = dkim.find(domain);
    if (it == dkim.end()) return rpc::NotFound("domain", domain);
    return it->second;
  }
  size_t Delivered() {
    absl::MutexLock l(&mu);
    return delivered.size();
  }
};

// libs/mailauth's MemoryResolver is single-threaded; relayd asks from its
// worker pool, so the test's records sit behind a lock.
class LockedResolver final : public mailauth::Resolver {
 public:
  mailauth::DnsResult Lookup(std::string_view name, mailauth::RrType type) override {
    absl::MutexLock l(&mu_);
    return dns_.Lookup(name, type);
  }
  template <typename Fn>
  void With(Fn fn) {
    absl::MutexLock l(&mu_);
    fn(dns_);
  }

 private:
  absl::Mutex mu_;
  mailauth::MemoryResolver dns_;
};

// A blocking SMTP client over any asio stream.
template <typename Stream>
class Client {
 public:
  explicit Client(Stream& s) : s_(s) {}
  // The whole reply; "" on EOF.
  std::string Reply() {
    std::string all;
    for (;;) {
      asio::error_code ec;
      size_t n = asio::read_until(s_, buf_, "\r\n", ec);
      if (ec) return all;
      std::string line(asio::buffers_begin(buf_.data()), asio::buffers_begin(buf_.data()) + n);
      buf_.consume(n);
      all += line;
      if (line.size() < 4 || line[3] != '-') return all;
    }
  }
  std::string Cmd(std::string_view line) {
    Send(std::string(line) + "\r\n");
    return Reply();
  }
  void Send(std::string_view bytes) { asio::write(s_, asio::buffer(bytes.data(), bytes.size())); }
  size_t buffered() const { return buf_.size(); }

 private:
  Stream& s_;
  asio::streambuf buf_;
};

#define EXPECT_REPLY(reply, prefix) EXPECT_TRUE(absl::StartsWith(reply, prefix)) << reply

class RelaySmtpTest : public ::testing::Test {
 protected:
  void SetUp() override { StartApp(nullptr); }
  // The app over a fresh fake backend; `queue` (a LocalStore) turns on
  // remote delivery (no runner: entries stay queued for inspection).
  void StartApp(std::unique_ptr<store::Store> queue) {
    auto fake = std::make_unique<FakeBackend>();
    backend_ = fake.get();
    backend_->mailboxes["alice@hosted.test"] = "mbx-alice";
    backend_->mailboxes["bob@hosted.test"] = "mbx-bob";
    backend_->passwords["alice@hosted.test"] = "s3cret";
    backend_->send_as.insert("u-alice@hosted.test|alice@hosted.test");
    Options o;
    o.hostname = "mx.mailgrid.test";
    o.smtp_listen = "127.0.0.1:0";
    o.submission_listen = "127.0.0.1:0";
    o.submission_tls_listen = "127.0.0.1:0";
    o.public_tls_cert = pki_.cert;
    o.public_tls_key = pki_.key;
    o.max_message_size = 64 * 1024;
    o.worker_threads = 4;
    // DNS for SPF/DKIM/DMARC (libs/mailauth): loopback may send for
    // sender.example; the tests add more before they send.
    auto dns = std::make_unique<LockedResolver>();
    dns_ = dns.get();
    dns_->With([](mailauth::MemoryResolver& d) {
      d.AddTxt("sender.example", "v=spf1 ip4:127.0.0.0/8 -all");
    });
    o.queue_threads = 0;
    o.rcpt_cache_ttl = rcpt_cache_ttl_;
    o.rcpt_cache_foreign_ttl = rcpt_cache_foreign_ttl_;
    auto app = RelayApp::CreateWithBackend(o, std::move(fake), nullptr, std::move(dns),
                                           std::move(queue), std::make_unique<LockedResolver>());
    ASSERT_TRUE(app.ok()) << app.status();
    app_ = std::move(*app);
    ASSERT_TRUE(app_->Start({}).ok());
  }
  void TearDown() override {
    if (app_) app_->Stop();
  }
  tcp::socket Connect(const char* listener) {
    tcp::socket s(io_);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                            static_cast<uint16_t>(app_->port(listener))));
    return s;
  }
  asio::ssl::context ClientTls() {
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    ctx.load_verify_file(pki_.ca);
    ctx.set_verify_mode(asio::ssl::verify_peer);
    return ctx;
  }
  static std::string Plain(std::string_view user, std::string_view pass) {
    std::string raw = std::string(1, '\0') + std::string(user) + '\0' + std::string(pass);
    return absl::Base64Escape(raw);
  }
  // Restarts the app with a LocalStore queue in a fresh directory (remote
  // delivery and holds on; no runner) and waits until the queue is up.
  void RestartWithQueue(const std::string& dir) {
    if (app_) app_->Stop();
    app_.reset();
    auto local = store::LocalStore::Open(dir);
    ASSERT_TRUE(local.ok()) << local.status();
    StartApp(std::move(*local));
    for (int i = 0; i < 600 && !app_->outbound()->available(); ++i)
      absl::SleepFor(absl::Milliseconds(50));
    ASSERT_TRUE(app_->outbound()->available());
  }

  // A session on port 25 past its greeting and EHLO.
  struct MxSession {
    explicit MxSession(tcp::socket sock) : s(std::move(sock)), c(s) {}
    tcp::socket s;
    Client<tcp::socket> c;
    std::string greeting, ehlo;
  };
  std::unique_ptr<MxSession> OpenMx(const std::string& helo = "mta.sender.example") {
    auto mx = std::make_unique<MxSession>(Connect("smtp"));
    mx->greeting = mx->c.Reply();
    mx->ehlo = mx->c.Cmd("EHLO " + helo);
    return mx;
  }
  // A submission session over 465 (implicit TLS) past its greeting, EHLO
  // and AUTH PLAIN as `user`; `auth` is the AUTH reply (235 when signed in).
  struct Submission {
    Submission(tcp::socket sock, asio::ssl::context context)
        : ctx(std::move(context)), tls(std::move(sock), ctx), c(tls) {}
    asio::ssl::context ctx;
    asio::ssl::stream<tcp::socket> tls;
    Client<asio::ssl::stream<tcp::socket>> c;
    std::string greeting, ehlo, auth;
  };
  std::unique_ptr<Submission> SignIn(const std::string& user = "alice@hosted.test",
                                     const std::string& password = "s3cret") {
    auto sub = std::make_unique<Submission>(Connect("submissions"), ClientTls());
    sub->tls.handshake(asio::ssl::stream_base::client);
    sub->greeting = sub->c.Reply();
    sub->ehlo = sub->c.Cmd("EHLO laptop");
    sub->auth = sub->c.Cmd("AUTH PLAIN " + Plain(user, password));
    return sub;
  }

  // One message over port 25 from 127.0.0.1; returns the reply to the
  // final dot (the message is sent as is: no line may start with '.').
  std::string SendMx(const std::string& helo, const std::string& mail_from,
                     const std::string& message) {
    std::unique_ptr<MxSession> mx = OpenMx(helo);
    Client<tcp::socket>& c = mx->c;
    std::string r = c.Cmd(absl::StrCat("MAIL FROM:<", mail_from, ">"));
    if (!absl::StartsWith(r, "250")) return r;
    r = c.Cmd("RCPT TO:<alice@hosted.test>");
    if (!absl::StartsWith(r, "250")) return r;
    r = c.Cmd("DATA");
    if (!absl::StartsWith(r, "354")) return r;
    c.Send(absl::StrCat(message, ".\r\n"));
    std::string reply = c.Reply();
    EXPECT_REPLY(c.Cmd("NOOP"), "250");  // the session goes on after a refusal
    return reply;
  }
  // One message over port 25 to `rcpt` from sender.example (SPF passes).
  std::string SendMxTo(const std::string& rcpt, const std::string& message) {
    std::unique_ptr<MxSession> mx = OpenMx();
    Client<tcp::socket>& c = mx->c;
    std::string r = c.Cmd("MAIL FROM:<x@sender.example>");
    if (!absl::StartsWith(r, "250")) return r;
    r = c.Cmd(absl::StrCat("RCPT TO:<", rcpt, ">"));
    if (!absl::StartsWith(r, "250")) return r;
    r = c.Cmd("DATA");
    if (!absl::StartsWith(r, "354")) return r;
    c.Send(absl::StrCat(message, ".\r\n"));
    return c.Reply();
  }
  // The stored copy of the n-th delivery (the fake keeps them all).
  mailstore::v1::DeliverBatchRequest Stored(size_t n) {
    absl::MutexLock l(&backend_->mu);
    return n < backend_->delivered.size() ? backend_->delivered[n]
                                          : mailstore::v1::DeliverBatchRequest();
  }
  // Publishes a fresh DKIM key for d=<domain>, s=sel and returns it.
  mailauth::DkimPrivateKey PublishKey(const std::string& domain) {
    mailauth::testing::TestKey k = mailauth::testing::MakeKey(/*ed25519=*/false, 2048);
    dns_->With([&](mailauth::MemoryResolver& d) { d.AddTxt("sel._domainkey." + domain, k.txt); });
    auto key = mailauth::DkimPrivateKey::FromPem(k.private_pem);
    EXPECT_TRUE(key.ok()) << key.status();
    return *std::move(key);
  }
  static std::string Sign(const std::string& message, const mailauth::DkimPrivateKey& key,
                          const std::string& domain) {
    mailauth::DkimSignOptions so;
    so.domain = domain;
    so.selector = "sel";
    auto sig = mailauth::DkimSign(message, key, so);
    EXPECT_TRUE(sig.ok()) << sig.status();
    return sig.ok() ? *sig + message : message;
  }

  TestPki pki_;
  asio::io_context io_;
  LockedResolver* dns_ = nullptr;  // owned by the app
  absl::Duration rcpt_cache_ttl_ = Options().rcpt_cache_ttl;
  absl::Duration rcpt_cache_foreign_ttl_ = Options().rcpt_cache_foreign_ttl;
  FakeBackend* backend_ = nullptr;
  std::unique_ptr<RelayApp> app_;
};

TEST_F(RelaySmtpTest, MxDeliversToHostedUserWithTraceFields) {
  std::unique_ptr<MxSession> mx = OpenMx("sender.example");
  Client<tcp::socket>& c = mx->c;
  EXPECT_REPLY(mx->greeting, "220 mx.mailgrid.test");
  const std::string& ehlo = mx->ehlo;
  EXPECT_NE(ehlo.find("STARTTLS"), std::string::npos);
  EXPECT_EQ(ehlo.find("AUTH"), std::string::npos) << "no AUTH on port 25";
  EXPECT_REPLY(c.Cmd("MAIL FROM:<x@sender.example>"), "250");
  EXPECT_REPLY(c.Cmd("RCPT TO:<alice@hosted.test>"), "250 2.1.5");
  EXPECT_REPLY(c.Cmd("RCPT TO:<bob@hosted.test>"), "250");
  EXPECT_REPLY(c.Cmd("DATA"), "354");
  c.Send("From: x@sender.example\r\nAuthentication-Results: mx.mailgrid.test; dkim=pass header.d=forged\r\n"
         "Subject: hi\r\n\r\nHello.\r\n.\r\n");
  EXPECT_REPLY(c.Reply(), "250 2.0.0 Ok: queued as");
  EXPECT_REPLY(c.Cmd("QUIT"), "221");
  ASSERT_EQ(backend_->Delivered(), 1u);
  const auto& req = backend_->delivered[0];
  ASSERT_EQ(req.recipients_size(), 2);
  EXPECT_EQ(req.recipients(0).mailbox_id(), "mbx-alice");
  EXPECT_EQ(req.recipients(1).mailbox_id(), "mbx-bob");
  const std::string& m = req.message();
  EXPECT_TRUE(absl::StartsWith(m, "Return-Path: <x@sender.example>\r\nReceived: from sender.example"))
      << m;
  EXPECT_NE(m.find("with ESMTP id"), std::string::npos) << m;
  // Ours, right after Received: libs/mailauth's verdicts.
  size_t ar = m.find("\r\nAuthentication-Results: mx.mailgrid.test;\r\n\tspf=pass");
  EXPECT_NE(ar, std::string::npos) << m;
  EXPECT_LT(ar, m.find("From: x@sender.example")) << m;
  EXPECT_NE(m.find("smtp.mailfrom=x@sender.example;"), std::string::npos) << m;
  EXPECT_NE(m.find("dkim=none;"), std::string::npos) << m;
  EXPECT_NE(m.find("dmarc=none"), std::string::npos) << m;
  EXPECT_FALSE(req.recipients(0).has_folder()) << "not quarantined: INBOX";
  EXPECT_EQ(m.find("forged"), std::string::npos) << "forged A-R under our name kept: " << m;
  EXPECT_NE(m.find("Subject: hi\r\n\r\nHello.\r\n"), std::string::npos);
  EXPECT_EQ(req.delivery_id().size(), 64u);
}

TEST_F(RelaySmtpTest, UnknownUsersAndOpenRelayProbesAreRefused) {
  std::unique_ptr<MxSession> mx = OpenMx("probe.example");
  Client<tcp::socket>& c = mx->c;
  EXPECT_REPLY(c.Cmd("MAIL FROM:<spammer@probe.example>"), "250");
  EXPECT_REPLY(c.Cmd("RCPT TO:<nobody@hosted.test>"), "550 5.1.1");
  EXPECT_REPLY(c.Cmd("RCPT TO:<victim@foreign.example>"), "550 5.7.1");
  EXPECT_REPLY(c.Cmd("RCPT TO:<victim%foreign.example@hosted.test>"), "550 5.7.1");
  EXPECT_REPLY(c.Cmd("RCPT TO:<@hosted.test:victim@foreign.example>"), "550 5.7.1");
  EXPECT_REPLY(c.Cmd("RCPT TO:<\"victim@foreign.example\"@hosted.test>"), "550 5.7.1");
  EXPECT_REPLY(c.Cmd("RCPT TO:<foreign.example!victim@hosted.test>"), "550 5.7.1");
  EXPECT_REPLY(c.Cmd("DATA"), "554");  // no valid recipients
  EXPECT_EQ(backend_->Delivered(), 0u);
}

TEST_F(RelaySmtpTest, SmugglingNeverProducesASecondMessage) {
  for (std::string_view fake_end : {"\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\n"}) {
    std::unique_ptr<MxSession> mx = OpenMx("smuggler.example");
    Client<tcp::socket>& c = mx->c;
    EXPECT_REPLY(c.Cmd("MAIL FROM:<a@smuggler.example>"), "250");
    EXPECT_REPLY(c.Cmd("RCPT TO:<alice@hosted.test>"), "250");
    EXPECT_REPLY(c.Cmd("DATA"), "354");
    c.Send(std::string("Subject: one\r\n\r\nfirst") + std::string(fake_end) +
           "MAIL FROM:<admin@hosted.test>\r\nRCPT TO:<bob@hosted.test>\r\nDATA\r\n"
           "Subject: smuggled\r\n\r\nsecond\r\n.\r\n");
    EXPECT_REPLY(c.Reply(), "550 5.5.2");
    EXPECT_REPLY(c.Cmd("NOOP"), "250");  // the session goes on, in sync
  }
  EXPECT_EQ(backend_->Delivered(), 0u);
}

TEST_F(RelaySmtpTest, OverSizeIs552AndNothingStored) {
  std::unique_ptr<MxSession> mx = OpenMx("big.example");
  Client<tcp::socket>& c = mx->c;
  EXPECT_REPLY(c.Cmd("MAIL FROM:<a@big.example> SIZE=999999999"), "552 5.3.4");
  EXPECT_REPLY(c.Cmd("MAIL FROM:<a@big.example>"), "250");
  EXPECT_REPLY(c.Cmd("RCPT TO:<alice@hosted.test>"), "250");
  EXPECT_REPLY(c.Cmd("DATA"), "354");
  std::string body = "Subject: big\r\n\r\n";
  while (body.size() < 100 * 1024) body += std::string(70, 'x') + "\r\n";
  c.Send(body + ".\r\n");
  EXPECT_REPLY(c.Reply(), "552 5.3.4");
  EXPECT_EQ(backend_->Delivered(), 0u);
}

TEST_F(RelaySmtpTest, StoreFailureIs451) {
  {
    absl::MutexLock l(&backend_->mu);
    backend_->deliver_error = absl::UnavailableError("no leader");
  }
  std::unique_ptr<MxSession> mx = OpenMx("a.example");
  Client<tcp::socket>& c = mx->c;
  c.Cmd("MAIL FROM:<a@a.example>");
  EXPECT_REPLY(c.Cmd("RCPT TO:<alice@hosted.test>"), "250");
  c.Cmd("DATA");
  EXPECT_REPLY(c.Cmd("Subject: x\r\n\r\nbody\r\n."), "451 4.3.0");
}

TEST_F(RelaySmtpTest, SubmissionNeedsTlsThenAuthThenOwnership) {
  tcp::socket raw = Connect("submission");
  Client<tcp::socket> c(raw);
  EXPECT_REPLY(c.Reply(), "220");
  std::string ehlo = c.Cmd("EHLO laptop");
  EXPECT_EQ(ehlo.find("AUTH"), std::string::npos) << "AUTH offered in clear: " << ehlo;
  EXPECT_REPLY(c.Cmd("AUTH PLAIN " + Plain("alice@hosted.test", "s3cret")), "5");
  EXPECT_REPLY(c.Cmd("MAIL FROM:<alice@hosted.test>"), "530");
  // STARTTLS with an injected command behind it (CVE-2011-0411).
  c.Send("STARTTLS\r\nRSET\r\n");
  EXPECT_REPLY(c.Reply(), "220");
  auto ctx = ClientTls();
  asio::ssl::stream<tcp::socket&> tls(raw, ctx);
  tls.handshake(asio::ssl::stream_base::client);
  Client<asio::ssl::stream<tcp::socket&>> t(tls);
  ehlo = t.Cmd("EHLO laptop");  // the injected RSET must not answer first
  EXPECT_REPLY(ehlo, "250-");
  EXPECT_NE(ehlo.find("AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER"), std::string::npos) << ehlo;
  EXPECT_REPLY(t.Cmd("AUTH PLAIN " + Plain("alice@hosted.test", "wrong")), "535 5.7.8");
  EXPECT_REPLY(t.Cmd("AUTH LOGIN"), "334");
  EXPECT_REPLY(t.Cmd(absl::Base64Escape("alice@hosted.test")), "334");
  EXPECT_REPLY(t.Cmd(absl::Base64Escape("s3cret")), "235 2.7.0");
  EXPECT_REPLY(t.Cmd("MAIL FROM:<bob@hosted.test>"), "553 5.7.1");
  EXPECT_REPLY(t.Cmd("MAIL FROM:<alice@hosted.test>"), "250");
  // No queue store in this fixture: remote delivery is temporarily refused.
  EXPECT_REPLY(t.Cmd("RCPT TO:<someone@foreign.example>"), "451 4.3.0");
  EXPECT_REPLY(t.Cmd("RCPT TO:<bob@hosted.test>"), "250");
  EXPECT_REPLY(t.Cmd("DATA"), "354");
  EXPECT_REPLY(t.Cmd("From: Bob <bob@hosted.test>\r\nSubject: spoof\r\n\r\nx\r\n."), "550 5.7.1");
  EXPECT_REPLY(t.Cmd("MAIL FROM:<alice@hosted.test>"), "250");
  EXPECT_REPLY(t.Cmd("RCPT TO:<bob@hosted.test>"), "250");
  EXPECT_REPLY(t.Cmd("DATA"), "354");
  EXPECT_REPLY(t.Cmd("From: Alice <alice@hosted.test>\r\nSubject: hi\r\n\r\nhello bob\r\n."),
               "250 2.0.0");
  ASSERT_EQ(backend_->Delivered(), 1u);
  const std::string& m = backend_->delivered[0].message();
  EXPECT_NE(m.find("with ESMTPSA id"), std::string::npos) << m;
  EXPECT_NE(m.find("auth=pass smtp.auth=alice@hosted.test"), std::string::npos) << m;
}

TEST_F(RelaySmtpTest, ImplicitTlsSubmissionAndRateLimit) {
  std::unique_ptr<Submission> sub = SignIn();
  auto& t = sub->c;
  EXPECT_REPLY(sub->greeting, "220");
  EXPECT_EQ(sub->ehlo.find("STARTTLS"), std::string::npos);
  EXPECT_REPLY(sub->auth, "235");
  {
    absl::MutexLock l(&backend_->mu);
    backend_->rate_error = absl::ResourceExhaustedError("limit");
  }
  EXPECT_REPLY(t.Cmd("MAIL FROM:<alice@hosted.test>"), "451 4.7.1");
}

// Speed (issue 8/9): one session sending many messages asks tenantd once
// for the sender (CanSendAs) and, within --rcpt-cache-ttl, once per
// recipient; unknown recipients are asked every time.
TEST_F(RelaySmtpTest, SessionRemembersItsSenderAndRcptAnswersAreReused) {
  {
    absl::MutexLock l(&backend_->mu);
    backend_->counts_submissions = false;  // no rate limiter: MAIL needs no worker
  }
  std::unique_ptr<Submission> sub = SignIn();
  auto& t = sub->c;
  EXPECT_REPLY(sub->greeting, "220");
  EXPECT_REPLY(sub->auth, "235");
  for (int i = 0; i < 3; ++i) {
    EXPECT_REPLY(t.Cmd("MAIL FROM:<alice@hosted.test>"), "250");
    EXPECT_REPLY(t.Cmd("RCPT TO:<bob@hosted.test>"), "250");
    EXPECT_REPLY(t.Cmd("RCPT TO:<nobody@hosted.test>"), "550 5.1.1");
    EXPECT_REPLY(t.Cmd("DATA"), "354");
    EXPECT_REPLY(t.Cmd(absl::StrCat("From: Alice <alice@hosted.test>\r\nSubject: ", i,
                                    "\r\n\r\nhello\r\n.")),
                 "250 2.0.0");
  }
  // Another sender is still checked (and refused).
  EXPECT_REPLY(t.Cmd("MAIL FROM:<bob@hosted.test>"), "553 5.7.1");
  ASSERT_EQ(backend_->Delivered(), 3u);
  absl::MutexLock l(&backend_->mu);
  // alice once at MAIL (the From: check is skipped: same address), bob once.
  EXPECT_EQ(backend_->can_send_as_calls, 2);
  // bob once (then cached: the test sends well within 200 ms of its
  // answer... unless the machine stalls, so at most once per message),
  // nobody every time.
  EXPECT_GE(backend_->resolve_calls, 3 + 1);
  EXPECT_LE(backend_->resolve_calls, 3 + 3);
}

// Speed (issue 9): with a rate limiter, a session far from its limits
// counts each message once, at DATA on the delivery's worker (no MAIL
// hand-off), and asks CanSendAs once for its sender; near a limit, or once
// refused, it counts at MAIL again. Every message is counted exactly once.
TEST_F(RelaySmtpTest, RateLimitIsCountedAtDataWhileFarFromTheLimit) {
  {
    absl::MutexLock l(&backend_->mu);
    backend_->rate_room = 1000;
  }
  std::unique_ptr<Submission> sub = SignIn();
  auto& t = sub->c;
  EXPECT_REPLY(sub->greeting, "220");
  EXPECT_REPLY(sub->auth, "235");
  auto send = [&](int i, const char* want) {
    EXPECT_REPLY(t.Cmd("MAIL FROM:<alice@hosted.test>"), "250");
    EXPECT_REPLY(t.Cmd("RCPT TO:<bob@hosted.test>"), "250");
    EXPECT_REPLY(t.Cmd("DATA"), "354");
    EXPECT_REPLY(t.Cmd(absl::StrCat("From: Alice <alice@hosted.test>\r\nSubject: ", i,
                                    "\r\n\r\nhello\r\n.")),
                 want);
  };
  for (int i = 0; i < 3; ++i) send(i, "250 2.0.0");
  {
    absl::MutexLock l(&backend_->mu);
    EXPECT_EQ(backend_->count_calls, 3);       // the first at MAIL, then at DATA
    EXPECT_EQ(backend_->can_send_as_calls, 1);  // alice, once for the session
    backend_->rate_error = absl::ResourceExhaustedError("limit");
  }
  // Over the limit, found at DATA: refused there, nothing stored.
  send(3, "451 4.7.1");
  EXPECT_EQ(backend_->Delivered(), 3u);
  // Refused once: the next MAIL counts (and is refused) at MAIL.
  EXPECT_REPLY(t.Cmd("MAIL FROM:<alice@hosted.test>"), "451 4.7.1");
  {
    absl::MutexLock l(&backend_->mu);
    EXPECT_EQ(backend_->count_calls, 5);
    backend_->rate_error = absl::OkStatus();
    backend_->rate_room = 3;  // near the limit: every MAIL counts
  }
  send(5, "250 2.0.0");
  send(6, "250 2.0.0");
  absl::MutexLock l(&backend_->mu);
  EXPECT_EQ(backend_->count_calls, 7);
  EXPECT_EQ(backend_->can_send_as_calls, 1);
}

TEST_F(RelaySmtpTest, ForeignDomainIsAskedOncePerDomainNotPerAddress) {
  // A long TTL so that the count below does not depend on the machine's
  // speed (issue 9: a burst to many remote addresses asks tenantd once).
  app_->Stop();
  app_.reset();
  rcpt_cache_ttl_ = absl::Minutes(10);
  rcpt_cache_foreign_ttl_ = absl::Minutes(10);
  StartApp(nullptr);
  std::unique_ptr<MxSession> mx = OpenMx();
  Client<tcp::socket>& c = mx->c;
  EXPECT_REPLY(mx->greeting, "220");
  EXPECT_REPLY(c.Cmd("MAIL FROM:<x@sender.example>"), "250");
  EXPECT_REPLY(c.Cmd("RCPT TO:<a@foreign.example>"), "550 5.7.1");
  EXPECT_REPLY(c.Cmd("RCPT TO:<b@Foreign.Example>"), "550 5.7.1");
  EXPECT_REPLY(c.Cmd("RCPT TO:<c@foreign.example>"), "550 5.7.1");
  EXPECT_REPLY(c.Cmd("RCPT TO:<a@other.example>"), "550 5.7.1");
  // A hosted domain is never answered from a foreign domain's entry, and
  // its unknown addresses are asked every time.
  EXPECT_REPLY(c.Cmd("RCPT TO:<bob@hosted.test>"), "250");
  EXPECT_REPLY(c.Cmd("RCPT TO:<nobody@hosted.test>"), "550 5.1.1");
  EXPECT_REPLY(c.Cmd("RCPT TO:<nobody@hosted.test>"), "550 5.1.1");
  absl::MutexLock l(&backend_->mu);
  // foreign.example once, other.example once, bob once, nobody twice.
  EXPECT_EQ(backend_->resolve_calls, 5);
}

// A client that pipelines its RCPTs (RFC 2920) has them resolved in one
// ResolveMany with the first; the others are answered from those answers
// (uncacheable ones too: an unknown address), each in order.
TEST_F(RelaySmtpTest, PipelinedRcptsAreResolvedInOneCall) {
  std::unique_ptr<MxSession> mx = OpenMx();
  Client<tcp::socket>& c = mx->c;
  EXPECT_REPLY(mx->greeting, "220");
  EXPECT_REPLY(mx->ehlo, "250");
  c.Send(
      "MAIL FROM:<x@sender.example>\r\nRCPT TO:<bob@hosted.test>\r\n"
      "RCPT TO:<nobody@hosted.test>\r\nRCPT TO:<alice@hosted.test>\r\n"
      "RCPT TO:<zed@foreign.example>\r\nDATA\r\n");
  EXPECT_REPLY(c.Reply(), "250");        // MAIL
  EXPECT_REPLY(c.Reply(), "250");        // bob
  EXPECT_REPLY(c.Reply(), "550 5.1.1");  // nobody
  EXPECT_REPLY(c.Reply(), "250");        // alice
  EXPECT_REPLY(c.Reply(), "550 5.7.1");  // not ours
  EXPECT_REPLY(c.Reply(), "354");
  EXPECT_REPLY(c.Cmd("From: x@sender.example\r\nSubject: hi\r\n\r\nhello\r\n."), "250 2.0.0");
  {
    absl::MutexLock l(&backend_->mu);
    EXPECT_EQ(backend_->resolve_many_calls, 1);
    EXPECT_EQ(backend_->resolve_many_requests, 4);
    EXPECT_EQ(backend_->resolve_calls, 4);  // the fake's ResolveMany: inside that one call only
    ASSERT_EQ(backend_->delivered.size(), 1u);
    EXPECT_EQ(backend_->delivered[0].recipients_size(), 2);
  }
  // Not pipelined: one RCPT at a time, nothing to batch.
  EXPECT_REPLY(c.Cmd("MAIL FROM:<x@sender.example>"), "250");
  EXPECT_REPLY(c.Cmd("RCPT TO:<nobody@hosted.test>"), "550 5.1.1");
  absl::MutexLock l(&backend_->mu);
  EXPECT_EQ(backend_->resolve_many_calls, 1);
  EXPECT_EQ(backend_->resolve_calls, 5);
}

// A session's blocking call may run on a loop thread (--smtp-inline-calls:
// one of the two loop threads here), never on all of them: while one
// session's delivery hangs inside its call, other sessions still get every
// reply and deliver (their calls go to the worker pool).
TEST_F(RelaySmtpTest, AHangingDeliveryLeavesTheLoopServingOthers) {
  absl::Notification hold;
  struct Release {  // never leave the held call behind, even on failure
    absl::Notification& n;
    ~Release() {
      if (!n.HasBeenNotified()) n.Notify();
    }
  } release{hold};
  backend_->hold = &hold;
  std::unique_ptr<MxSession> held = OpenMx();
  EXPECT_REPLY(held->c.Cmd("MAIL FROM:<x@sender.example>"), "250");
  EXPECT_REPLY(held->c.Cmd("RCPT TO:<alice@hosted.test>"), "250");
  EXPECT_REPLY(held->c.Cmd("DATA"), "354");
  held->c.Send("From: x@sender.example\r\nSubject: HOLD\r\n\r\nwait\r\n.\r\n");
  for (int i = 0; i < 3; ++i) {
    EXPECT_REPLY(SendMxTo("bob@hosted.test",
                          absl::StrCat("From: x@sender.example\r\nSubject: ", i, "\r\n\r\nhi\r\n")),
                 "250 2.0.0");
  }
  EXPECT_EQ(backend_->Delivered(), 3u);
  hold.Notify();
  EXPECT_REPLY(held->c.Reply(), "250 2.0.0");
  EXPECT_EQ(backend_->Delivered(), 4u);
  backend_->hold = nullptr;
}

TEST_F(RelaySmtpTest, ShutdownSays421) {
  std::unique_ptr<MxSession> mx = OpenMx("a.example");
  Client<tcp::socket>& c = mx->c;
  app_->Drain();
  EXPECT_REPLY(c.Reply(), "421 4.3.2");
}

TEST_F(RelaySmtpTest, SpfPassAndFailAreRecordedNotEnforced) {
  dns_->With([](mailauth::MemoryResolver& d) {
    d.AddTxt("strict.example", "v=spf1 ip4:192.0.2.0/24 -all");  // not loopback
  });
  EXPECT_REPLY(SendMx("mta.strict.example", "x@strict.example",
                      "From: x@strict.example\r\nSubject: spf fail\r\n\r\nbody\r\n"),
               "250 2.0.0");
  // Null sender: SPF checks the HELO identity (RFC 7208 §2.3).
  EXPECT_REPLY(
      SendMx("sender.example", "", "From: x@sender.example\r\nSubject: bounce\r\n\r\nb\r\n"),
      "250 2.0.0");
  ASSERT_EQ(backend_->Delivered(), 2u);
  std::string fail = Stored(0).message();
  EXPECT_NE(fail.find("spf=fail"), std::string::npos) << fail;
  EXPECT_NE(fail.find("smtp.mailfrom=x@strict.example"), std::string::npos) << fail;
  EXPECT_NE(fail.find("dmarc=none"), std::string::npos) << "no DMARC record: " << fail;
  EXPECT_FALSE(Stored(0).recipients(0).has_folder());
  std::string helo = Stored(1).message();
  EXPECT_NE(helo.find("spf=pass"), std::string::npos) << helo;
  EXPECT_NE(helo.find("smtp.helo=sender.example"), std::string::npos) << helo;
}

TEST_F(RelaySmtpTest, DkimSignedPassesAndTamperedFails) {
  mailauth::DkimPrivateKey key = PublishKey("signer.example");
  dns_->With([](mailauth::MemoryResolver& d) {
    d.AddTxt("_dmarc.signer.example", "v=DMARC1; p=none");  // monitor only
  });
  std::string msg =
      "From: Ann <ann@signer.example>\r\nTo: alice@hosted.test\r\nSubject: signed\r\n"
      "Message-ID: <1@signer.example>\r\n\r\nHello, signed world.\r\n";
  std::string good = Sign(msg, key, "signer.example");
  ASSERT_TRUE(absl::StartsWith(good, "DKIM-Signature:")) << good;
  // Sent through a mailing list host with no SPF: only DKIM can vouch.
  EXPECT_REPLY(SendMx("list.example", "bounces@list.example", good), "250 2.0.0");
  std::string tampered = good;
  tampered.replace(tampered.find("signed world"), 12, "forged world");
  EXPECT_REPLY(SendMx("list.example", "bounces@list.example", tampered), "250 2.0.0");
  ASSERT_EQ(backend_->Delivered(), 2u);
  std::string pass = Stored(0).message();
  EXPECT_NE(pass.find("dkim=pass header.d=signer.example header.s=sel"), std::string::npos) << pass;
  EXPECT_NE(pass.find("dmarc=pass"), std::string::npos) << pass;
  EXPECT_NE(pass.find("DKIM-Signature:"), std::string::npos) << "the signature is kept";
  std::string fail = Stored(1).message();
  EXPECT_NE(fail.find("dkim=fail"), std::string::npos) << fail;
  EXPECT_EQ(fail.find("dkim=pass"), std::string::npos) << fail;
  EXPECT_NE(fail.find("dmarc=fail"), std::string::npos) << fail;
  EXPECT_FALSE(Stored(1).recipients(0).has_folder()) << "p=none: INBOX";
}

TEST_F(RelaySmtpTest, DmarcRejectIs550AndNothingStored) {
  mailauth::DkimPrivateKey key = PublishKey("bank.example");
  dns_->With([](mailauth::MemoryResolver& d) {
    d.AddTxt("bank.example", "v=spf1 ip4:192.0.2.0/24 -all");
    d.AddTxt("_dmarc.bank.example", "v=DMARC1; p=reject");
  });
  std::string msg = "From: CEO <ceo@bank.example>\r\nSubject: wire now\r\n\r\nPay.\r\n";
  // SPF fails and nothing is signed: DMARC fails, the domain says reject.
  EXPECT_REPLY(SendMx("forger.example", "ceo@bank.example", msg), "550 5.7.1");
  EXPECT_EQ(backend_->Delivered(), 0u);
  // The bank's own signed mail, forwarded (SPF still fails): DKIM aligns.
  EXPECT_REPLY(SendMx("forwarder.example", "ceo@bank.example", Sign(msg, key, "bank.example")),
               "250 2.0.0");
  ASSERT_EQ(backend_->Delivered(), 1u);
  std::string m = Stored(0).message();
  EXPECT_NE(m.find("spf=fail"), std::string::npos) << m;
  EXPECT_NE(m.find("dkim=pass"), std::string::npos) << m;
  EXPECT_NE(m.find("dmarc=pass"), std::string::npos) << m;
}

TEST_F(RelaySmtpTest, DmarcQuarantineGoesToJunk) {
  dns_->With([](mailauth::MemoryResolver& d) {
    d.AddTxt("shop.example", "v=spf1 ip4:192.0.2.0/24 -all");
    d.AddTxt("_dmarc.shop.example", "v=DMARC1; p=quarantine");
  });
  EXPECT_REPLY(SendMx("forger.example", "orders@shop.example",
                      "From: orders@shop.example\r\nSubject: your invoice\r\n\r\nOpen it.\r\n"),
               "250 2.0.0");
  ASSERT_EQ(backend_->Delivered(), 1u);
  mailstore::v1::DeliverBatchRequest req = Stored(0);
  ASSERT_EQ(req.recipients_size(), 1);
  EXPECT_EQ(req.recipients(0).folder().special_use(), mailstore::v1::SPECIAL_USE_JUNK);
  EXPECT_NE(req.message().find("dmarc=fail"), std::string::npos) << req.message();
  EXPECT_NE(req.message().find("dis=QUARANTINE"), std::string::npos) << req.message();
}

TEST(CachingResolverTest, KeepsAnswersAndErrorsForTheirTtl) {
  auto mem = std::make_unique<mailauth::MemoryResolver>();
  mailauth::MemoryResolver* inner = mem.get();
  inner->AddTxt("a.example", "v=spf1 -all");
  inner->FailWith("down.example", mailauth::RrType::kTxt);
  CachingResolver::Options o;
  o.error_ttl = absl::ZeroDuration();  // errors are asked again at once
  CachingResolver cache(std::move(mem), o);
  for (int i = 0; i < 3; ++i) {
    mailauth::DnsResult r = cache.Lookup("A.example.", mailauth::RrType::kTxt);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.values, std::vector<std::string>{"v=spf1 -all"});
    EXPECT_TRUE(cache.Lookup("nx.example", mailauth::RrType::kTxt).empty());
    EXPECT_EQ(cache.Lookup("down.example", mailauth::RrType::kTxt).status,
              mailauth::DnsStatus::kTempError);
  }
  EXPECT_EQ(inner->queries(),
            (std::vector<std::string>{"TXT a.example", "TXT nx.example", "TXT down.example",
                                      "TXT down.example", "TXT down.example"}));
}

TEST(SaslTest, Parsers) {
  auto p = ParsePlain(std::string("\0alice@x\0pw", 11));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->authcid, "alice@x");
  EXPECT_EQ(p->password, "pw");
  EXPECT_FALSE(ParsePlain("alice").ok());
  EXPECT_FALSE(ParsePlain(std::string("\0\0pw", 4)).ok());
  auto x = ParseXoauth2("user=alice@x\x01" "auth=Bearer tok\x01\x01");
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x->authcid, "alice@x");
  EXPECT_EQ(x->bearer_token, "tok");
  auto o = ParseOauthBearer("n,a=alice@x,\x01host=h\x01" "auth=Bearer tok2\x01\x01");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->authzid, "alice@x");
  EXPECT_EQ(o->bearer_token, "tok2");
  EXPECT_FALSE(ParseOauthBearer("garbage").ok());
}

TEST(HeadersTest, StripAndFrom) {
  std::string m =
      "Authentication-Results: MX.mailgrid.test;\r\n dkim=pass\r\n"
      "Authentication-Results: other.example; spf=fail\r\n"
      "From: \"A\" <a@Example.COM>, b@c.d\r\n\r\n"
      "Authentication-Results: mx.mailgrid.test; in body\r\n";
  std::string s = StripForgedAuthResults(m, "mx.mailgrid.test");
  EXPECT_EQ(s,
            "Authentication-Results: other.example; spf=fail\r\n"
            "From: \"A\" <a@Example.COM>, b@c.d\r\n\r\n"
            "Authentication-Results: mx.mailgrid.test; in body\r\n");
  // A comment before the authserv-id does not hide a forgery (RFC 8601 §2.2).
  EXPECT_EQ(StripForgedAuthResults("Authentication-Results: (hi) mx.mailgrid.test; dkim=pass\r\n"
                                   "Subject: s\r\n\r\nb\r\n",
                                   "mx.mailgrid.test"),
            "Subject: s\r\n\r\nb\r\n");
  EXPECT_EQ(FromAddresses(m), (std::vector<std::string>{"a@example.com", "b@c.d"}));
  EXPECT_EQ(Sanitize("a(b)\r\n;c"), "a?b????c");
  EXPECT_NE(DeliveryId("a", {"b"}, "m"), DeliveryId("a", {"b"}, "m2"));
}

}  // namespace
}  // namespace mailgrid::relay

namespace mailgrid::relay {
namespace {

// Issue 9: an authenticated RCPT to a foreign domain is accepted once the
// queue store answers; at DATA the local copy goes to mailstored and the
// remote one is DKIM-signed with the From: domain's key and queued (one
// entry), and 250 names the queue entry.
TEST_F(RelaySmtpTest, RemoteSubmissionIsSignedAndQueued) {
  RestartWithQueue(::testing::TempDir() + "/relay-queue-" +
                   std::to_string(absl::ToUnixMicros(absl::Now())));
  mailauth::testing::TestKey k = mailauth::testing::MakeKey(/*ed25519=*/false, 2048);
  {
    absl::MutexLock l(&backend_->mu);
    tenant::v1::GetDkimSigningKeyResponse keys;
    auto* key = keys.add_keys();
    key->set_domain("hosted.test");
    key->set_selector("sel");
    key->set_algorithm(tenant::v1::DKIM_ALGORITHM_RSA_2048);
    key->set_private_key_pem(k.private_pem);
    backend_->dkim["hosted.test"] = keys;
  }

  std::unique_ptr<Submission> sub = SignIn();
  auto& t = sub->c;
  EXPECT_REPLY(sub->auth, "235");
  EXPECT_REPLY(t.Cmd("MAIL FROM:<alice@hosted.test>"), "250");
  EXPECT_REPLY(t.Cmd("RCPT TO:<someone@foreign.example>"), "250");
  EXPECT_REPLY(t.Cmd("RCPT TO:<other@foreign.example>"), "250");
  EXPECT_REPLY(t.Cmd("RCPT TO:<bob@hosted.test>"), "250");
  EXPECT_REPLY(t.Cmd("DATA"), "354");
  std::string reply = t.Cmd(
      "From: Alice <alice@hosted.test>\r\nTo: someone@foreign.example\r\nSubject: out\r\n"
      "\r\nhello world\r\n.");
  EXPECT_REPLY(reply, "250 2.0.0 Ok: queued as ");
  EXPECT_EQ(backend_->Delivered(), 1u);  // bob's copy

  outbound::Queue* q = app_->outbound()->queue();
  relay::v1::ListQueueRequest list;
  auto entries = q->ListQueue(list, "", absl::Now());
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->entries_size(), 1);
  const relay::v1::QueueEntry& e = entries->entries(0);
  EXPECT_NE(reply.find(e.queue_id()), std::string::npos) << reply;
  EXPECT_EQ(e.tenant_id(), "t1");
  EXPECT_EQ(e.envelope_from(), "alice@hosted.test");
  ASSERT_EQ(e.recipients_size(), 2);
  EXPECT_EQ(e.recipients(0).address(), "other@foreign.example");
  EXPECT_EQ(e.recipients(1).address(), "someone@foreign.example");
  auto body = q->ReadBody(e.queue_id());
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_TRUE(absl::StartsWith(*body, "DKIM-Signature: ")) << *body;
  EXPECT_NE(body->find("Received: from laptop"), std::string::npos) << *body;
  EXPECT_EQ(body->find("Return-Path:"), std::string::npos) << *body;
  // An independent check of the signature: mailauth's verifier with the
  // key published.
  mailauth::MemoryResolver pub;
  pub.AddTxt("sel._domainkey.hosted.test", k.txt);
  std::vector<mailauth::DkimVerdict> v = mailauth::DkimVerifyAll(*body, pub);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].result, mailauth::DkimResult::kPass) << v[0].reason;
  EXPECT_EQ(v[0].domain, "hosted.test");

  // A post to a MODERATED group is held (no copy delivered), not refused.
  {
    absl::MutexLock l(&backend_->mu);
    backend_->moderated_groups.insert("team@hosted.test");
  }
  EXPECT_REPLY(SendMxTo("team@hosted.test", "From: x@sender.example\r\nSubject: to the team\r\n\r\nhi\r\n"),
               "250 2.0.0");
  EXPECT_EQ(backend_->Delivered(), 1u);
  auto held = app_->outbound()->held()->List();
  ASSERT_TRUE(held.ok()) << held.status();
  ASSERT_EQ(held->size(), 1u);
  EXPECT_EQ((*held)[0].held.group_address(), "team@hosted.test");
  EXPECT_EQ((*held)[0].moderators, std::vector<std::string>{"u-mod"});
  auto he = q->GetQueueEntry((*held)[0].held.queue_id(), "", absl::Now());
  ASSERT_TRUE(he.ok()) << he.status();
  EXPECT_EQ(he->state(), relay::v1::QUEUE_STATE_HELD);

  // Unauthenticated: still no relay.
  std::unique_ptr<MxSession> mx = OpenMx("probe");
  EXPECT_REPLY(mx->c.Cmd("MAIL FROM:<x@foreign.example>"), "250");
  EXPECT_REPLY(mx->c.Cmd("RCPT TO:<someone@foreign.example>"), "550 5.7.1");
}

// ---- Issue 8: one local recipient fails at delivery time ----------------------

// A fixture variant with a LocalStore queue (remote delivery and holds on).
class RelayPolicyTest : public RelaySmtpTest {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/relay-policy-" + std::to_string(absl::ToUnixMicros(absl::Now()));
    RestartWithQueue(dir_);
    backend_->mailboxes["boss@hosted.test"] = "mbx-boss";
  }
  void TearDown() override {
    RelaySmtpTest::TearDown();
    std::filesystem::remove_all(dir_);
  }
  // One submission by alice over 465; the reply to the final dot.
  std::string SubmitAsAlice(const std::vector<std::string>& rcpts, const std::string& message,
                            const std::string& rcpt_params = "") {
    std::unique_ptr<Submission> sub = SignIn();
    auto& t = sub->c;
    if (!absl::StartsWith(sub->auth, "235")) return sub->auth;
    std::string r = t.Cmd("MAIL FROM:<alice@hosted.test>");
    if (!absl::StartsWith(r, "250")) return r;
    for (const std::string& rc : rcpts) {
      r = t.Cmd(absl::StrCat("RCPT TO:<", rc, ">", rcpt_params));
      if (!absl::StartsWith(r, "250")) return r;
    }
    r = t.Cmd("DATA");
    if (!absl::StartsWith(r, "354")) return r;
    return t.Cmd(message + "\r\n.");
  }
  std::vector<relay::v1::QueueEntry> Queue() {
    auto l = app_->outbound()->queue()->ListQueue({}, "", absl::Now());
    EXPECT_TRUE(l.ok()) << l.status();
    return l.ok() ? std::vector<relay::v1::QueueEntry>(l->entries().begin(), l->entries().end())
                  : std::vector<relay::v1::QueueEntry>{};
  }
  std::string dir_;
};

TEST_F(RelayPolicyTest, OneRecipientOverQuotaGetsADsnOthersTheMessage) {
  {
    absl::MutexLock l(&backend_->mu);
    backend_->full.insert("mbx-bob");
  }
  // MX: alice gets it, the remote sender gets a failure DSN (queued).
  std::unique_ptr<MxSession> mx = OpenMx();
  Client<tcp::socket>& c = mx->c;
  EXPECT_REPLY(c.Cmd("MAIL FROM:<x@sender.example>"), "250");
  EXPECT_REPLY(c.Cmd("RCPT TO:<alice@hosted.test>"), "250");
  // ORCPT (RFC 3461 §4.2, xtext: "+2B" is '+'): reported as Original-Recipient.
  EXPECT_REPLY(c.Cmd("RCPT TO:<bob@hosted.test> ORCPT=rfc822;Bob+2Blist@hosted.test"), "250");
  EXPECT_REPLY(c.Cmd("DATA"), "354");
  EXPECT_REPLY(c.Cmd("From: x@sender.example\r\nSubject: for both\r\n\r\nhello\r\n."), "250 2.0.0");
  ASSERT_EQ(backend_->Delivered(), 1u);
  EXPECT_EQ(Stored(0).recipients_size(), 2);  // asked for both, stored for alice
  std::vector<relay::v1::QueueEntry> q = Queue();
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].envelope_from(), "");  // a DSN: null sender, never bounced back
  ASSERT_EQ(q[0].recipients_size(), 1);
  EXPECT_EQ(q[0].recipients(0).address(), "x@sender.example");
  auto dsn = app_->outbound()->queue()->ReadBody(q[0].queue_id());
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  EXPECT_NE(dsn->find("multipart/report"), std::string::npos) << *dsn;
  EXPECT_NE(dsn->find("report-type=delivery-status"), std::string::npos) << *dsn;
  EXPECT_NE(dsn->find("Final-Recipient: rfc822; bob@hosted.test"), std::string::npos) << *dsn;
  // RFC 3464 §2.3.1: Original-Recipient, before the recipient's Final-Recipient.
  EXPECT_NE(dsn->find("\r\nOriginal-Recipient: rfc822;Bob+list@hosted.test\r\n"
                      "Final-Recipient: rfc822; bob@hosted.test\r\n"),
            std::string::npos)
      << *dsn;
  EXPECT_EQ(dsn->find("Final-Recipient: rfc822; alice@hosted.test"), std::string::npos) << *dsn;
  EXPECT_NE(dsn->find("Action: failed"), std::string::npos) << *dsn;
  EXPECT_NE(dsn->find("Status: 5.2.2"), std::string::npos) << *dsn;
  EXPECT_NE(dsn->find("Subject: for both"), std::string::npos) << "original headers: " << *dsn;

  // NOTIFY=NEVER (RFC 3461): no DSN.
  EXPECT_REPLY(c.Cmd("MAIL FROM:<x@sender.example>"), "250");
  EXPECT_REPLY(c.Cmd("RCPT TO:<alice@hosted.test>"), "250");
  EXPECT_REPLY(c.Cmd("RCPT TO:<bob@hosted.test> NOTIFY=NEVER"), "250");
  EXPECT_REPLY(c.Cmd("DATA"), "354");
  EXPECT_REPLY(c.Cmd("From: x@sender.example\r\nSubject: again\r\n\r\nhello\r\n."), "250 2.0.0");
  EXPECT_EQ(Queue().size(), 1u);

  // Everyone failing is still refused at DATA (no DSN: the client has it).
  EXPECT_REPLY(c.Cmd("MAIL FROM:<x@sender.example>"), "250");
  EXPECT_REPLY(c.Cmd("RCPT TO:<bob@hosted.test>"), "250");
  EXPECT_REPLY(c.Cmd("DATA"), "354");
  EXPECT_REPLY(c.Cmd("From: x@sender.example\r\nSubject: bob only\r\n\r\nhello\r\n."), "552 5.2.2");
  EXPECT_EQ(Queue().size(), 1u);

  // A local sender gets the DSN in their mailbox at once.
  size_t before = backend_->Delivered();
  EXPECT_REPLY(SubmitAsAlice({"alice@hosted.test", "bob@hosted.test"},
                             "From: alice@hosted.test\r\nSubject: note to self and bob\r\n\r\nx"),
               "250 2.0.0");
  ASSERT_EQ(backend_->Delivered(), before + 2);
  mailstore::v1::DeliverBatchRequest report = Stored(before + 1);
  ASSERT_EQ(report.recipients_size(), 1);
  EXPECT_EQ(report.recipients(0).mailbox_id(), "mbx-alice");
  EXPECT_TRUE(absl::StartsWith(report.message(), "Return-Path: <>")) << report.message();
  EXPECT_NE(report.message().find("Final-Recipient: rfc822; bob@hosted.test"), std::string::npos);
}

// ---- Mail audit ---------------------------------------------------------------------

TEST_F(RelayPolicyTest, AuditHoldsMatchingSubmissionsUntilDecided) {
  {
    absl::MutexLock l(&backend_->mu);
    tenant::v1::AuditPolicy p;
    p.set_tenant_id("t1");
    p.set_enabled(true);
    p.set_version(3);
    auto* r = p.add_rules();
    r->set_rule_id("ar-kw");
    r->set_name("secrets");
    r->set_enabled(true);
    r->add_keywords("confidential");
    auto* d = p.add_rules();
    d->set_rule_id("ar-dept");
    d->set_enabled(true);
    d->add_sender_department_ids("d-sales");
    d->set_has_attachment(true);
    auto* off = p.add_rules();
    off->set_rule_id("ar-off");
    off->set_enabled(false);  // would match everything
    backend_->audit_policy = p;
    backend_->user_departments["u-alice@hosted.test"] = {"d-east"};
    backend_->department_parent["d-east"] = "d-sales";
  }
  // Not matching: delivered as usual ("classified" is not the keyword; no
  // attachment for the department rule).
  EXPECT_REPLY(SubmitAsAlice({"bob@hosted.test"},
                             "From: alice@hosted.test\r\nSubject: unclassified\r\n\r\nhi"),
               "250 2.0.0");
  EXPECT_EQ(backend_->Delivered(), 1u);
  // The keyword in the body: held, local and remote recipients alike.
  std::string reply = SubmitAsAlice(
      {"bob@hosted.test", "partner@foreign.example"},
      "From: alice@hosted.test\r\nSubject: plans\r\n\r\nThis is Confidential, do not share.");
  EXPECT_REPLY(reply, "250 2.0.0");
  EXPECT_NE(reply.find("held for review"), std::string::npos) << reply;
  EXPECT_EQ(backend_->Delivered(), 1u) << "nothing delivered while held";
  // An attachment from a sub-department of Sales: held by the other rule.
  EXPECT_REPLY(SubmitAsAlice({"bob@hosted.test"},
                             "From: alice@hosted.test\r\nSubject: figures\r\nMIME-Version: 1.0\r\n"
                             "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                             "Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
                             "Content-Type: application/pdf\r\nContent-Disposition: attachment; "
                             "filename=q3.pdf\r\n\r\nJVBERi0=\r\n--b--"),
               "250 2.0.0");
  EXPECT_EQ(backend_->Delivered(), 1u);

  std::vector<relay::v1::QueueEntry> q = Queue();
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].state(), relay::v1::QUEUE_STATE_HELD);
  EXPECT_EQ(q[0].hold_reason(), "audit");
  ASSERT_EQ(q[0].recipients_size(), 2);
  auto held = app_->outbound()->held()->List();
  ASSERT_TRUE(held.ok()) << held.status();
  ASSERT_EQ(held->size(), 2u);
  const relay::v1::HeldMessage& first = (*held)[0].held;
  EXPECT_EQ(first.kind(), relay::v1::HOLD_KIND_AUDIT);
  EXPECT_EQ(first.state(), relay::v1::HELD_STATE_HELD);
  EXPECT_EQ(first.sender().address(), "alice@hosted.test");
  EXPECT_EQ(first.subject(), "plans");
  ASSERT_EQ(first.matched_rules_size(), 1);
  EXPECT_EQ(first.matched_rules(0).rule_id(), "ar-kw");
  EXPECT_GT(first.expires_at().seconds(), absl::ToUnixSeconds(absl::Now() + absl::Hours(24 * 6)));
  const relay::v1::HeldMessage& second = (*held)[1].held;
  ASSERT_EQ(second.matched_rules_size(), 1);
  EXPECT_EQ(second.matched_rules(0).rule_id(), "ar-dept");
  ASSERT_EQ(second.attachment_names_size(), 1);
  EXPECT_EQ(second.attachment_names(0), "q3.pdf");

  // Approved: due now, recipients intact (a runner delivers it).
  common::v1::Actor auditor;
  auditor.set_user_id("u-auditor");
  auto approved = app_->audit()->Decide(first.held_id(), true, "fine", auditor);
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->state(), relay::v1::HELD_STATE_APPROVED);
  auto due = app_->outbound()->queue()->DueIds(absl::Now() + absl::Seconds(1), 10);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0], first.queue_id());
  EXPECT_EQ(app_->audit()->Decide(first.held_id(), false, "no", auditor).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Rejected: gone from the queue; alice is told why, in her mailbox.
  auto rejected = app_->audit()->Decide(second.held_id(), false, "no customer data by mail", auditor);
  ASSERT_TRUE(rejected.ok()) << rejected.status();
  EXPECT_EQ(rejected->state(), relay::v1::HELD_STATE_REJECTED);
  EXPECT_EQ(Queue().size(), 1u);
  ASSERT_EQ(backend_->Delivered(), 2u);
  mailstore::v1::DeliverBatchRequest notice = Stored(1);
  EXPECT_EQ(notice.recipients(0).mailbox_id(), "mbx-alice");
  EXPECT_NE(notice.message().find("Reason: no customer data by mail"), std::string::npos)
      << notice.message();
  // Every step is in the tenant's admin audit log.
  absl::MutexLock l(&backend_->mu);
  std::vector<std::string> actions;
  for (const auto& e : backend_->audit_log) actions.push_back(e.action());
  EXPECT_EQ(actions, (std::vector<std::string>{"mail.held.hold", "mail.held.hold",
                                                "mail.held.approve", "mail.held.reject"}));
}

TEST_F(RelayPolicyTest, HeldMailExpiresPerPolicy) {
  {
    absl::MutexLock l(&backend_->mu);
    tenant::v1::AuditPolicy p;
    p.set_enabled(true);
    p.mutable_hold_expiry()->set_seconds(3600);
    auto* r = p.add_rules();
    r->set_rule_id("ar-all");
    r->set_enabled(true);  // no condition: every submission
    backend_->audit_policy = p;
  }
  EXPECT_REPLY(SubmitAsAlice({"bob@hosted.test"}, "From: alice@hosted.test\r\nSubject: a\r\n\r\nx"),
               "250 2.0.0");
  auto held = app_->outbound()->held()->List();
  ASSERT_TRUE(held.ok());
  ASSERT_EQ(held->size(), 1u);
  const std::string id = (*held)[0].held.held_id();
  EXPECT_EQ(app_->audit()->Sweep(absl::Now()), 0);  // not yet
  // Past the hour: the default (REJECT) applies, alice is told.
  EXPECT_EQ(app_->audit()->Sweep(absl::Now() + absl::Hours(2)), 1);
  auto rec = app_->outbound()->held()->Get(id);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->held.state(), relay::v1::HELD_STATE_EXPIRED);
  EXPECT_TRUE(Queue().empty());
  ASSERT_EQ(backend_->Delivered(), 1u);
  EXPECT_NE(Stored(0).message().find("not approved before the hold expired"), std::string::npos);
  // RELEASE: the next one is sent when its hold expires.
  tenant::v1::AuditPolicy keep;
  {
    absl::MutexLock l(&backend_->mu);
    keep = *backend_->audit_policy;
  }
  keep.set_on_expiry(tenant::v1::HELD_EXPIRY_ACTION_RELEASE);
  app_->Stop();  // a fresh policy cache (the fake backend goes with the app)
  app_.reset();
  auto reopened = store::LocalStore::Open(dir_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  StartApp(std::move(*reopened));
  {
    absl::MutexLock l(&backend_->mu);
    backend_->audit_policy = keep;
  }
  for (int i = 0; i < 600 && !app_->outbound()->available(); ++i) absl::SleepFor(absl::Milliseconds(50));
  EXPECT_REPLY(SubmitAsAlice({"bob@hosted.test"}, "From: alice@hosted.test\r\nSubject: b\r\n\r\nx"),
               "250 2.0.0");
  EXPECT_EQ(app_->audit()->Sweep(absl::Now() + absl::Hours(2)), 1);
  std::vector<relay::v1::QueueEntry> q = Queue();
  ASSERT_EQ(q.size(), 1u);
  EXPECT_NE(q[0].state(), relay::v1::QUEUE_STATE_HELD);  // released: due
  EXPECT_EQ(backend_->Delivered(), 0u) << "no notice when released";
}

// ---- Monitoring copies --------------------------------------------------------------

TEST_F(RelayPolicyTest, MonitoredMailIsCopiedToTheSupervisor) {
  {
    absl::MutexLock l(&backend_->mu);
    tenant::v1::MonitoringPolicy p;
    auto* in = p.add_rules();
    in->set_rule_id("mr-bob");
    in->set_name("case 42");
    in->set_enabled(true);
    in->add_monitored_user_ids("u-bob@hosted.test");
    in->set_direction(tenant::v1::MONITOR_DIRECTION_INCOMING);
    in->set_supervisor_address("boss@hosted.test");
    in->set_justification("legal hold 42");
    auto* out = p.add_rules();
    out->set_rule_id("mr-sales");
    out->set_enabled(true);
    out->add_monitored_department_ids("d-sales");
    out->set_direction(tenant::v1::MONITOR_DIRECTION_OUTGOING);
    out->set_supervisor_address("boss@hosted.test");
    backend_->monitoring_policy = p;
    backend_->user_departments["u-alice@hosted.test"] = {"d-east"};
    backend_->department_parent["d-east"] = "d-sales";
  }
  // Incoming mail of bob: bob's copy, then the supervisor's.
  EXPECT_REPLY(SendMxTo("bob@hosted.test", "From: x@sender.example\r\nSubject: to bob\r\n\r\nhi\r\n"),
               "250 2.0.0");
  ASSERT_EQ(backend_->Delivered(), 2u);
  EXPECT_EQ(Stored(0).recipients(0).mailbox_id(), "mbx-bob");
  mailstore::v1::DeliverBatchRequest copy = Stored(1);
  ASSERT_EQ(copy.recipients_size(), 1);
  EXPECT_EQ(copy.recipients(0).mailbox_id(), "mbx-boss");
  EXPECT_EQ(copy.delivery_id(), Stored(0).delivery_id() + "/monitor");
  EXPECT_TRUE(absl::StartsWith(copy.message(),
                               "X-Mailgrid-Monitor: rule=mr-bob; user=bob@hosted.test; "
                               "direction=incoming (case 42)\r\n"))
      << copy.message();
  EXPECT_NE(copy.message().find("Subject: to bob"), std::string::npos);
  // Incoming mail of alice: not monitored in that direction.
  EXPECT_REPLY(SendMxTo("alice@hosted.test", "From: x@sender.example\r\nSubject: to alice\r\n\r\nhi\r\n"),
               "250 2.0.0");
  EXPECT_EQ(backend_->Delivered(), 3u);
  // Alice (Sales/East) writes to bob: her outgoing and his incoming copy
  // are ONE copy for the one supervisor, naming both rules.
  EXPECT_REPLY(SubmitAsAlice({"bob@hosted.test"},
                             "From: alice@hosted.test\r\nSubject: hello bob\r\n\r\nx"),
               "250 2.0.0");
  ASSERT_EQ(backend_->Delivered(), 5u);
  copy = Stored(4);
  EXPECT_EQ(copy.recipients(0).mailbox_id(), "mbx-boss");
  EXPECT_NE(copy.message().find("rule=mr-bob; user=bob@hosted.test; direction=incoming"),
            std::string::npos) << copy.message();
  EXPECT_NE(copy.message().find("rule=mr-sales; user=alice@hosted.test; direction=outgoing"),
            std::string::npos) << copy.message();
  absl::MutexLock l(&backend_->mu);
  int recorded = 0;
  for (const auto& e : backend_->audit_log) {
    if (e.action() != "mail.monitor.copy") continue;
    ++recorded;
    EXPECT_EQ(e.tenant_id(), "t1");
  }
  EXPECT_EQ(recorded, 3);  // one per rule and party copied
}

}  // namespace
}  // namespace mailgrid::relay
