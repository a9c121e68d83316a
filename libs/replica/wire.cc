#include "libs/replica/wire.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/base/net.h"
#include "libs/base/status.h"
#include "libs/replica/codec.h"
#include "libs/replica/thread_name.h"
#include "libs/replica/transport.h"
#include "libs/replica/wire_frame.h"

namespace mailgrid::replica {

namespace {

constexpr absl::Duration kHandshakeTimeout = absl::Seconds(5);
constexpr absl::Duration kFirstRetry = absl::Milliseconds(100);
constexpr absl::Duration kMaxRetry = absl::Seconds(5);
constexpr size_t kReadChunk = 64 << 10;
// A peer that does not read this much is not keeping up: what does not fit
// is dropped (Raft sends it again), as the gRPC sender's bounded queue does.
constexpr size_t kMaxPendingBytes = 64 << 20;

std::string Errno(const char* what) { return absl::StrCat(what, ": ", std::strerror(errno)); }

int PollMs(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return -1;
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 0, 60'000));
}

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

absl::StatusOr<Fd> MakeEventFd() {
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return absl::InternalError(Errno("eventfd"));
  return Fd(fd);
}

void Signal(int event_fd) {
  const uint64_t one = 1;
  (void)!write(event_fd, &one, sizeof one);
}

void Drain(int event_fd) {
  uint64_t n = 0;
  (void)!read(event_fd, &n, sizeof n);
}

// Waits until `fd` has `events` or `deadline` passes; false on timeout.
bool WaitFor(int fd, short events, absl::Time deadline) {
  pollfd p{fd, events, 0};
  int r = 0;
  do {
    r = poll(&p, 1, PollMs(deadline - absl::Now()));
  } while (r < 0 && errno == EINTR);
  return r > 0;
}

// The handshake's blocking parts on a non-blocking socket.
absl::Status WriteAll(int fd, absl::string_view data, absl::Time deadline) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!WaitFor(fd, POLLOUT, deadline)) return absl::DeadlineExceededError("handshake write");
    } else {
      return absl::UnavailableError(Errno("send"));
    }
  }
  return absl::OkStatus();
}

// The receiver's answer to the hello: OK, or why it refused.
absl::Status ReadReply(int fd, absl::Time deadline) {
  std::string reply;
  char buf[512];
  while (reply.size() < 1024) {
    if (!WaitFor(fd, POLLIN, deadline)) {
      if (!reply.empty() && reply[0] == kWireRefused) break;
      return absl::DeadlineExceededError("no answer to the wire hello");
    }
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) break;  // closed: a refusal ends with the connection
    reply.append(buf, static_cast<size_t>(n));
    if (reply[0] == kWireAccepted) {
      if (reply.size() != 1) return absl::UnavailableError("bytes after the wire hello's answer");
      return absl::OkStatus();
    }
  }
  if (!reply.empty() && reply[0] == kWireRefused) {
    return absl::FailedPreconditionError(absl::StrCat("refused: ", reply.substr(1)));
  }
  return absl::UnavailableError("closed during the wire hello (not a raft wire listener?)");
}

}  // namespace

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = o.release();
  }
  return *this;
}

void Fd::reset() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void AnnounceSelf(const TransportOptions& options, raft::v1::MessageBatch* batch) {
  batch->set_from_address(options.self_address);
  batch->set_max_format(options.self_max_format);
  batch->set_wire_port(options.self_wire_port);
}

// ------------------------------------------------------------- listener ---

absl::StatusOr<std::unique_ptr<WireListener>> WireListener::Listen(const std::string& host,
                                                                   int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (int e = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found);
      e != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("raft wire: listen host '", host, "': ", gai_strerror(e)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(found, freeaddrinfo);
  Fd fd(socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::InternalError(Errno("raft wire: socket"));
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd.get(), found->ai_addr, found->ai_addrlen) != 0) {
    return absl::UnavailableError(
        absl::StrCat("raft wire: bind ", host, ":", port, ": ", std::strerror(errno)));
  }
  if (listen(fd.get(), 16) != 0) return absl::InternalError(Errno("raft wire: listen"));
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len);
  const uint16_t bound_port = ntohs(bound.ss_family == AF_INET6
                                        ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  std::unique_ptr<WireListener> l(new WireListener(std::move(fd), bound_port));
  ASSIGN_OR_RETURN(l->stop_fd_, MakeEventFd());
  return l;
}

