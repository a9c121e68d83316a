// Test helper: a real redis-server on a free loopback port, in a temporary
// directory, with persistence off. For the tests of any component that needs
// Redis; never used by a service.
//
//   MG_ASSERT_OK_AND_ASSIGN(auto server, RedisServer::Start());  // status_macros.h
//   redis::Client client(server->ClientOptions());
//
// The server is killed if the thread that started it exits (PDEATHSIG), so a
// crashed test leaves no stray redis-server behind: start it from the test's
// main thread.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/redis/options.h"

namespace mailgrid::redis::testing {

// TLS for the server: it then listens with --tls-port only (no plain port),
// and url()/ClientOptions() are rediss:// and trust `ca_file`.
struct RedisServerTls {
  std::string cert_file;
  std::string key_file;
  // The CA that signed cert_file (and, with auth_clients, the clients').
  std::string ca_file;
  // --tls-auth-clients: require a client certificate.
  bool auth_clients = false;
  // A client certificate ClientOptions() presents (empty: none).
  std::string client_cert_file;
  std::string client_key_file;
};

struct RedisServerOptions {
  // requirepass; empty: no password.
  std::string password;
  // Appended to the command line, e.g. {"--maxmemory", "1mb"}.
  std::vector<std::string> extra_args;
  // Empty cert_file: plain text.
  RedisServerTls tls;
  // How long Start()/Restart() wait for the first PING answer.
  absl::Duration startup_timeout = absl::Seconds(60);
};

class RedisServer {
 public:
  // Finds redis-server ($MAILGRID_REDIS_SERVER, then $PATH, then
  // /usr/bin/redis-server), starts it and waits until it answers PING.
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(RedisServerOptions options = {});
  // Stops the server and removes its directory.
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // SIGTERM and wait for exit (SIGKILL if it lingers). Its clients see the
  // connections closed. No-op if not running.
  absl::Status Stop();
  // SIGKILL: a crash, no goodbye.
  absl::Status Kill();
  // Starts it again on the same port (after Stop/Kill) and waits for PING.
  // Data is gone, as after a real restart without persistence.
  absl::Status Restart();

  bool running() const { return pid_ > 0; }
  const std::string& host() const { return host_; }
  int port() const { return port_; }
  // "redis://[:password@]127.0.0.1:port", or with TLS
  // "rediss://[:password@]127.0.0.1:port?ca=...[&cert=...&key=...]"
  std::string url() const;
  // Options for a Client of this server, with timeouts generous enough for
  // a loaded shared machine.
  Options ClientOptions() const;
  // The server's working directory; its log is dir()/redis.log.
  const std::string& dir() const { return dir_; }
  // The last lines of the server's log, for failure messages.
  std::string LogTail() const;

 private:
  RedisServer(std::string binary, RedisServerOptions options, std::string dir);
  absl::Status Launch();
  absl::Status WaitReady();
  absl::Status Signal(int sig);

  const std::string binary_;
  const RedisServerOptions options_;
  const std::string dir_;
  const std::string host_ = "127.0.0.1";
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace mailgrid::redis::testing
