#include "libs/replica/testing/test_cluster.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/base/net.h"
#include "libs/base/status.h"

namespace mailgrid::replica::testing {

namespace {

// Holds a loopback port between picking it and the member's server binding
// it, and while the member is stopped: a socket bound to it, never
// listening. Picking a port, releasing it and binding it later (after
// opening RocksDB) raced with other tests and with outgoing connections,
// whose ephemeral ports skip ports bound like this. rpc::Server::Start
// insists on binding the port alone first, so the hold is released just
// before it; the remaining window is microseconds, and a loss there is
// retried by the callers. `port` 0: any free port. Returns the fd.
absl::StatusOr<int> HoldPort(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  int one = 1;
  // A stopped member's port may still have TIME_WAIT connections.
  if (*port != 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(*port));
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    absl::Status st = absl::UnavailableError(absl::StrCat("hold port: ", strerror(errno)));
    close(fd);
    return st;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

// A listener that could not bind: worth another try (another port, or later).
bool IsBindFailure(const absl::Status& s) {
  return absl::IsUnavailable(s) && (absl::StrContains(s.message(), "port in use") ||
                                    absl::StrContains(s.message(), "cannot listen"));
}

constexpr int kStartAttempts = 5;

}  // namespace

bool WaitUntil(const std::function<bool()>& pred, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (pred()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return pred();
}

ReplicaOptions TestCluster::DefaultOptions() {
  ReplicaOptions o;
  o.group_id = "test";
  o.tick_interval = absl::Milliseconds(50);
  o.election_tick = 10;
  return o;
}

TestCluster::TestCluster(ReplicaOptions base) : base_(std::move(base)) {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string tmpl = std::string(tmp != nullptr ? tmp : "/tmp") + "/replica_test.XXXXXX";
  root_ = mkdtemp(tmpl.data()) != nullptr ? tmpl : "/tmp/replica_test.fallback";
}

TestCluster::~TestCluster() {
  for (auto& [id, m] : members_) m.replica->Stop();
  members_.clear();
  for (auto& [id, fd] : held_) close(fd);
  std::error_code ec;
  std::filesystem::remove_all(root_, ec);
}

std::string TestCluster::AddressList() const {
  std::vector<std::string> list;
  for (const auto& [id, a] : addresses_) list.push_back(a);
  return absl::StrJoin(list, ",");
}

absl::Status TestCluster::HoldNewAddress(raft::NodeId id) {
  int port = 0;
  ASSIGN_OR_RETURN(int fd, HoldPort(&port));
  Release(id);
  held_[id] = fd;
  addresses_[id] = absl::StrCat("127.0.0.1:", port);
  return absl::OkStatus();
}

void TestCluster::HoldAgain(raft::NodeId id) {
  auto a = addresses_.find(id);
  if (a == addresses_.end() || held_.count(id) > 0) return;
  auto hp = net::ParseHostPort(a->second);
  if (!hp.ok()) return;
  int port = hp->port;
  absl::StatusOr<int> fd = HoldPort(&port);
  if (fd.ok()) held_[id] = *fd;  // best effort: Restart retries anyway
}

void TestCluster::Release(raft::NodeId id) {
  auto it = held_.find(id);
  if (it == held_.end()) return;
  close(it->second);
  held_.erase(it);
}

absl::Status TestCluster::StartGroup(int n) {
  absl::Status st;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    st = TryStartGroup(n);
    if (st.ok() || !IsBindFailure(st)) return st;
    // Someone took a port in the last moment: start over on fresh ports
    // (the members already started know the old addresses, so all go).
    for (int i = 1; i <= n; ++i) {
      Stop(i);
      Release(i);
      addresses_.erase(i);
      options_.erase(i);
      std::error_code ec;
      std::filesystem::remove_all(absl::StrCat(root_, "/", i), ec);
    }
  }
  return st;
}

absl::Status TestCluster::TryStartGroup(int n) {
  for (int i = 1; i <= n; ++i) RETURN_IF_ERROR(HoldNewAddress(i));
  for (int i = 1; i <= n; ++i) {
    ReplicaOptions o = base_;
    o.id = i;
    o.peers = std::map<raft::NodeId, std::string>(addresses_.begin(), addresses_.end());
    o.data_dir = absl::StrCat(root_, "/", i);
    RETURN_IF_ERROR(StartMember(i, o));
  }
  return absl::OkStatus();
}

absl::Status TestCluster::StartJoiner(raft::NodeId id, ReplicaOptions overrides) {
  absl::Status st;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    RETURN_IF_ERROR(HoldNewAddress(id));
    ReplicaOptions o = overrides;
    o.id = id;
    o.join = true;
    o.peers = addresses_;
    o.data_dir = absl::StrCat(root_, "/", id);
    std::error_code ec;
    std::filesystem::remove_all(o.data_dir, ec);
    st = StartMember(id, o);
    if (st.ok() || !IsBindFailure(st)) return st;
  }
  return st;
}

absl::Status TestCluster::StartMember(raft::NodeId id, ReplicaOptions options) {
  if (auto edit = overrides_.find(id); edit != overrides_.end()) edit->second(options);
  options_[id] = options;
  TestMember m;
  m.address = addresses_.at(id);
  m.data_dir = options.data_dir;
  ASSIGN_OR_RETURN(m.replica, Replica::Open(options));
  m.kv = std::make_unique<KvServiceImpl>(m.replica.get());
  auto serve = serve_streams_.find(id);
  m.raft = std::make_unique<RaftServiceImpl>(m.replica.get(),
                                             serve == serve_streams_.end() || serve->second);
  rpc::ServerOptions so;
  so.service_name = absl::StrCat("replica-", id);
  so.listen = m.address;
  if (options.peer_tls.enabled()) {
    // What a daemon does: its peers reach it on this listener, which serves
    // its own certificate and (mTLS) accepts clients from the same CA.
    so.tls_cert_file = options.peer_tls.cert_file;
    so.tls_key_file = options.peer_tls.key_file;
    so.tls_client_ca_file = options.peer_tls.ca_file;
  }
  Release(id);
  ASSIGN_OR_RETURN(m.server, rpc::Server::Start(so, {m.kv.get(), m.raft.get()}));
  RETURN_IF_ERROR(m.replica->Start());
  members_[id] = std::move(m);
  return absl::OkStatus();
}

void TestCluster::Stop(raft::NodeId id) {
  auto it = members_.find(id);
  if (it == members_.end()) return;
  it->second.server->Shutdown(absl::ZeroDuration());
  it->second.replica->Stop();
  members_.erase(it);
  HoldAgain(id);
}

absl::Status TestCluster::Restart(raft::NodeId id) {
  Stop(id);
  // The address is fixed (the others know it): wait for it to come free.
  absl::Status st;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    if (attempt > 0) absl::SleepFor(absl::Milliseconds(200) * attempt);
    st = StartMember(id, options_.at(id));
    if (st.ok() || !IsBindFailure(st)) return st;
    HoldAgain(id);
  }
  return st;
}

raft::NodeId TestCluster::WaitForLeader(absl::Duration timeout) {
  raft::NodeId leader = raft::kNoNode;
  WaitUntil(
      [&] {
        leader = raft::kNoNode;
        for (auto& [id, m] : members_) {
          if (m.replica->IsLeader()) leader = id;
        }
        if (leader == raft::kNoNode) return false;
        // Every running member of the leader's configuration follows it.
        ReplicaStatus ls = members_.at(leader).replica->Status();
        std::vector<raft::NodeId> ids = ls.conf.voters;
        ids.insert(ids.end(), ls.conf.learners.begin(), ls.conf.learners.end());
        for (raft::NodeId id : ids) {
          auto it = members_.find(id);
          if (it != members_.end() && it->second.replica->LeaderId() != leader) return false;
        }
        return true;
      },
      timeout);
  return leader;
}

bool TestCluster::WaitApplied(raft::NodeId id, raft::Index index, absl::Duration timeout) {
  return WaitUntil([&] { return replica(id).Status().applied >= index; }, timeout);
}

}  // namespace mailgrid::replica::testing