void WireListener::Start(Deliver deliver) {
  if (accept_thread_.joinable() || stopping_.load()) return;
  deliver_ = std::move(deliver);
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

WireListener::~WireListener() { Stop(); }

void WireListener::Stop() {
  if (stopping_.exchange(true)) return;
  if (stop_fd_.valid()) Signal(stop_fd_.get());  // level-triggered: every poller sees it
  if (accept_thread_.joinable()) accept_thread_.join();
  std::list<Reader> readers;
  {
    absl::MutexLock lock(&mu_);
    readers.swap(readers_);
  }
  for (Reader& r : readers) r.thread.join();
  listen_fd_.reset();
}

void WireListener::ReapFinishedLocked() {
  for (auto it = readers_.begin(); it != readers_.end();) {
    if (it->done) {
      it->thread.join();
      it = readers_.erase(it);
    } else {
      ++it;
    }
  }
}

void WireListener::AcceptLoop() {
  NameThisThread("raft-wire-acc");
  while (true) {
    pollfd p[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (poll(p, 2, -1) < 0 && errno != EINTR) break;
    if (stopping_.load()) break;
    if ((p[0].revents & POLLIN) == 0) continue;
    Fd conn(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn.valid()) continue;  // the peer gave up already, or out of descriptors
    SetNoDelay(conn.get());
    absl::MutexLock lock(&mu_);
    ReapFinishedLocked();
    if (readers_.size() >= kMaxConnections) {
      log::Warn("raft wire: connection refused, too many open", {{"open", readers_.size()}});
      continue;
    }
    Reader& r = readers_.emplace_back();
    r.thread = std::thread([this, &r, fd = conn.release()] {
      ReadConnection(Fd(fd));
      absl::MutexLock lock(&mu_);
      r.done = true;
    });
  }
}

bool WireListener::ReadMore(int fd, std::string& buf, char* chunk, absl::Time deadline) {
  while (true) {
    pollfd p[2] = {{fd, POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    const int r = poll(p, 2, PollMs(deadline - absl::Now()));
    if (r < 0 && errno != EINTR) return false;
    if (stopping_.load()) return false;
    if (r == 0) {
      log::Warn("raft wire: no hello within the handshake timeout, connection closed");
      return false;
    }
    ssize_t n = recv(fd, chunk, kReadChunk, MSG_DONTWAIT);
    if (n > 0) {
      buf.append(chunk, static_cast<size_t>(n));
      return true;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) return false;
  }
}

// One connection: preface, hello (answered), then batches until it closes.
// Each read takes whatever arrived (several frames at once under load) and
// every whole frame is delivered before the next read.
void WireListener::ReadConnection(Fd conn) {
  NameThisThread("raft-wire-in");
  const int fd = conn.get();
  std::unique_ptr<char[]> chunk(new char[kReadChunk]);
  std::string buf;
  // Until the hello is answered a silent client is closed after the
  // handshake timeout: it must not hold one of the connection slots.
  absl::Time deadline = absl::Now() + kHandshakeTimeout;
  while (buf.size() < kWirePreface.size()) {
    if (!ReadMore(fd, buf, chunk.get(), deadline)) return;
  }
  if (absl::string_view(buf).substr(0, kWirePreface.size()) != kWirePreface) {
    log::Warn("raft wire: a connection without the preface closed");
    return;
  }
  size_t used = kWirePreface.size();  // bytes of buf already handled
  bool hello = true;
  while (true) {
    WireFrame f = DecodeWireFrame(absl::string_view(buf).substr(used));
    if (f.result == WireFrame::Result::kNeedMore) {
      buf.erase(0, used);
      used = 0;
      if (!ReadMore(fd, buf, chunk.get(), deadline)) return;
      continue;
    }
    absl::Status s;
    raft::v1::MessageBatch batch;
    if (f.result == WireFrame::Result::kError) {
      s = absl::InvalidArgumentError(f.error);
    } else if (!batch.ParseFromArray(f.payload.data(), static_cast<int>(f.payload.size()))) {
      s = absl::InvalidArgumentError("a frame is not a MessageBatch");
    } else {
      used += f.consumed;
      s = deliver_(&batch);
    }
    if (hello) {
      hello = false;
      deadline = absl::InfiniteFuture();
      std::string reply(1, s.ok() ? kWireAccepted : kWireRefused);
      if (!s.ok()) reply += s.ToString();
      if (!WriteAll(fd, reply, absl::Now() + kHandshakeTimeout).ok() || !s.ok()) return;
      continue;
    }
    if (!s.ok()) {
      log::Warn("raft wire: batch refused, connection closed", {{"error", s}});
      return;
    }
  }
}

// --------------------------------------------------------------- sender ---

WireSender::WireSender(const TransportOptions& options, raft::NodeId peer,
                       ReplicaMetrics* metrics, TestHooks* hooks,
                       std::function<std::string()> peer_address,
                       std::function<void()> on_open)
    : options_(options),
      peer_(peer),
      metrics_(metrics),
      hooks_(hooks),
      peer_address_(std::move(peer_address)),
      on_open_(std::move(on_open)) {
  absl::StatusOr<Fd> wake = MakeEventFd();
  if (!wake.ok()) {
    log::Warn("raft wire: no sender", {{"peer", peer_}, {"error", wake.status()}});
    return;  // never opens: everything goes over gRPC
  }
  wake_fd_ = std::move(*wake);
  thread_ = std::thread([this] { Run(); });
}

WireSender::~WireSender() { Stop(); }

void WireSender::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    if (open_) BreakLocked("stopping");
  }
  Wake();
  if (thread_.joinable()) thread_.join();
}

void WireSender::Wake() {
  if (wake_fd_.valid()) Signal(wake_fd_.get());
}

void WireSender::SetPort(uint16_t port) {
  {
    absl::MutexLock lock(&mu_);
    if (port_ == port) return;
    port_ = port;
  }
  Wake();
}

bool WireSender::TrySend(std::vector<raft::Message>& msgs) {
  absl::MutexLock lock(&mu_);
  if (!open_) return false;
  uint64_t estimate = 0;
  for (const raft::Message& m : msgs) estimate += ApproxMessageBytes(m);
  if (estimate > kMaxWireFrameBytes / 2) return false;  // gRPC batches it
  const size_t count = msgs.size();
  if (hooks_->Dropped(peer_)) {  // a test partition
    msgs.clear();
    return true;
  }
  batch_.clear_messages();
  batch_.set_group_id(options_.group_id);
  batch_.set_from(options_.self);
  batch_.set_to(peer_);
  for (raft::Message& m : msgs) ToProto(std::move(m), batch_.add_messages());
  msgs.clear();
  const size_t len = batch_.ByteSizeLong();
  frame_.resize(4 + len);
  PutWireFrameLength(static_cast<uint32_t>(len), frame_.data());
  batch_.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(frame_.data() + 4));
  if (!pending_.empty()) {  // the thread is flushing: queue behind it
    if (pending_.size() + frame_.size() > kMaxPendingBytes) {
      metrics_->messages_dropped->Increment(static_cast<double>(count));
      return true;
    }
    pending_ += frame_;
    pending_messages_ += count;
    return true;
  }
  ssize_t n = send(conn_.get(), frame_.data(), frame_.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n == static_cast<ssize_t>(frame_.size())) {
    CountSent(count);
    return true;
  }
  if (n < 0 && errno != EAGAIN && errno != EINTR) {
    metrics_->messages_dropped->Increment(static_cast<double>(count));
    BreakLocked(Errno("send"));
    return true;
  }
  pending_.assign(frame_, static_cast<size_t>(std::max<ssize_t>(n, 0)));
  pending_messages_ = count;
  pending_since_ = absl::Now();
  Wake();
  return true;
}

bool WireSender::FlushLocked() {
  while (!pending_.empty()) {
    ssize_t n = send(conn_.get(), pending_.data(), pending_.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return true;
      BreakLocked(Errno("send"));
      return false;
    }
    pending_.erase(0, static_cast<size_t>(n));
    pending_since_ = absl::Now();  // progress: the stuck clock starts again
  }
  CountSent(pending_messages_);
  pending_messages_ = 0;
  return true;
}

void WireSender::CountSent(size_t messages) {
  metrics_->messages_sent->Increment(static_cast<double>(messages));
  metrics_->wire_messages_sent->Increment(static_cast<double>(messages));
}

// Any thread: the connection is done for. The sender's thread closes it and
// connects again after its pause; until then the peer gets gRPC.
void WireSender::BreakLocked(const std::string& why) {
  if (!open_) return;
  open_ = false;
  shutdown(conn_.get(), SHUT_RDWR);
  metrics_->messages_dropped->Increment(static_cast<double>(pending_messages_));
  pending_.clear();
  pending_messages_ = 0;
  if (!stop_) log::Info("raft wire: connection closed", {{"peer", peer_}, {"why", why}});
  Wake();
}

absl::StatusOr<Fd> WireSender::Connect(uint16_t port) {
  ASSIGN_OR_RETURN(net::HostPort hp, net::ParseHostPort(peer_address_()));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int e = getaddrinfo(hp.host.c_str(), std::to_string(port).c_str(), &hints, &found); e != 0) {
    return absl::UnavailableError(absl::StrCat("lookup ", hp.host, ": ", gai_strerror(e)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(found, freeaddrinfo);
  const absl::Time deadline = absl::Now() + kHandshakeTimeout;
  Fd fd(socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::InternalError(Errno("socket"));
  if (connect(fd.get(), found->ai_addr, found->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) return absl::UnavailableError(Errno("connect"));
    if (!WaitFor(fd.get(), POLLOUT, deadline)) return absl::DeadlineExceededError("connect");
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return absl::UnavailableError(absl::StrCat("connect: ", std::strerror(err)));
  }
  SetNoDelay(fd.get());
  // A peer that vanished without a FIN or RST (its machine gone): the kernel
  // ends the connection when sent bytes stay unacknowledged for the send
  // timeout, and probes an idle one (heartbeats flow every tick anyway).
  const unsigned user_timeout_ms = static_cast<unsigned>(absl::ToInt64Milliseconds(options_.send_timeout));
  setsockopt(fd.get(), IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
  int one = 1, idle_s = 10, interval_s = 5, probes = 3;
  setsockopt(fd.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  setsockopt(fd.get(), IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
  setsockopt(fd.get(), IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
  setsockopt(fd.get(), IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
  raft::v1::MessageBatch hello;
  hello.set_group_id(options_.group_id);
  hello.set_from(options_.self);
  hello.set_to(peer_);
  AnnounceSelf(options_, &hello);
  std::string out(kWirePreface);
  AppendWireFrame(hello.SerializeAsString(), &out);
  RETURN_IF_ERROR(WriteAll(fd.get(), out, deadline));
  RETURN_IF_ERROR(ReadReply(fd.get(), deadline));
  return fd;
}

// The sender's thread: connects while closed (once the port is known, after
// the pause), and while open waits on the socket for a close by the peer
// (it never sends after the handshake), for room to flush pending bytes,
// and for its wake-ups.
void WireSender::Run() {
  NameThisThread("raft-wire-out");
  absl::Duration pause = kFirstRetry;
  absl::Time retry_at = absl::InfinitePast();
  bool failing = false;
  while (true) {
    uint16_t port = 0;
    int fd = -1;
    bool open = false, want_out = false;
    {
      absl::MutexLock lock(&mu_);
      if (stop_) break;
      if (!open_ && conn_.valid()) {  // broken: close it, pause, connect again
        conn_.reset();
        retry_at = absl::Now() + pause;
        pause = std::min(pause * 2, kMaxRetry);
      }
      port = port_;
      open = open_;
      fd = conn_.get();
      want_out = !pending_.empty();
    }
    if (!open && port != 0 && absl::Now() >= retry_at) {
      absl::StatusOr<Fd> conn = Connect(port);
      if (conn.ok()) {
        {
          absl::MutexLock lock(&mu_);
          if (stop_) break;
          conn_ = std::move(*conn);
          open_ = true;
        }
        pause = kFirstRetry;
        metrics_->wire_connections->Increment();
        log::Info("raft wire: connected", {{"peer", peer_}, {"port", port}});
        failing = false;
        if (on_open_) on_open_();
        continue;
      }
      absl::MutexLock lock(&mu_);
      if (stop_) break;
      metrics_->wire_connect_failures->Increment();
      if (!failing) {
        log::Info("raft wire: cannot connect, using gRPC meanwhile",
                  {{"peer", peer_}, {"port", port}, {"error", conn.status()}});
        failing = true;
      }
      retry_at = absl::Now() + pause;
      pause = std::min(pause * 2, kMaxRetry);
      continue;
    }
    pollfd p[2] = {{wake_fd_.get(), POLLIN, 0}, {fd, 0, 0}};
    absl::Duration wait = absl::InfiniteDuration();
    if (open) {
      p[1].events = static_cast<short>(POLLIN | POLLRDHUP | (want_out ? POLLOUT : 0));
      wait = absl::Milliseconds(500);  // the stuck-write check
    } else if (port != 0) {
      wait = retry_at - absl::Now();
    }
    poll(p, open ? 2 : 1, PollMs(wait));
    if (p[0].revents & POLLIN) Drain(wake_fd_.get());
    if (!open) continue;
    absl::MutexLock lock(&mu_);
    if (!open_ || conn_.get() != fd) continue;
    if (p[1].revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) {
      char c;
      ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
      if (n == 0) {
        BreakLocked("closed by the peer");
      } else if (n > 0) {
        BreakLocked("the peer sent bytes after the handshake");
      } else if (errno != EAGAIN && errno != EINTR) {
        BreakLocked(Errno("recv"));
      }
    }
    if (open_ && !pending_.empty() && FlushLocked() && !pending_.empty() &&
        pending_since_ + options_.send_timeout < absl::Now()) {
      BreakLocked("a write made no progress for the send timeout");
    }
  }
  absl::MutexLock lock(&mu_);
  conn_.reset();
}

}  // namespace mailgrid::replica
