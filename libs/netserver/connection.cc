// ConnImpl: one connection's state machine, on its strand.
//
// Reading: plain sockets wait for readability (async_wait) and then read
// what is there into a stack buffer, so an idle plain connection holds no
// read buffer at all (10,000 idle SMTP/IMAP clients cost sockets, not
// buffers). TLS connections read through the ssl::stream.
//
// STARTTLS: a StartTls output sets tls_pending_ and pauses; a readability
// wait still in flight is cancelled (it consumed nothing), anything read but
// held is dropped, and only then is the invitation ("220 ...") written and
// the handshake run. So the first bytes after the invitation are read by
// OpenSSL, never by the Session.
#include <openssl/ssl.h>

#include <array>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/base/log.h"
#include "libs/netserver/server_impl.h"

namespace mailgrid::netserver {

using asio::ip::tcp;

namespace {
// A TLS connection keeps its read buffer (tls_buf_) for its whole life:
// small, for 10,000 idle connections.
constexpr size_t kReadChunk = 16 * 1024;
// A plain read goes to a buffer on the loop thread's stack, so it can be
// big: a 100 KB message body is then taken in two reads, not seven loop
// turns (issue 8's one-session row).
constexpr size_t kPlainReadChunk = 64 * 1024;
// After a timeout goodbye: how long the goodbye may take to be written.
constexpr absl::Duration kGoodbyeTimeout = absl::Seconds(10);
}  // namespace

ConnImpl::ConnImpl(Server::Impl* server, Listener* listener, tcp::socket socket, uint64_t id)
    : server_(server),
      listener_(listener),
      socket_(std::move(socket)),
      timer_(socket_.get_executor()),
      idle_(server->options().idle_timeout) {
  info_.id = id;
  info_.listener = listener->config.name;
  info_.implicit_tls = listener->config.implicit_tls;
  asio::error_code ec;
  auto remote = socket_.remote_endpoint(ec);
  if (!ec) {
    info_.remote_ip = remote.address().to_string();
    info_.remote_port = remote.port();
  }
  auto local = socket_.local_endpoint(ec);
  if (!ec) {
    info_.local_ip = local.address().to_string();
    info_.local_port = local.port();
  }
  socket_.set_option(tcp::no_delay(true), ec);
  socket_.non_blocking(true, ec);
}

ConnImpl::~ConnImpl() = default;

void ConnImpl::Post(std::function<Output()> fn) {
  asio::post(socket_.get_executor(), [self = shared_from_this(), fn = std::move(fn)] {
    if (self->closed_) return;
    self->Apply(fn());
  });
}

void ConnImpl::SetIdleTimeout(absl::Duration timeout) {
  if (timeout == idle_) return;
  idle_ = timeout;
  if (!closed_ && !timed_out_) ArmTimer(idle_);
}

void ConnImpl::Start() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    if (self->closed_) return;
    if (self->info_.implicit_tls) {
      self->Handshake(/*implicit=*/true);
      return;
    }
    self->ArmTimer(self->idle_);
    self->Apply(self->session_->OnConnect());
  });
}

void ConnImpl::RequestShutdown() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    if (self->closed_ || self->shutdown_asked_) return;
    self->shutdown_asked_ = true;
    if (self->handshaking_) {
      self->DoClose("shutdown");
      return;
    }
    self->Apply(self->session_->OnShutdown());
  });
}

void ConnImpl::ForceClose() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] { self->DoClose("shutdown"); });
}

void ConnImpl::Apply(Output out) {
  if (closed_) return;
  paused_ = out.pause_reading;
  if (out.start_tls) {
    if (tls_ || server_->ssl() == nullptr || tls_pending_) {
      // Nothing sane to do: a second STARTTLS on TLS, or no certificate.
      if (!out.bytes.empty()) outq_.push_back(std::move(out.bytes));
      close_after_write_ = true;
    } else {
      tls_pending_ = true;
      paused_ = true;
      tls_invite_ = std::move(out.bytes);
      if (!held_.empty()) {
        server_->discarded += held_.size();
        held_.clear();
      }
      if (reading_) {
        asio::error_code ec;
        socket_.cancel(ec);  // the readability wait consumed nothing
      }
    }
  } else if (!out.bytes.empty()) {
    outq_.push_back(std::move(out.bytes));
  }
  if (out.close) close_after_write_ = true;
  Pump();
  if (out.then && !closed_) {
    // The session's next step, on this thread now that its bytes are out
    // (or queued): no post to the strand, which would wake another loop
    // thread for it.
    std::function<Output()> next = std::move(out.then);
    Apply(next());
  }
}

void ConnImpl::Pump() {
  if (closed_) return;
  StartWrite();
  MaybeStartTls();
  if (close_after_write_ && !writing_ && outq_.empty() && !tls_pending_ && !handshaking_) {
    DoClose("closed");
    return;
  }
  if (paused_ || close_after_write_ || tls_pending_ || handshaking_) return;
  if (!held_.empty()) {
    std::string data = std::move(held_);
    held_.clear();
    Deliver(data);
    return;
  }
  if (!reading_) StartRead();
}

