// The transport's sending side against real gRPC servers on loopback: each
// peer gets its messages complete and in order on one stream, a dead or
// silent peer neither stalls the others nor breaks their streams, and Stop
// leaves no sending thread behind. (Written in session 24 for a shared
// sending thread, which was measured and taken back: bench/raft README.)
#include "libs/replica/transport.h"

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "libs/replica/metrics.h"
#include "mailgrid/raft/v1/raft.grpc.pb.h"
#include "prometheus/registry.h"

namespace mailgrid::replica {
namespace {

constexpr raft::NodeId kSelf = 1;

// A peer's RaftService that records the indexes of the messages it reads
// from SendStream, in arrival order, and counts the streams opened to it.
class RecordingPeer final : public raft::v1::RaftService::CallbackService {
 public:
  RecordingPeer() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~RecordingPeer() override { server_->Shutdown(); }

  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

  // Blocks until `n` messages arrived; returns their indexes.
  std::vector<uint64_t> WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    auto arrived = [this, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return indexes_.size() >= n; };
    mu_.Await(absl::Condition(&arrived));
    return indexes_;
  }
  int streams() {
    absl::MutexLock lock(&mu_);
    return streams_;
  }

  grpc::ServerReadReactor<raft::v1::MessageBatch>* SendStream(grpc::CallbackServerContext*,
                                                              raft::v1::SendAck*) override {
    {
      absl::MutexLock lock(&mu_);
      ++streams_;
    }
    return new Reader(this);
  }

 private:
  class Reader final : public grpc::ServerReadReactor<raft::v1::MessageBatch> {
   public:
    explicit Reader(RecordingPeer* peer) : peer_(peer) { StartRead(&batch_); }
    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status::OK);
        return;
      }
      {
        absl::MutexLock lock(&peer_->mu_);
        for (const raft::v1::Message& m : batch_.messages()) peer_->indexes_.push_back(m.index());
      }
      StartRead(&batch_);
    }
    void OnDone() override { delete this; }

   private:
    RecordingPeer* const peer_;
    raft::v1::MessageBatch batch_;
  };

  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  absl::Mutex mu_;
  std::vector<uint64_t> indexes_ ABSL_GUARDED_BY(mu_);
  int streams_ ABSL_GUARDED_BY(mu_) = 0;
};

// A TCP port that accepts connections (the kernel's backlog) but never
// speaks: a hung peer. Closed at destruction.
class SilentPeer {
 public:
  SilentPeer() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 16);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentPeer() { close(fd_); }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A port nothing listens on (bound, then released): connections are refused.
std::string RefusingAddress() {
  SilentPeer closed;
  return closed.address();
}

class FakeHost final : public TransportHost {
 public:
  void SetAddress(raft::NodeId id, std::string address) {
    absl::MutexLock lock(&mu_);
    addresses_[id] = std::move(address);
  }
  std::string PeerAddress(raft::NodeId id) override {
    absl::MutexLock lock(&mu_);
    auto it = addresses_.find(id);
    return it == addresses_.end() ? "" : it->second;
  }
  void ReportUnreachable(raft::NodeId id) override {
    absl::MutexLock lock(&mu_);
    ++unreachable_[id];
  }
  void ReportSnapshot(raft::NodeId, bool) override {}
  absl::StatusOr<kv::SnapshotInfo> CreateSnapshot(const std::string&) override {
    return absl::UnimplementedError("no snapshots in this test");
  }
  // Blocks until `id` was reported unreachable at least once.
  void WaitUnreachable(raft::NodeId id) {
    absl::MutexLock lock(&mu_);
    auto reported = [this, id]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return unreachable_[id] > 0; };
    mu_.Await(absl::Condition(&reported));
  }
  int Unreachable(raft::NodeId id) {
    absl::MutexLock lock(&mu_);
    return unreachable_[id];
  }

 private:
  absl::Mutex mu_;
  std::map<raft::NodeId, std::string> addresses_ ABSL_GUARDED_BY(mu_);
  std::map<raft::NodeId, int> unreachable_ ABSL_GUARDED_BY(mu_);
};

