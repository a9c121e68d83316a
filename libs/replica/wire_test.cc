// The raft wire (wire.h) over real loopback TCP: framing, the handshake and
// its refusals, batches delivered complete and in order, the fall back to
// gRPC (TrySend false) while a connection is not open, and bad bytes from
// the network closing the connection without delivering anything.
#include "libs/replica/wire.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "libs/replica/transport.h"
#include "libs/replica/wire_frame.h"
#include "prometheus/registry.h"

namespace mailgrid::replica {
namespace {

constexpr raft::NodeId kSelf = 1;
constexpr raft::NodeId kPeer = 2;

// ------------------------------------------------------------- framing ---

TEST(WireFrameTest, DecodesWholeFramesOnlyAndRefusesOverlongLengths) {
  std::string bytes;
  AppendWireFrame("abc", &bytes);
  AppendWireFrame("", &bytes);
  for (size_t cut = 0; cut < 7; ++cut) {  // any prefix of the first frame: wait
    EXPECT_EQ(DecodeWireFrame(absl::string_view(bytes).substr(0, cut)).result,
              WireFrame::Result::kNeedMore)
        << cut;
  }
  WireFrame first = DecodeWireFrame(bytes);
  ASSERT_EQ(first.result, WireFrame::Result::kFrame);
  EXPECT_EQ(first.payload, "abc");
  EXPECT_EQ(first.consumed, 7u);
  WireFrame second = DecodeWireFrame(absl::string_view(bytes).substr(first.consumed));
  ASSERT_EQ(second.result, WireFrame::Result::kFrame);
  EXPECT_EQ(second.payload, "");
  EXPECT_EQ(second.consumed, 4u);

  // A length over the limit is an error as soon as the length is there.
  std::string overlong("\x00\x01\x00\x01", 4);  // 65,537 bytes announced, none sent
  WireFrame bad = DecodeWireFrame(overlong, 1 << 16);
  EXPECT_EQ(bad.result, WireFrame::Result::kError);
  EXPECT_NE(bad.error.find("65537"), std::string::npos) << bad.error;
  EXPECT_EQ(DecodeWireFrame(overlong, 1 << 17).result, WireFrame::Result::kNeedMore);
}

// ---------------------------------------------------- listener + sender ---

// A listener whose deliver records every batch (the hello included) and
// refuses what `refuse` says.
class Receiver {
 public:
  explicit Receiver(std::string refuse_group = "") : refuse_group_(std::move(refuse_group)) {
    auto l = WireListener::Listen("127.0.0.1", 0);
    EXPECT_TRUE(l.ok()) << l.status();
    listener_ = std::move(*l);
    listener_->Start([this](raft::v1::MessageBatch* b) {
      if (b->group_id() == refuse_group_) return absl::FailedPreconditionError("wrong group");
      absl::MutexLock lock(&mu_);
      batches_.push_back(*b);
      return absl::OkStatus();
    });
  }
  uint16_t port() const { return listener_->port(); }
  WireListener& listener() { return *listener_; }

  // Blocks until `n` batches arrived.
  std::vector<raft::v1::MessageBatch> WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    auto arrived = [this, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return batches_.size() >= n; };
    mu_.Await(absl::Condition(&arrived));
    return batches_;
  }
  size_t count() {
    absl::MutexLock lock(&mu_);
    return batches_.size();
  }

 private:
  const std::string refuse_group_;
  std::unique_ptr<WireListener> listener_;
  absl::Mutex mu_;
  std::vector<raft::v1::MessageBatch> batches_ ABSL_GUARDED_BY(mu_);
};

class WireTest : public ::testing::Test {
 protected:
  WireTest() : metrics_(registry_) {
    options_.group_id = "g";
    options_.self = kSelf;
    options_.self_address = "127.0.0.1:1111";
    options_.self_max_format = 3;
    options_.self_wire_port = 4444;
  }

  std::unique_ptr<WireSender> MakeSender(uint16_t port) {
    auto s = std::make_unique<WireSender>(options_, kPeer, &metrics_, &hooks_,
                                          [] { return std::string("127.0.0.1:9"); });
    s->SetPort(port);
    return s;
  }