void ConnImpl::Deliver(std::string_view data) {
  if (delivering_) {  // a Post cannot run inside OnBytes, but be safe
    held_.append(data);
    return;
  }
  delivering_ = true;
  Output out = session_->OnBytes(data);
  delivering_ = false;
  Apply(std::move(out));
}

void ConnImpl::StartRead() {
  reading_ = true;
  if (tls_) {
    if (tls_buf_.empty()) tls_buf_.resize(kReadChunk);
    tls_->async_read_some(asio::buffer(tls_buf_),
                          [self = shared_from_this()](const asio::error_code& ec, size_t n) {
                            self->OnTlsRead(ec, n);
                          });
    return;
  }
  socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](
                                                 const asio::error_code& ec) {
    self->OnReadable(ec);
  });
}

void ConnImpl::OnReadable(const asio::error_code& ec) {
  reading_ = false;
  if (closed_) return;
  if (tls_pending_) {  // STARTTLS asked meanwhile: leave the bytes to OpenSSL
    Pump();
    return;
  }
  if (ec == asio::error::operation_aborted) {
    Pump();
    return;
  }
  if (ec) {
    DoClose(ec.message());
    return;
  }
  std::array<char, kPlainReadChunk> buf;
  asio::error_code rec;
  size_t n = socket_.read_some(asio::buffer(buf), rec);
  if (rec == asio::error::would_block || rec == asio::error::try_again) {
    Pump();
    return;
  }
  if (rec) {
    DoClose(rec == asio::error::eof ? "eof" : rec.message());
    return;
  }
  server_->bytes_in += n;
  if (listener_->metrics.bytes_in) listener_->metrics.bytes_in->Increment(static_cast<double>(n));
  timed_out_ = false;
  ArmTimer(idle_);
  if (paused_ || close_after_write_) {
    held_.append(buf.data(), n);
    Pump();
    return;
  }
  Deliver(std::string_view(buf.data(), n));
}

void ConnImpl::OnTlsRead(const asio::error_code& ec, size_t n) {
  reading_ = false;
  if (closed_) return;
  if (ec) {
    DoClose(ec == asio::error::eof || ec == asio::ssl::error::stream_truncated ? "eof"
                                                                                : ec.message());
    return;
  }
  server_->bytes_in += n;
  if (listener_->metrics.bytes_in) listener_->metrics.bytes_in->Increment(static_cast<double>(n));
  timed_out_ = false;
  ArmTimer(idle_);
  if (paused_ || close_after_write_) {
    held_.append(tls_buf_.data(), n);
    Pump();
    return;
  }
  Deliver(std::string_view(tls_buf_.data(), n));
}

void ConnImpl::StartWrite() {
  if (writing_ || outq_.empty() || handshaking_) return;
  writing_ = true;
  if (outq_.size() > 1) {
    // Replies queued while a write was in flight go out together: one
    // send (one TLS record) instead of one per reply.
    std::string& first = outq_.front();
    for (auto it = std::next(outq_.begin()); it != outq_.end(); ++it) first += *it;
    outq_.erase(std::next(outq_.begin()), outq_.end());
  }
  if (!tls_ && WriteNow()) {
    writing_ = false;
    return;
  }
  auto done = [self = shared_from_this()](const asio::error_code& ec, size_t n) {
    self->OnWritten(ec, n);
  };
  if (tls_) {
    asio::async_write(*tls_, asio::buffer(outq_.front()), std::move(done));
  } else {
    asio::async_write(socket_, asio::buffer(outq_.front()), std::move(done));
  }
}

// Plain sockets (non-blocking): the queued bytes go out in one send when
// the socket takes them whole, as replies usually are. An async_write's
// completion is posted as new work, which wakes another loop thread (a
// context switch per reply on a one-session transaction, issue 8); this
// posts nothing. True when the head of the queue is written; false leaves
// what is left (maybe all of it) to async_write, which also reports errors.
bool ConnImpl::WriteNow() {
  std::string& front = outq_.front();
  asio::error_code ec;
  size_t n = socket_.write_some(asio::buffer(front), ec);
  if (ec) return false;
  if (n < front.size()) {
    CountBytesOut(n);
    front.erase(0, n);
    return false;
  }
  Written(n);
  return true;
}

void ConnImpl::CountBytesOut(size_t n) {
  server_->bytes_out += n;
  if (listener_->metrics.bytes_out) listener_->metrics.bytes_out->Increment(static_cast<double>(n));
}

// The head of the queue (`n` bytes) is written.
void ConnImpl::Written(size_t n) {
  CountBytesOut(n);
  outq_.pop_front();
  if (!timed_out_) ArmTimer(idle_);  // progress: a slow reader is not idle
}

void ConnImpl::OnWritten(const asio::error_code& ec, size_t n) {
  writing_ = false;
  if (closed_) return;
  if (ec) {
    DoClose(ec.message());
    return;
  }
  Written(n);
  Pump();
}

