// Connection-level failure handling against fake servers that misbehave in
// exactly one way each.
#include "libs/redis/connection.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "libs/redis/testing/eventually.h"
#include "libs/redis/testing/status_macros.h"

namespace mailgrid::redis::internal {
namespace {

using ::mailgrid::redis::testing::Eventually;

// A loopback listening socket the test drives by hand.
class FakeServer {
 public:
  explicit FakeServer(int backlog = 16) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd_, backlog), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
  }
  ~FakeServer() {
    for (int fd : accepted_) ::close(fd);
    ::close(fd_);
  }
  int Accept() {
    int fd = ::accept(fd_, nullptr, nullptr);
    if (fd >= 0) accepted_.push_back(fd);
    return fd;
  }
  Options ClientOptions() const {
    Options o;
    o.port = port_;
    o.connect_timeout = absl::Seconds(5);
    o.command_timeout = absl::Seconds(10);
    return o;
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::vector<int> accepted_;
};

TEST(ScopedSigpipeBlockTest, WriteToClosedPeerDoesNotKillTheProcess) {
  // The default disposition kills; make sure that is what we are up against.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  struct sigaction old {};
  ASSERT_EQ(::sigaction(SIGPIPE, &dfl, &old), 0);

  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ::close(sv[1]);
  ssize_t n;
  int err;
  {
    ScopedSigpipeBlock guard;
    n = ::write(sv[0], "x", 1);
    err = errno;
  }
  EXPECT_EQ(n, -1);
  EXPECT_EQ(err, EPIPE);
  // Nothing left pending, and the thread's mask is as before.
  sigset_t pending;
  sigpending(&pending);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0);
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  EXPECT_EQ(sigismember(&mask, SIGPIPE), 0);
  ::close(sv[0]);
  ::sigaction(SIGPIPE, &old, nullptr);
}

TEST(ConnectionTest, ServerThatClosesIsStaleThenUnavailable) {
  FakeServer server;
  MG_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Connection> conn,
                          Connection::Dial(server.ClientOptions()));
  EXPECT_FALSE(conn->IsStale());
  int fd = server.Accept();
  ASSERT_GE(fd, 0);
  ::shutdown(fd, SHUT_RDWR);
  EXPECT_TRUE(Eventually([&] { return conn->IsStale(); }));
  absl::StatusOr<Reply> r = conn->Call({"PING"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_TRUE(conn->broken());
  // Broken stays broken: no reuse of an out-of-step stream.
  EXPECT_EQ(conn->Call({"PING"}).status().code(), absl::StatusCode::kUnavailable);
}

TEST(ConnectionTest, ServerThatNeverAnswersIsDeadlineExceeded) {
  FakeServer server;
  Options opts = server.ClientOptions();
  opts.command_timeout = absl::Milliseconds(100);
  MG_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Connection> conn, Connection::Dial(opts));
  absl::StatusOr<Reply> r = conn->Call({"PING"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_TRUE(conn->broken());
}

TEST(ConnectionTest, GarbageFromServerIsInternal) {
  FakeServer server;
  MG_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Connection> conn,
                          Connection::Dial(server.ClientOptions()));
  int fd = server.Accept();
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "?not resp\r\n", 11), 11);
  absl::StatusOr<Reply> r = conn->Call({"PING"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal) << r.status();
  EXPECT_TRUE(conn->broken());
}

TEST(ConnectionTest, RepliesArePairedWithCommandsInOrder) {
  FakeServer server;
  MG_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Connection> conn,
                          Connection::Dial(server.ClientOptions()));
  int fd = server.Accept();
  ASSERT_GE(fd, 0);
  const char kReplies[] = "+OK\r\n:7\r\n$3\r\na\0b\r\n-ERR nope\r\n";
  ASSERT_EQ(::write(fd, kReplies, sizeof(kReplies) - 1),
            static_cast<ssize_t>(sizeof(kReplies) - 1));
  MG_ASSERT_OK(conn->Append({"A"}));
  MG_ASSERT_OK(conn->Append({"B"}));
  MG_ASSERT_OK_AND_ASSIGN(Reply r1, conn->Read());
  MG_ASSERT_OK_AND_ASSIGN(Reply r2, conn->Read());
  MG_ASSERT_OK_AND_ASSIGN(Reply r3, conn->Read());
  MG_ASSERT_OK_AND_ASSIGN(Reply r4, conn->Read());
  EXPECT_EQ(r1, Reply::Status("OK"));
  EXPECT_EQ(r2, Reply::Integer(7));
  EXPECT_EQ(r3, Reply::String(std::string("a\0b", 3)));
  EXPECT_EQ(r4, Reply::Error("ERR nope"));
  EXPECT_FALSE(conn->broken()) << "an error reply is an answer, not a transport failure";
  // What the fake server received is the RESP encoding of both commands.
  char buf[64] = {};
  ssize_t n = ::read(fd, buf, sizeof(buf));
  EXPECT_EQ(std::string(buf, n > 0 ? n : 0), "*1\r\n$1\r\nA\r\n*1\r\n$1\r\nB\r\n");
}

TEST(ConnectionTest, NothingListeningIsUnavailable) {
  int port;
  { port = FakeServer().port(); }  // bound, then released
  Options opts;
  opts.port = port;
  absl::StatusOr<std::unique_ptr<Connection>> conn = Connection::Dial(opts);
  EXPECT_EQ(conn.status().code(), absl::StatusCode::kUnavailable) << conn.status();
}

TEST(ConnectionTest, UnresolvableHostIsUnavailable) {
  Options opts;
  opts.host = "no-such-host.invalid";
  absl::StatusOr<std::unique_ptr<Connection>> conn = Connection::Dial(opts);
  EXPECT_EQ(conn.status().code(), absl::StatusCode::kUnavailable) << conn.status();
}

TEST(ConnectionTest, ConnectTimeoutIsDeadlineExceeded) {
  // A listener that never accepts: once its accept queue is full the kernel
  // drops further SYNs, so the next connect hangs until the timeout.
  FakeServer server(/*backlog=*/0);
  Options opts = server.ClientOptions();
  opts.connect_timeout = absl::Milliseconds(200);
  std::vector<std::unique_ptr<Connection>> queued;
  absl::StatusOr<std::unique_ptr<Connection>> conn;
  for (int i = 0; i < 16; ++i) {
    conn = Connection::Dial(opts);
    if (!conn.ok()) break;
    queued.push_back(*std::move(conn));
  }
  EXPECT_EQ(conn.status().code(), absl::StatusCode::kDeadlineExceeded) << conn.status();
}

}  // namespace
}  // namespace mailgrid::redis::internal
