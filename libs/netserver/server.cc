// Server: listeners, caps, threads and shutdown. The per-connection state
// machine is in connection.cc.
#include <openssl/ssl.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/base/net.h"
#include "libs/netserver/server_impl.h"
#include "prometheus/registry.h"

namespace mailgrid::netserver {

using asio::ip::tcp;

Server::Impl::Impl(ServerOptions o) : options_(std::move(o)) {}

Server::Impl::~Impl() { Shutdown(absl::ZeroDuration()); }

absl::Status Server::Impl::Init() {
  if (options_.threads < 1) return absl::InvalidArgumentError("netserver: threads must be >= 1");
  if (options_.tls_cert_file.empty() != options_.tls_key_file.empty()) {
    return absl::InvalidArgumentError("netserver: TLS needs both a certificate and a key file");
  }
  if (options_.tls_cert_file.empty()) return absl::OkStatus();
  auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  asio::error_code ec;
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use,
                   ec);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  // Idle TLS connections keep no read/write buffers (thousands of IMAP IDLEs).
  SSL_CTX_set_mode(ctx->native_handle(), SSL_MODE_RELEASE_BUFFERS);
  ctx->use_certificate_chain_file(options_.tls_cert_file, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS certificate ", options_.tls_cert_file, ": ", ec.message()));
  }
  ctx->use_private_key_file(options_.tls_key_file, asio::ssl::context::pem, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS key ", options_.tls_key_file, ": ", ec.message()));
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return absl::InvalidArgumentError("TLS key does not match the certificate");
  }
  // The files above are the start-time check; from now on every handshake
  // takes the pair the reloader read last (certificate renewal, no restart).
  auto reloader = rpc::SslCertificateReloader::Start(
      options_.tls_cert_file, options_.tls_key_file,
      options_.tls_reload_interval.value_or(rpc::SslCertificateReloader::ProcessRefresh()));
  if (!reloader.ok()) return reloader.status();
  reloader_ = *std::move(reloader);
  reloader_->Install(ctx->native_handle());
  ssl_ = std::move(ctx);
  return absl::OkStatus();
}

namespace {

ListenerMetrics MakeMetrics(prometheus::Registry* r, const std::string& name) {
  ListenerMetrics m;
  if (r == nullptr) return m;
  prometheus::Labels l{{"listener", name}};
  m.accepted = &prometheus::BuildCounter()
                    .Name("mailgrid_netserver_connections_accepted_total")
                    .Help("Connections accepted")
                    .Register(*r)
                    .Add(l);
  m.refused = &prometheus::BuildCounter()
                   .Name("mailgrid_netserver_connections_refused_total")
                   .Help("Connections refused by the global or per-IP cap")
                   .Register(*r)
                   .Add(l);
  m.active = &prometheus::BuildGauge()
                  .Name("mailgrid_netserver_connections_active")
                  .Help("Open connections")
                  .Register(*r)
                  .Add(l);
  m.timeouts = &prometheus::BuildCounter()
                    .Name("mailgrid_netserver_timeouts_total")
                    .Help("Connections closed by the idle timer")
                    .Register(*r)
                    .Add(l);
  m.tls_failures = &prometheus::BuildCounter()
                        .Name("mailgrid_netserver_tls_failures_total")
                        .Help("Failed TLS handshakes")
                        .Register(*r)
                        .Add(l);
  auto& bytes = prometheus::BuildCounter()
                    .Name("mailgrid_netserver_bytes_total")
                    .Help("Bytes read (in) and written (out), after TLS decryption")
                    .Register(*r);
  m.bytes_in = &bytes.Add({{"listener", name}, {"direction", "in"}});
  m.bytes_out = &bytes.Add({{"listener", name}, {"direction", "out"}});
  m.tls_handshakes = &prometheus::BuildCounter()
                          .Name("mailgrid_netserver_tls_handshakes_total")
                          .Help("Completed TLS handshakes by protocol version")
                          .Register(*r);
  return m;
}

absl::StatusOr<tcp::endpoint> ResolveListen(asio::io_context& io, const std::string& address) {
  auto hp = net::ParseHostPort(address);
  if (!hp.ok()) return hp.status();
  asio::error_code ec;
  asio::ip::address ip = asio::ip::make_address(hp->host, ec);
  if (!ec) return tcp::endpoint(ip, static_cast<unsigned short>(hp->port));
  tcp::resolver resolver(io);
  auto results = resolver.resolve(hp->host, std::to_string(hp->port), ec);
  if (ec || results.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot resolve listen address ", address));
  }
  return results.begin()->endpoint();
}

}  // namespace

