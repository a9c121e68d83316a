// Internals of netserver (server.h): the Server::Impl and the per-connection
// state machine. Not a public header.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <asio.hpp>
#include <asio/ssl.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "libs/netserver/server.h"
#include "libs/rpc/ssl_reloader.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"

namespace mailgrid::netserver {

class ConnImpl;

struct ListenerMetrics {
  prometheus::Counter* accepted = nullptr;
  prometheus::Counter* refused = nullptr;
  prometheus::Gauge* active = nullptr;
  prometheus::Counter* timeouts = nullptr;
  prometheus::Counter* tls_failures = nullptr;
  prometheus::Counter* bytes_in = nullptr;
  prometheus::Counter* bytes_out = nullptr;
  prometheus::Family<prometheus::Counter>* tls_handshakes = nullptr;  // {listener, version}
};

struct Listener {
  ListenerConfig config;
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor;
  int port = 0;
  ListenerMetrics metrics;
};

class Server::Impl {
 public:
  explicit Impl(ServerOptions o);
  ~Impl();

  absl::Status Init();
  absl::StatusOr<int> AddListener(ListenerConfig config);
  absl::Status Start();
  void Shutdown(absl::Duration grace);
  int port(std::string_view name) const;
  Stats stats() const;

  // Called by connections.
  void Unregister(uint64_t id, const std::string& ip, Listener* listener);
  asio::ssl::context* ssl() { return ssl_.get(); }
  const ServerOptions& options() const { return options_; }

  std::atomic<uint64_t> tls_handshakes{0}, tls_failures{0}, timeouts{0}, discarded{0},
      bytes_in{0}, bytes_out{0};

 private:
  void DoAccept(Listener* l);
  void OnAccept(Listener* l, asio::ip::tcp::socket socket);
  // Counts the connection against the caps; false if refused.
  bool Register(const std::string& ip, uint64_t* id);

  ServerOptions options_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  // Declared before ssl_: the context's handshakes call into it, so it is
  // destroyed after the context.
  std::unique_ptr<rpc::SslCertificateReloader> reloader_;
  std::unique_ptr<asio::ssl::context> ssl_;
  std::vector<std::thread> threads_;
  std::vector<std::unique_ptr<Listener>> listeners_;  // guarded by mu_ for add; stable addresses

  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool shut_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  size_t active_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t accepted_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, size_t> per_ip_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::weak_ptr<ConnImpl>> conns_ ABSL_GUARDED_BY(mu_);

  friend class ConnImpl;
};

// One connection. Everything below runs on `strand_` except Post().
class ConnImpl final : public Connection, public std::enable_shared_from_this<ConnImpl> {
 public:
  ConnImpl(Server::Impl* server, Listener* listener, asio::ip::tcp::socket socket, uint64_t id);
  ~ConnImpl() override;

  const ConnectionInfo& info() const override { return info_; }
  void Post(std::function<Output()> fn) override;
  void SetIdleTimeout(absl::Duration timeout) override;
  TlsInfo tls() const override { return tls_info_; }

  void set_session(std::unique_ptr<Session> s) { session_ = std::move(s); }
  // Entry points from the server, posted onto the strand.
  void Start();
  void RequestShutdown();
  void ForceClose();

 private:
  void Apply(Output out);
  void Pump();
  void StartRead();
  void OnReadable(const asio::error_code& ec);
  void OnTlsRead(const asio::error_code& ec, size_t n);
  void Deliver(std::string_view data);
  void StartWrite();
  bool WriteNow();
  void Written(size_t n);
  void CountBytesOut(size_t n);
  void OnWritten(const asio::error_code& ec, size_t n);
  void MaybeStartTls();
  void Handshake(bool implicit);
  void OnHandshake(const asio::error_code& ec, bool implicit);
  void ArmTimer(absl::Duration d);
  void OnTimer(const asio::error_code& ec);
  void DoClose(std::string_view reason);

  Server::Impl* server_;
  Listener* listener_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  // When the connection times out (ArmTimer). The timer's wait is only
  // moved EARLIER at once; a later deadline is picked up when the wait
  // fires (OnTimer re-arms), so activity costs no timer cancellation.
  asio::steady_timer::time_point deadline_;
  bool timer_waiting_ = false;  // an async_wait on timer_ is pending
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket&>> tls_;
  std::unique_ptr<Session> session_;
  ConnectionInfo info_;
  TlsInfo tls_info_;

  std::deque<std::string> outq_;
  std::string tls_invite_;  // written once no plaintext read is in flight
  std::string held_;        // read while paused, not yet delivered
  std::vector<char> tls_buf_;
  absl::Duration idle_;
  bool reading_ = false;
  bool writing_ = false;
  bool paused_ = false;
  bool tls_pending_ = false;  // StartTls requested, handshake not begun
  bool handshaking_ = false;
  bool close_after_write_ = false;
  bool closed_ = false;
  bool timed_out_ = false;
  bool shutdown_asked_ = false;
  bool delivering_ = false;  // inside Session::OnBytes (no re-entry)
};

}  // namespace mailgrid::netserver