void ConnImpl::MaybeStartTls() {
  if (!tls_pending_ || reading_ || writing_ || !outq_.empty()) return;
  tls_pending_ = false;
  handshaking_ = true;
  if (tls_invite_.empty()) {
    Handshake(/*implicit=*/false);
    return;
  }
  std::string invite = std::move(tls_invite_);
  tls_invite_.clear();
  auto buf = std::make_shared<std::string>(std::move(invite));
  asio::async_write(socket_, asio::buffer(*buf),
                    [self = shared_from_this(), buf](const asio::error_code& ec, size_t n) {
                      if (self->closed_) return;
                      if (ec) {
                        self->DoClose(ec.message());
                        return;
                      }
                      self->server_->bytes_out += n;
                      self->Handshake(/*implicit=*/false);
                    });
}

void ConnImpl::Handshake(bool implicit) {
  handshaking_ = true;
  // The socket goes back to blocking semantics for OpenSSL's BIO via asio;
  // asio's ssl::stream does its own non-blocking I/O on the next layer.
  tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, *server_->ssl());
  ArmTimer(server_->options().tls_handshake_timeout);
  tls_->async_handshake(asio::ssl::stream_base::server,
                        [self = shared_from_this(), implicit](const asio::error_code& ec) {
                          self->OnHandshake(ec, implicit);
                        });
}

void ConnImpl::OnHandshake(const asio::error_code& ec, bool implicit) {
  handshaking_ = false;
  if (closed_) return;
  if (ec) {
    ++server_->tls_failures;
    if (listener_->metrics.tls_failures) listener_->metrics.tls_failures->Increment();
    DoClose(absl::StrCat("tls handshake failed: ", ec.message()));
    return;
  }
  ++server_->tls_handshakes;
  SSL* ssl = tls_->native_handle();
  tls_info_.active = true;
  tls_info_.version = SSL_get_version(ssl);
  const char* cipher = SSL_get_cipher_name(ssl);
  tls_info_.cipher = cipher ? cipher : "";
  if (listener_->metrics.tls_handshakes) {
    listener_->metrics.tls_handshakes
        ->Add({{"listener", info_.listener}, {"version", tls_info_.version}})
        .Increment();
  }
  ArmTimer(idle_);
  if (shutdown_asked_) {
    Apply(session_->OnShutdown());
    return;
  }
  paused_ = false;
  Apply(implicit ? session_->OnConnect() : session_->OnTlsEstablished(tls_info_));
}

void ConnImpl::ArmTimer(absl::Duration d) {
  if (d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    deadline_ = asio::steady_timer::time_point::max();
    timer_.cancel();
    timer_waiting_ = false;
    return;
  }
  // Called at every read and write: moving the wait later would cancel it,
  // and asio posts the cancelled handler as new work (another loop thread
  // woken, issue 8). A later deadline is only noted; OnTimer re-arms.
  deadline_ = asio::steady_timer::clock_type::now() + absl::ToChronoNanoseconds(d);
  if (timer_waiting_ && timer_.expiry() <= deadline_) return;
  timer_.expires_at(deadline_);
  timer_waiting_ = true;
  timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) { self->OnTimer(ec); });
}

void ConnImpl::OnTimer(const asio::error_code& ec) {
  // A cancelled wait: either the connection closed or a new wait (an
  // earlier deadline, ArmTimer) replaced it and is pending.
  if (ec == asio::error::operation_aborted || closed_) return;
  timer_waiting_ = false;
  if (deadline_ > asio::steady_timer::clock_type::now()) {  // activity since: wait on
    timer_.expires_at(deadline_);
    timer_waiting_ = true;
    timer_.async_wait([self = shared_from_this()](const asio::error_code& e) { self->OnTimer(e); });
    return;
  }
  if (timed_out_ || handshaking_) {
    // Second expiry (the goodbye could not be written) or a stalled handshake.
    if (handshaking_) ++server_->tls_failures;
    DoClose(handshaking_ ? "tls handshake timeout" : "timeout");
    return;
  }
  timed_out_ = true;
  ++server_->timeouts;
  if (listener_->metrics.timeouts) listener_->metrics.timeouts->Increment();
  Output out = session_->OnTimeout();
  out.close = true;
  out.start_tls = false;
  ArmTimer(kGoodbyeTimeout);
  Apply(std::move(out));
}

void ConnImpl::DoClose(std::string_view reason) {
  if (closed_) return;
  closed_ = true;
  asio::error_code ec;
  timer_.cancel();
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  if (!held_.empty() && tls_pending_) server_->discarded += held_.size();
  held_.clear();
  outq_.clear();
  if (session_) session_->OnClose(reason);
  // Breaks a Session that holds its Connection by shared_ptr; Post()ed
  // functions check closed_ first, so none runs against it.
  session_.reset();
  server_->Unregister(info_.id, info_.remote_ip, listener_);
}

}  // namespace mailgrid::netserver