absl::StatusOr<int> Server::Impl::AddListener(ListenerConfig config) {
  if (!config.factory) return absl::InvalidArgumentError("listener needs a session factory");
  if (config.implicit_tls && !ssl_) {
    return absl::InvalidArgumentError(
        absl::StrCat("listener ", config.name, ": implicit TLS without a certificate"));
  }
  auto endpoint = ResolveListen(io_, config.address);
  if (!endpoint.ok()) return endpoint.status();
  auto l = std::make_unique<Listener>();
  l->acceptor = std::make_unique<tcp::acceptor>(asio::make_strand(io_));
  asio::error_code ec;
  l->acceptor->open(endpoint->protocol(), ec);
  if (!ec) l->acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) l->acceptor->bind(*endpoint, ec);
  if (!ec) l->acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("listen ", config.name, " on ", config.address, ": ", ec.message()));
  }
  l->port = l->acceptor->local_endpoint().port();
  l->metrics = MakeMetrics(options_.registry.get(), config.name);
  l->config = std::move(config);
  Listener* raw = l.get();
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::FailedPreconditionError("server is shutting down");
    listeners_.push_back(std::move(l));
  }
  log::Info("listening", {{"listener", raw->config.name},
                          {"address", endpoint->address().to_string()},
                          {"port", raw->port},
                          {"tls", raw->config.implicit_tls ? "implicit" : "starttls-capable"}});
  asio::post(raw->acceptor->get_executor(), [this, raw] { DoAccept(raw); });
  return raw->port;
}

void Server::Impl::DoAccept(Listener* l) {
  if (!l->acceptor->is_open()) return;
  l->acceptor->async_accept(asio::make_strand(io_),
                            [this, l](const asio::error_code& ec, tcp::socket socket) {
                              if (ec == asio::error::operation_aborted) return;
                              if (!ec) OnAccept(l, std::move(socket));
                              // EMFILE and friends: keep accepting; the caps
                              // are what protects us, not a dead listener.
                              DoAccept(l);
                            });
}

bool Server::Impl::Register(const std::string& ip, uint64_t* id) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return false;
  size_t& n = per_ip_[ip];
  if (active_ >= options_.max_connections ||
      (options_.max_connections_per_ip != 0 && n >= options_.max_connections_per_ip)) {
    if (n == 0) per_ip_.erase(ip);
    ++refused_;
    return false;
  }
  ++n;
  ++active_;
  ++accepted_;
  *id = next_id_++;
  return true;
}

void Server::Impl::Unregister(uint64_t id, const std::string& ip, Listener* l) {
  absl::MutexLock lock(&mu_);
  auto it = per_ip_.find(ip);
  if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
  --active_;
  conns_.erase(id);
  if (l->metrics.active) l->metrics.active->Decrement();
}

