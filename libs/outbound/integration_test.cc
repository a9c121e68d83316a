// End to end against real peers: Postfix's smtp-sink receiving our mail and
// a real dnsmasq answering the MX, both on free loopback ports; the queue on
// a LocalStore. Skips when smtp-sink or dnsmasq is not installed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/mailauth/cares_resolver.h"
#include "libs/outbound/runner.h"
#include "libs/outbound/test_util.h"

extern char** environ;

namespace mailgrid::outbound {
namespace {

namespace fs = std::filesystem;

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

bool CanConnect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Polls `pred` every 50 ms for up to two minutes (generous: shared machine).
template <typename F>
bool Eventually(F pred) {
  for (int i = 0; i < 2400; ++i) {
    if (pred()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return pred();
}

class Process {
 public:
  Process(std::vector<std::string> argv, const std::string& log) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Process() { Stop(); }
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  bool Running() const { return pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0; }

 private:
  pid_t pid_ = -1;
};

class OutboundIntegration : public ::testing::Test {
 protected:
  static constexpr const char* kSink = "/usr/sbin/smtp-sink";
  static constexpr const char* kDnsmasq = "/usr/sbin/dnsmasq";

  void SetUp() override {
    // Required, not optional: tools/packages.txt installs both (postfix, dnsmasq).
    ASSERT_TRUE(fs::exists(kSink) && fs::exists(kDnsmasq)) << "smtp-sink (postfix) or dnsmasq missing";
    dir_ = ::testing::TempDir() + "/outbound_integ_" + std::to_string(getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_ + "/dump");
    // smtp-sink drops to `nobody` when started as root; it must write here.
    chmod((dir_ + "/dump").c_str(), 0777);
    dns_port_ = FreePort();
    smtp_port_ = FreePort();
    std::string log = dir_ + "/dnsmasq.log";
    std::vector<std::string> argv = {kDnsmasq,
                                     absl::StrCat("--port=", dns_port_),
                                     "--listen-address=127.0.0.1",
                                     "--bind-interfaces",
                                     "--no-resolv",
                                     "--no-hosts",
                                     "--keep-in-foreground",
                                     "--conf-file=/dev/null",
                                     "--log-facility=-",
                                     "--pid-file=",
                                     "--local=/test/",
                                     "--mx-host=dest.test,mx.dest.test,10",
                                     "--mx-host=sender.test,mx.dest.test,10",
                                     "--host-record=mx.dest.test,127.0.0.1"};
    if (geteuid() == 0) argv.push_back("--user=root");
    dnsmasq_ = std::make_unique<Process>(argv, log);
    ASSERT_TRUE(Eventually([&] { return absl::StrContains(ReadFile(log), "started"); }))
        << ReadFile(log);
    store_ = testing::FreshStore(::testing::UnitTest::GetInstance()->current_test_info()->name());
    QueueOptions qopts;
    qopts.retry.initial_backoff = absl::Seconds(1);
    qopts.lease_duration = absl::Seconds(3);
    queue_ = std::make_unique<Queue>(store_.get(), qopts);
    resolver_ = std::make_unique<mailauth::CaresResolver>(absl::StrCat("127.0.0.1:", dns_port_));
    DeliveryOptions dopts;
    dopts.helo_name = "relay.mailgrid.test";
    dopts.mx_port = static_cast<uint16_t>(smtp_port_);
    dopts.timeouts.greeting = absl::Seconds(30);
    transport_ = std::make_unique<SmtpTransport>(dopts, resolver_.get(), &routes_);
    RunnerOptions ropts;
    ropts.holder = "runner-b";
    ropts.reporting_mta = "relay.mailgrid.test";
    runner_ = std::make_unique<QueueRunner>(queue_.get(), transport_.get(), ropts);
  }

  void TearDown() override {
    sink_.reset();
    dnsmasq_.reset();
  }

  // (Re)starts smtp-sink; `extra` e.g. {"-r", "RCPT"} (4xx) or {"-f", "RCPT"} (5xx).
  void StartSink(std::vector<std::string> extra = {}) {
    sink_.reset();
    std::vector<std::string> argv = {kSink};
    if (geteuid() == 0) argv.insert(argv.end(), {"-u", "nobody"});
    argv.insert(argv.end(), {"-d", dir_ + "/dump/%M."});
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(absl::StrCat("127.0.0.1:", smtp_port_));
    argv.push_back("10");
    sink_ = std::make_unique<Process>(argv, dir_ + "/sink.log");
    ASSERT_TRUE(Eventually([&] { return CanConnect(smtp_port_); })) << ReadFile(dir_ + "/sink.log");
  }

  // Messages the sink stored that contain `needle`.
  std::vector<std::string> Received(const std::string& needle) {
    std::vector<std::string> out;
    for (const auto& f : fs::directory_iterator(dir_ + "/dump")) {
      std::string m = ReadFile(f.path());
      if (absl::StrContains(m, needle)) out.push_back(m);
    }
    return out;
  }

  std::string Enqueue(const std::string& token, std::string from = "alice@sender.test") {
    NewMessage m{"t1",
                 std::move(from),
                 {"bob@dest.test", "carol@dest.test"},
                 absl::StrCat("From: alice@sender.test\r\nTo: bob@dest.test\r\nSubject: ", token,
                              "\r\nMessage-ID: <", token,
                              "@sender.test>\r\n\r\nHello.\r\n"
                              ".a line with a leading dot\r\n")};
    auto id = queue_->Enqueue(m, absl::Now());
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : "";
  }

  bool Gone(const std::string& id) {
    return absl::IsNotFound(queue_->GetQueueEntry(id, "", absl::Now()).status());
  }

  // Runs the runner until `pred` holds.
  template <typename F>
  bool RunUntil(F pred) {
    return Eventually([&] {
      runner_->RunOnce(absl::Now());
      return pred();
    });
  }

  std::string dir_;
  int dns_port_ = 0, smtp_port_ = 0;
  std::unique_ptr<Process> dnsmasq_, sink_;
  std::unique_ptr<store::LocalStore> store_;
  std::unique_ptr<Queue> queue_;
  std::unique_ptr<mailauth::CaresResolver> resolver_;
  RouteTable routes_;
  std::unique_ptr<SmtpTransport> transport_;
  std::unique_ptr<QueueRunner> runner_;
};

TEST_F(OutboundIntegration, DeliversThroughTheMxFoundInDns) {
  StartSink();
  std::string id = Enqueue("token-delivered");
  ASSERT_TRUE(RunUntil([&] { return Gone(id); }));
  auto got = Received("token-delivered");
  ASSERT_EQ(got.size(), 1u);  // one transaction, both recipients
  EXPECT_TRUE(absl::StrContains(got[0], "X-Rcpt-Args: <bob@dest.test>"));
  EXPECT_TRUE(absl::StrContains(got[0], "X-Rcpt-Args: <carol@dest.test>"));
  EXPECT_TRUE(absl::StrContains(got[0], "X-Mail-Args: <alice@sender.test>"));
  EXPECT_TRUE(absl::StrContains(got[0], "X-Helo-Args: relay.mailgrid.test"));
  // Dot-stuffing undone by the peer: the body arrives as written.
  EXPECT_TRUE(absl::StrContains(got[0], "\n.a line with a leading dot"));
  EXPECT_FALSE(absl::StrContains(got[0], "\n..a line"));
}

TEST_F(OutboundIntegration, TemporaryFailureDefersThenDelivers) {
  StartSink({"-r", "RCPT"});
  std::string id = Enqueue("token-deferred");
  RunStats s = runner_->RunOnce(absl::Now());
  EXPECT_EQ(s.deferred, 2);
  auto e = queue_->GetQueueEntry(id, "", absl::Now());
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->state(), relay::v1::QUEUE_STATE_DEFERRED);
  EXPECT_EQ(e->recipients(0).state(), relay::v1::RECIPIENT_STATE_DEFERRED);
  EXPECT_GE(e->recipients(0).last_reply().code(), 400u);
  EXPECT_LT(e->recipients(0).last_reply().code(), 500u);
  EXPECT_TRUE(absl::StrContains(e->recipients(0).last_reply().remote_host(), "127.0.0.1"));
  EXPECT_TRUE(Received("token-deferred").empty());
  // The peer recovers; the backoff (1 s in this test) brings it back.
  StartSink();
  ASSERT_TRUE(RunUntil([&] { return Gone(id); }));
  EXPECT_EQ(Received("token-deferred").size(), 1u);
}

TEST_F(OutboundIntegration, PermanentFailureSendsDsnToSender) {
  StartSink({"-f", "RCPT"});
  std::string id = Enqueue("token-bounced");
  RunStats s = runner_->RunOnce(absl::Now());
  EXPECT_EQ(s.bounced, 2);
  EXPECT_EQ(s.dsns, 1);
  EXPECT_TRUE(Gone(id));
  StartSink();  // the sender's MX (same sink) takes the DSN
  ASSERT_TRUE(
      RunUntil([&] { return !Received("Final-Recipient: rfc822; bob@dest.test").empty(); }));
  auto dsn = Received("Final-Recipient: rfc822; bob@dest.test");
  ASSERT_EQ(dsn.size(), 1u);
  EXPECT_TRUE(absl::StrContains(dsn[0], "X-Mail-Args: <>"));  // null sender
  EXPECT_TRUE(absl::StrContains(dsn[0], "X-Rcpt-Args: <alice@sender.test>"));
  EXPECT_TRUE(absl::StrContains(dsn[0], "report-type=delivery-status"));
  EXPECT_TRUE(absl::StrContains(dsn[0], "Action: failed"));
  EXPECT_TRUE(absl::StrContains(dsn[0], "Status: 5."));
  EXPECT_TRUE(absl::StrContains(dsn[0], "Subject: token-bounced"));  // original headers
  EXPECT_FALSE(absl::StrContains(dsn[0], "Hello."));                 // headers only, never the body
}

TEST_F(OutboundIntegration, NullSenderBounceIsDropped) {
  StartSink({"-f", "RCPT"});
  std::string id = Enqueue("token-null", "");
  RunStats s = runner_->RunOnce(absl::Now());
  EXPECT_EQ(s.bounced, 2);
  EXPECT_EQ(s.dsns, 0);
  EXPECT_TRUE(Gone(id));
  EXPECT_TRUE(queue_->DueIds(absl::Now() + absl::Hours(1000), 10)->empty());
}

TEST_F(OutboundIntegration, CrashedRunnersLeaseIsTakenOverAndDeliveredOnce) {
  StartSink();
  std::string id = Enqueue("token-crash");
  // Runner A takes the lease and "crashes": it never completes.
  auto a = queue_->TryLease(id, "runner-a", absl::Now());
  ASSERT_TRUE(a.ok()) << a.status();
  // Runner B cannot take it while the lease holds...
  EXPECT_EQ(runner_->RunOnce(absl::Now()).leased, 0);
  EXPECT_TRUE(Received("token-crash").empty());
  // ...and delivers it once the lease expired (3 s here).
  ASSERT_TRUE(RunUntil([&] { return Gone(id); }));
  EXPECT_EQ(Received("token-crash").size(), 1u);
  // A waking up late cannot record anything.
  RecipientOutcome late{"bob@dest.test", RecipientOutcome::Kind::kDelivered, {}};
  EXPECT_TRUE(absl::IsAborted(queue_->Complete(*a, {late}, absl::Now()).status()));
  // More passes deliver nothing more.
  runner_->RunOnce(absl::Now());
  EXPECT_EQ(Received("token-crash").size(), 1u);
}

TEST_F(OutboundIntegration, CachedSessionIsReusedAndReplacedWhenThePeerRestarts) {
  StartSink();
  ConnectionCache cache;
  TransactionRequest req;
  req.helo_name = "relay.mailgrid.test";
  req.envelope_from = "alice@sender.test";
  req.recipients = {"bob@dest.test"};
  req.tls = TlsPolicy::kNone;
  std::string m1 = "Subject: reuse-1\r\n\r\nfirst\r\n";
  req.message = m1;
  TransactionResult r1 = SendMail("127.0.0.1", static_cast<uint16_t>(smtp_port_), "", req, &cache);
  ASSERT_EQ(r1.recipients.size(), 1u);
  EXPECT_EQ(r1.recipients[0].kind, RecipientOutcome::Kind::kDelivered);
  EXPECT_FALSE(r1.reused);
  EXPECT_EQ(cache.idle(), 1u);
  std::string m2 = "Subject: reuse-2\r\n\r\nsecond\r\n";
  req.message = m2;
  TransactionResult r2 = SendMail("127.0.0.1", static_cast<uint16_t>(smtp_port_), "", req, &cache);
  ASSERT_EQ(r2.recipients.size(), 1u);
  EXPECT_EQ(r2.recipients[0].kind, RecipientOutcome::Kind::kDelivered);
  EXPECT_TRUE(r2.reused);
  // The peer restarts: the cached session is dead; the next transaction
  // notices at MAIL (nothing accepted) and delivers on a new connection.
  StartSink();
  std::string m3 = "Subject: reuse-3\r\n\r\nthird\r\n";
  req.message = m3;
  TransactionResult r3 = SendMail("127.0.0.1", static_cast<uint16_t>(smtp_port_), "", req, &cache);
  ASSERT_EQ(r3.recipients.size(), 1u) << r3.session_reply.error();
  EXPECT_EQ(r3.recipients[0].kind, RecipientOutcome::Kind::kDelivered);
  EXPECT_FALSE(r3.reused);
  for (const char* token : {"reuse-1", "reuse-2", "reuse-3"}) {
    EXPECT_EQ(Received(token).size(), 1u) << token;
  }
}

TEST_F(OutboundIntegration, EnqueuedLeasedIsDeliveredByTheOfferedRunnerOnce) {
  StartSink();
  RunnerOptions ropts;
  ropts.holder = "fast-path";
  ropts.threads = 2;
  ropts.poll_interval = absl::Milliseconds(50);
  QueueOptions qopts;
  qopts.lease_duration = absl::Minutes(5);  // no expiry on a loaded machine
  Queue queue(store_.get(), qopts);
  QueueRunner runner(&queue, transport_.get(), ropts);
  runner.Start();
  NewMessage m{"t1", "alice@sender.test", {"bob@dest.test"},
               "From: alice@sender.test\r\nSubject: token-offered\r\n\r\nHello.\r\n"};
  auto lease = queue.EnqueueLeased(m, "fast-path", absl::Now());
  ASSERT_TRUE(lease.ok()) << lease.status();
  // Leased at once: no other runner may take it meanwhile.
  EXPECT_TRUE(absl::IsFailedPrecondition(
      queue.TryLease(lease->queue_id, "other", absl::Now()).status()));
  ASSERT_TRUE(runner.Offer(*lease, m.body));
  ASSERT_TRUE(Eventually([&] { return Gone(lease->queue_id); }));
  runner.Stop();
  EXPECT_EQ(Received("token-offered").size(), 1u);
  EXPECT_EQ(runner.totals().delivered, 1);
  EXPECT_EQ(runner.totals().lost_leases, 0);
}

}  // namespace
}  // namespace mailgrid::outbound
