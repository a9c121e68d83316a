// netserver: the TCP + TLS server shared by relayd (SMTP) and accessd
// (IMAP, POP3). One asio io_context run by N threads; every connection runs
// on its own strand, so a protocol Session is never called concurrently and
// needs no locks. The protocol is a Session: bytes in, bytes (and actions)
// out; netserver owns sockets, TLS, timers, caps and shutdown.
//
// SECURITY: every connection is hostile.
//  - Caps: a global connection cap and a per-IP cap, checked at accept; the
//    listener's `over_capacity_reply` is written (plain listeners only) and
//    the socket closed.
//  - STARTTLS (CVE-2011-0411 class): when a Session asks for StartTls, no
//    plaintext byte read after that request ever reaches a Session; bytes
//    already read but not delivered (reading paused) and bytes of a read
//    still in flight are discarded and counted (Stats::discarded_plaintext).
//    The reply that invites the handshake ("220 Ready to start TLS") is
//    written only once no plaintext read is outstanding, so a well-behaved
//    client's ClientHello can never be read as plaintext.
//  - TLS 1.2 or later only; certificate and key from PEM files, reloaded
//    while serving (renewals need no restart).
//  - Timeouts: an idle timer per connection (reset on every read; a Session
//    may change it, e.g. RFC 5321 §4.5.3.2's 10 minutes in DATA); on expiry
//    the Session says goodbye (OnTimeout) and the connection closes. A
//    client that does not read what we write is closed when the timer fires
//    again (writes cannot pin a connection forever).
//
// Threads: `threads` run the io_context. Session callbacks run on the
// connection's strand. Connection::Post() is the one thread-safe entry: use
// it to come back from an asynchronous call (a gRPC callback) onto the
// strand.
//
// Shutdown: Server::Shutdown(grace) stops accepting, calls every Session's
// OnShutdown() (SMTP answers 421, IMAP "* BYE"), lets the goodbye be
// written, and force-closes what is still open after `grace`.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace prometheus {
class Registry;
}

namespace mailgrid::netserver {

// What a Session wants done after one of its callbacks. Applied in order:
// write `bytes`; then (if start_tls) run the server side of a TLS handshake;
// then (if close) close once everything is written.
struct Output {
  std::string bytes;
  // Upgrade this plain connection to TLS in place. Ignored (and the
  // connection closed) if TLS is already active or not configured.
  bool start_tls = false;
  // Close after `bytes` are written.
  bool close = false;
  // Stop delivering input until an Output with pause_reading == false is
  // applied (typically the one a Post() callback returns). Reading state is
  // set by every applied Output: pausing is explicit each time.
  bool pause_reading = false;
  // Run on the strand, on the same thread, right after this Output is
  // applied (its bytes written or queued), and apply what it returns: a
  // session's next step that must come after its replies are out (relayd
  // makes a blocking peer call there) without a Post, which would wake
  // another loop thread for it. Dropped if the connection closed.
  std::function<Output()> then;