void Server::Impl::OnAccept(Listener* l, tcp::socket socket) {
  asio::error_code ec;
  tcp::endpoint remote = socket.remote_endpoint(ec);
  if (ec) return;  // already gone
  std::string ip = remote.address().to_string();
  uint64_t id = 0;
  if (!Register(ip, &id)) {
    if (l->metrics.refused) l->metrics.refused->Increment();
    if (!l->config.implicit_tls && !l->config.over_capacity_reply.empty()) {
      // A fresh socket's send buffer is empty: this small write cannot block.
      asio::write(socket, asio::buffer(l->config.over_capacity_reply), ec);
    }
    socket.shutdown(tcp::socket::shutdown_both, ec);
    socket.close(ec);
    log::Debug("connection refused by cap", {{"listener", l->config.name}, {"ip", ip}});
    return;
  }
  if (l->metrics.accepted) l->metrics.accepted->Increment();
  if (l->metrics.active) l->metrics.active->Increment();
  auto conn = std::make_shared<ConnImpl>(this, l, std::move(socket), id);
  {
    absl::MutexLock lock(&mu_);
    conns_[id] = conn;
  }
  conn->set_session(l->config.factory(conn));
  conn->Start();
}

absl::Status Server::Impl::Start() {
  absl::MutexLock lock(&mu_);
  if (started_) return absl::FailedPreconditionError("already started");
  if (stopping_) return absl::FailedPreconditionError("shut down");
  started_ = true;
  work_.emplace(io_.get_executor());
  for (int i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this] {
      for (;;) {
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          // Nothing of ours throws; a throwing handler is a bug, but the
          // other connections must live on.
          log::Error("netserver handler threw", {{"what", e.what()}});
        }
      }
    });
  }
  return absl::OkStatus();
}

void Server::Impl::Shutdown(absl::Duration grace) {
  std::vector<std::shared_ptr<ConnImpl>> conns;
  bool started;
  {
    absl::MutexLock lock(&mu_);
    if (shut_) return;
    shut_ = true;
    stopping_ = true;
    started = started_;
    for (auto& [id, weak] : conns_) {
      if (auto c = weak.lock()) conns.push_back(std::move(c));
    }
  }
  for (auto& l : listeners_) {
    Listener* raw = l.get();
    asio::post(raw->acceptor->get_executor(), [raw] {
      asio::error_code ec;
      raw->acceptor->close(ec);
    });
  }
  for (auto& c : conns) c->RequestShutdown();
  conns.clear();
  if (started) {
    auto all_closed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return active_ == 0; };
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(&all_closed), grace)) {
      for (auto& [id, weak] : conns_) {
        if (auto c = weak.lock()) conns.push_back(std::move(c));
      }
      mu_.Unlock();
      for (auto& c : conns) c->ForceClose();
      conns.clear();
      mu_.Lock();
      mu_.AwaitWithTimeout(absl::Condition(&all_closed), absl::Seconds(10));
    }
  }
  work_.reset();
  io_.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  // Handlers that never ran hold connections; destroy them before the
  // listeners they point at.
  io_.restart();
  io_.poll();
  listeners_.clear();
}

int Server::Impl::port(std::string_view name) const {
  absl::MutexLock lock(&mu_);
  for (const auto& l : listeners_) {
    if (l->config.name == name) return l->port;
  }
  return 0;
}

Stats Server::Impl::stats() const {
  Stats s;
  {
    absl::MutexLock lock(&mu_);
    s.accepted = accepted_;
    s.active = active_;
    s.refused_capacity = refused_;
  }
  s.tls_handshakes = tls_handshakes.load();
  s.tls_failures = tls_failures.load();
  s.timeouts = timeouts.load();
  s.discarded_plaintext = discarded.load();
  s.bytes_in = bytes_in.load();
  s.bytes_out = bytes_out.load();
  return s;
}

// ---- Server (pimpl) --------------------------------------------------------

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

absl::StatusOr<std::unique_ptr<Server>> Server::Create(ServerOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  if (absl::Status s = impl->Init(); !s.ok()) return s;
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

absl::StatusOr<int> Server::AddListener(ListenerConfig config) {
  return impl_->AddListener(std::move(config));
}
absl::Status Server::Start() { return impl_->Start(); }
void Server::Shutdown(absl::Duration grace) { impl_->Shutdown(grace); }
int Server::port(std::string_view listener) const { return impl_->port(listener); }
Stats Server::stats() const { return impl_->stats(); }
bool Server::tls_configured() const { return impl_->ssl() != nullptr; }

}  // namespace mailgrid::netserver