  static std::vector<raft::Message> Appends(uint64_t first_index, int n) {
    std::vector<raft::Message> out;
    for (int i = 0; i < n; ++i) {
      raft::Message m;
      m.type = raft::Message::Type::kAppend;
      m.from = kSelf;
      m.to = kPeer;
      m.term = 7;
      m.index = first_index + i;
      raft::Entry e;
      e.index = first_index + i + 1;
      e.term = 7;
      e.data = std::string(100, static_cast<char>('a' + i % 26));
      m.entries.push_back(std::move(e));
      out.push_back(std::move(m));
    }
    return out;
  }

  // Retries until the connection is open and takes the batch.
  static void SendWhenOpen(WireSender& s, std::vector<raft::Message> msgs) {
    while (!s.TrySend(msgs)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_TRUE(msgs.empty());
  }

  prometheus::Registry registry_;
  ReplicaMetrics metrics_;
  TestHooks hooks_;
  TransportOptions options_;
};

TEST_F(WireTest, BatchesArriveCompleteAndInOrderAfterAHelloThatAnnouncesTheSender) {
  Receiver peer;
  auto sender = MakeSender(peer.port());
  constexpr int kBatches = 500;
  for (int b = 0; b < kBatches; ++b) SendWhenOpen(*sender, Appends(b * 3, 3));
  std::vector<raft::v1::MessageBatch> got = peer.WaitFor(kBatches + 1);
  ASSERT_EQ(got.size(), kBatches + 1u);
  const raft::v1::MessageBatch& hello = got[0];
  EXPECT_EQ(hello.group_id(), "g");
  EXPECT_EQ(hello.from(), kSelf);
  EXPECT_EQ(hello.to(), kPeer);
  EXPECT_EQ(hello.from_address(), "127.0.0.1:1111");
  EXPECT_EQ(hello.max_format(), 3u);
  EXPECT_EQ(hello.wire_port(), 4444u);
  EXPECT_EQ(hello.messages_size(), 0);
  uint64_t next = 0;
  for (int b = 1; b <= kBatches; ++b) {
    EXPECT_EQ(got[b].group_id(), "g");
    EXPECT_EQ(got[b].to(), kPeer);
    ASSERT_EQ(got[b].messages_size(), 3);
    for (const raft::v1::Message& m : got[b].messages()) {
      EXPECT_EQ(m.index(), next);
      ASSERT_EQ(m.entries_size(), 1);
      EXPECT_EQ(m.entries(0).data(), std::string(100, static_cast<char>('a' + next % 3)));
      ++next;
    }
  }
  EXPECT_EQ(metrics_.wire_connections->Value(), 1);
  EXPECT_EQ(metrics_.messages_sent->Value(), 3.0 * kBatches);
  EXPECT_EQ(metrics_.wire_messages_sent->Value(), 3.0 * kBatches);
}

TEST_F(WireTest, ARefusedHelloNeverOpensAndTheMessagesStayForGrpc) {
  Receiver peer(/*refuse_group=*/"g");
  auto sender = MakeSender(peer.port());
  while (metrics_.wire_connect_failures->Value() < 2) {  // refused, retried, refused again
    std::vector<raft::Message> msgs = Appends(0, 2);
    EXPECT_FALSE(sender->TrySend(msgs));
    EXPECT_EQ(msgs.size(), 2u);  // untouched: the caller sends them over gRPC
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(metrics_.wire_connections->Value(), 0);
  EXPECT_EQ(peer.count(), 0u);
}

TEST_F(WireTest, AClosedPeerFallsBackToGrpcAndAReturningOneIsUsedAgain) {
  auto peer = std::make_unique<Receiver>();
  auto sender = MakeSender(peer->port());
  SendWhenOpen(*sender, Appends(0, 1));
  peer->WaitFor(2);
  peer.reset();  // the peer's process is gone: its listener closes the connection
  std::vector<raft::Message> msgs = Appends(1, 1);
  while (sender->TrySend(msgs)) msgs = Appends(1, 1);  // open until the close is noticed
  EXPECT_EQ(msgs.size(), 1u);

  Receiver back;  // restarted, on another port it announces
  sender->SetPort(back.port());
  SendWhenOpen(*sender, Appends(5, 1));
  std::vector<raft::v1::MessageBatch> got = back.WaitFor(2);
  ASSERT_EQ(got[1].messages_size(), 1);
  EXPECT_EQ(got[1].messages(0).index(), 5u);
  EXPECT_EQ(metrics_.wire_connections->Value(), 2);
}

TEST_F(WireTest, ABatchTooBigForAFrameIsLeftForGrpc) {
  Receiver peer;
  auto sender = MakeSender(peer.port());
  SendWhenOpen(*sender, Appends(0, 1));
  std::vector<raft::Message> big = Appends(1, 1);
  big[0].entries[0].data.assign(kMaxWireFrameBytes / 2 + 1, 'x');
  EXPECT_FALSE(sender->TrySend(big));
  EXPECT_EQ(big[0].entries[0].data.size(), kMaxWireFrameBytes / 2 + 1);
}

TEST_F(WireTest, APartitionedPeerGetsNothing) {
  Receiver peer;
  auto sender = MakeSender(peer.port());
  SendWhenOpen(*sender, Appends(0, 1));
  hooks_.SetDroppedPeers({kPeer});
  std::vector<raft::Message> dropped = Appends(1, 1);
  EXPECT_TRUE(sender->TrySend(dropped));  // taken, and dropped as a partition does
  hooks_.SetDroppedPeers({});
  SendWhenOpen(*sender, Appends(2, 1));
  std::vector<raft::v1::MessageBatch> got = peer.WaitFor(3);
  ASSERT_EQ(got.size(), 3u);  // hello, index 0, index 2
  EXPECT_EQ(got[2].messages(0).index(), 2u);
}

// ----------------------------------------------------- bad network bytes ---

int ConnectRaw(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

// Reads until the listener closes the connection; returns what it answered.
std::string ReadUntilClosed(int fd) {
  std::string answer;
  char buf[256];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof buf, 0)) > 0) answer.append(buf, static_cast<size_t>(n));
  close(fd);
  return answer;
}

// A raw client: connects, writes `bytes`, ends its side, and returns what
// the listener answered before it closed the connection.
std::string WriteRaw(uint16_t port, const std::string& bytes) {
  int fd = ConnectRaw(port);
  EXPECT_EQ(send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  shutdown(fd, SHUT_WR);  // a listener waiting for more sees the end
  return ReadUntilClosed(fd);
}

std::string Hello() {
  raft::v1::MessageBatch hello;
  hello.set_group_id("g");
  hello.set_from(kSelf);
  hello.set_to(kPeer);
  std::string out(kWirePreface);
  AppendWireFrame(hello.SerializeAsString(), &out);
  return out;
}

TEST(WireListenerTest, BadBytesCloseTheConnectionAndDeliverNothingAfterThem) {
  Receiver peer;
  // Not the preface (an HTTP client that found the port): closed, no answer.
  EXPECT_EQ(WriteRaw(peer.port(), "GET / HTTP/1.1\r\n\r\n"), "");
  // A hello that is no MessageBatch: refused, with the reason.
  std::string junk(kWirePreface);
  AppendWireFrame("\xff\xff\xff", &junk);
  std::string answer = WriteRaw(peer.port(), junk);
  ASSERT_FALSE(answer.empty());
  EXPECT_EQ(answer[0], kWireRefused);
  EXPECT_NE(answer.find("not a MessageBatch"), std::string::npos) << answer;
  // A good hello, then a frame announcing more than the limit: accepted,
  // then closed without delivering anything but the hello.
  std::string overlong = Hello() + std::string("\x7f\xff\xff\xff", 4);
  EXPECT_EQ(WriteRaw(peer.port(), overlong), std::string(1, kWireAccepted));
  EXPECT_EQ(peer.count(), 1u);
  // And the listener still serves.
  EXPECT_EQ(WriteRaw(peer.port(), Hello()).substr(0, 1), std::string(1, kWireAccepted));
}

// A client that never finishes its hello must not keep one of the
// listener's connection slots: it is closed after the handshake timeout.
TEST(WireListenerTest, AClientSilentBeforeItsHelloIsClosed) {
  Receiver peer;
  int fd = ConnectRaw(peer.port());
  ASSERT_EQ(send(fd, "MGRA", 4, MSG_NOSIGNAL), 4);  // half a preface, then nothing
  EXPECT_EQ(ReadUntilClosed(fd), "");  // returns once the listener closed it
  EXPECT_EQ(peer.count(), 0u);
}

}  // namespace
}  // namespace mailgrid::replica