  static Output Write(std::string bytes) { return Output{std::move(bytes)}; }
  static Output Close(std::string goodbye = {}) {
    Output o{std::move(goodbye)};
    o.close = true;
    return o;
  }
  static Output Pause() {
    Output o;
    o.pause_reading = true;
    return o;
  }
};

struct TlsInfo {
  bool active = false;
  std::string version;  // "TLSv1.3"
  std::string cipher;   // "TLS_AES_256_GCM_SHA384"
};

struct ConnectionInfo {
  uint64_t id = 0;            // unique in this process
  std::string listener;       // ListenerConfig::name
  std::string remote_ip;      // "192.0.2.1" / "2001:db8::1"
  int remote_port = 0;
  std::string local_ip;
  int local_port = 0;
  bool implicit_tls = false;  // the listener is TLS from the first byte
};

// The handle a Session holds on its connection. Keep a std::weak_ptr in
// asynchronous callbacks (the connection owns the Session).
class Connection {
 public:
  virtual ~Connection() = default;
  virtual const ConnectionInfo& info() const = 0;
  // Thread-safe: runs `fn` on this connection's strand and applies the
  // Output it returns. Dropped (fn not run) once the connection is closed,
  // so `fn` may capture the Session's `this`.
  virtual void Post(std::function<Output()> fn) = 0;
  // Strand only (inside Session callbacks or Post functions).
  virtual void SetIdleTimeout(absl::Duration timeout) = 0;
  virtual TlsInfo tls() const = 0;  // strand only
};

// One per connection, created by the listener's factory; called only on the
// connection's strand.
class Session {
 public:
  virtual ~Session() = default;
  // After accept (and, on an implicit-TLS listener, after the handshake):
  // the greeting.
  virtual Output OnConnect() = 0;
  // Bytes read (decrypted when TLS is active). Never called while paused.
  virtual Output OnBytes(std::string_view data) = 0;
  // The STARTTLS handshake succeeded; `info.active` is true.
  virtual Output OnTlsEstablished(const TlsInfo& info) { return {}; }
  // The idle timer fired: say goodbye (e.g. "421 4.4.2 timeout"). The
  // connection closes after writing whatever is returned.
  virtual Output OnTimeout() { return Output::Close(); }
  // The server is shutting down: say goodbye. Return close=false only to
  // finish something in flight (then close yourself later via Post); the
  // server force-closes after its grace period anyway.
  virtual Output OnShutdown() { return Output::Close(); }
  // The connection is gone (peer closed, error, timeout, shutdown). `reason`
  // is for logs: "eof", "timeout", "shutdown", "tls handshake failed: ...".
  virtual void OnClose(std::string_view reason) {}
};

using SessionFactory = std::function<std::unique_ptr<Session>(std::shared_ptr<Connection>)>;

struct ListenerConfig {
  std::string name;     // "smtp", "submission", "imaps": logs and metrics
  std::string address;  // "host:port"; port 0 picks one (see Server::port)
  bool implicit_tls = false;
  SessionFactory factory;
  // Written (plain listeners only) before closing a connection refused by a
  // cap: "421 4.7.0 Too many connections\r\n", "* BYE Too many connections\r\n".
  std::string over_capacity_reply;
};

struct ServerOptions {
  int threads = 2;
  size_t max_connections = 20000;
  size_t max_connections_per_ip = 100;  // 0: no per-IP cap
  absl::Duration idle_timeout = absl::Minutes(5);
  absl::Duration tls_handshake_timeout = absl::Seconds(30);
  // PEM files; required for implicit-TLS listeners and STARTTLS. Re-read
  // every `tls_reload_interval` (rpc::SslCertificateReloader): new
  // handshakes get a renewed certificate, established sessions keep theirs;
  // a half-rotated or mismatched pair is logged and the previous one kept.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Unset: the daemon's --tls-reload-interval (rpc::RunService sets the
  // process default; one minute otherwise). Zero: read once at Create.
  std::optional<absl::Duration> tls_reload_interval;
  // Prometheus families mailgrid_netserver_* with a `listener` label; null:
  // none.
  std::shared_ptr<prometheus::Registry> registry;
};

struct Stats {
  uint64_t accepted = 0;
  uint64_t active = 0;
  uint64_t refused_capacity = 0;  // global or per-IP cap
  uint64_t tls_handshakes = 0;
  uint64_t tls_failures = 0;
  uint64_t timeouts = 0;
  uint64_t discarded_plaintext = 0;  // bytes dropped at STARTTLS
  uint64_t bytes_in = 0, bytes_out = 0;
};

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Create(ServerOptions options);
  ~Server();  // Shutdown(0) if still running

  // Binds a listener (before or after Start). Returns the bound port.
  absl::StatusOr<int> AddListener(ListenerConfig config);
  // Starts the threads; listeners accept from now on.
  absl::Status Start();
  // Stops accepting, asks every Session for its goodbye, waits up to
  // `grace` for connections to close, force-closes the rest, joins threads.
  // Idempotent.
  void Shutdown(absl::Duration grace);

  // Port of a listener by name; 0 if unknown.
  int port(std::string_view listener) const;
  Stats stats() const;
  bool tls_configured() const;

  class Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mailgrid::netserver