raft::Message Append(raft::NodeId to, raft::Index index) {
  raft::Message m;
  m.type = raft::Message::Type::kAppend;
  m.from = kSelf;
  m.to = to;
  m.term = 1;
  m.index = index;
  m.entries.push_back(raft::Entry{.term = 1, .index = index + 1, .data = std::string(100, 'x')});
  return m;
}

// Threads of this process named `name` (/proc/self/task/*/comm).
int ThreadsNamed(const std::string& name) {
  int n = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string line;
    if (std::getline(comm, line) && line == name) ++n;
  }
  return n;
}

class TransportTest : public ::testing::Test {
 protected:
  std::unique_ptr<Transport> MakeTransport() {
    TransportOptions options;
    options.group_id = "g";
    options.self = kSelf;
    options.self_address = "127.0.0.1:1";
    options.snapshot_dir = ::testing::TempDir() + "/transport_test_snapshots";
    return std::make_unique<Transport>(options, &host_, &metrics_, &hooks_);
  }

  // Sends `rounds` Readys, each with one append per peer in `peers`
  // (message index = round), the way the raft loop calls Send.
  static void SendRounds(Transport& t, const std::vector<raft::NodeId>& peers, int rounds) {
    for (int i = 0; i < rounds; ++i) {
      std::vector<raft::Message> ready;
      for (raft::NodeId p : peers) ready.push_back(Append(p, i));
      t.Send(std::move(ready));
    }
  }

  static std::vector<uint64_t> Sequence(int n) {
    std::vector<uint64_t> v(n);
    for (int i = 0; i < n; ++i) v[i] = i;
    return v;
  }

  prometheus::Registry registry_;
  ReplicaMetrics metrics_{registry_};
  TestHooks hooks_;
  FakeHost host_;
};

TEST_F(TransportTest, KeepsEachPeersOrderOnOneStream) {
  RecordingPeer a, b;
  host_.SetAddress(2, a.address());
  host_.SetAddress(3, b.address());
  const int before = ThreadsNamed("raft-send");
  auto t = MakeTransport();
  constexpr int kRounds = 3000;  // below max_queued_messages: nothing may be dropped
  SendRounds(*t, {2, 3}, kRounds);
  EXPECT_EQ(a.WaitFor(kRounds), Sequence(kRounds));
  EXPECT_EQ(b.WaitFor(kRounds), Sequence(kRounds));
  EXPECT_GE(ThreadsNamed("raft-send") - before, 1);
  EXPECT_EQ(a.streams(), 1);
  EXPECT_EQ(b.streams(), 1);
  EXPECT_EQ(host_.Unreachable(2) + host_.Unreachable(3), 0);
  t->Stop();
  EXPECT_EQ(ThreadsNamed("raft-send"), before);
}

TEST_F(TransportTest, DeadAndSilentPeersDoNotStallTheOthers) {
  RecordingPeer live;
  SilentPeer silent;
  host_.SetAddress(2, live.address());
  host_.SetAddress(3, silent.address());
  host_.SetAddress(4, RefusingAddress());
  auto t = MakeTransport();
  constexpr int kRounds = 3000;
  SendRounds(*t, {3, 4, 2}, kRounds);
  // The refusing peer fails (and backs off) on its own...
  host_.WaitUnreachable(4);
  // ...while the live one gets every message, in order, on one stream.
  EXPECT_EQ(live.WaitFor(kRounds), Sequence(kRounds));
  SendRounds(*t, {3, 4, 2}, 10);  // after the failure too
  std::vector<uint64_t> more = live.WaitFor(kRounds + 10);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(more[kRounds + i], static_cast<uint64_t>(i));
  EXPECT_EQ(live.streams(), 1) << "another peer's failure must not reset this peer's stream";
  EXPECT_EQ(host_.Unreachable(2), 0);
  t->Stop();  // with a stream still starting towards the silent peer
  EXPECT_EQ(ThreadsNamed("raft-send"), 0) << "Stop joins every sending thread";
}

}  // namespace
}  // namespace mailgrid::replica
