#include "libs/redis/testing/redis_server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "libs/base/status.h"
#include "libs/redis/client.h"

namespace mailgrid::redis::testing {
namespace {

constexpr char kLogName[] = "redis.log";
constexpr char kStdoutName[] = "stdout.log";

std::string FindBinary() {
  if (const char* env = std::getenv("MAILGRID_REDIS_SERVER"); env != nullptr && *env != '\0') {
    return env;
  }
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
      std::string candidate = absl::StrCat(dir, "/redis-server");
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  if (::access("/usr/bin/redis-server", X_OK) == 0) return "/usr/bin/redis-server";
  return "";
}

absl::StatusOr<std::string> MakeTempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/mailgrid-redis-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp ", pattern, ": ", std::strerror(errno)));
  }
  return pattern;
}

// Another process may take the port before redis-server binds it; Start()
// retries with a new one when that happens.
absl::StatusOr<int> PickFreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat("bind 127.0.0.1:0: ", std::strerror(err)));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string PercentEncode(absl::string_view s) {
  std::string out;
  for (char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      absl::StrAppendFormat(&out, "%%%02X", static_cast<unsigned char>(c));
    }
  }
  return out;
}

}  // namespace

RedisServer::RedisServer(std::string binary, RedisServerOptions options, std::string dir)
    : binary_(std::move(binary)), options_(std::move(options)), dir_(std::move(dir)) {}

RedisServer::~RedisServer() {
  Kill().IgnoreError();  // nothing to save; do not wait on a graceful exit
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start(RedisServerOptions options) {
  std::string binary = FindBinary();
  if (binary.empty()) {
    return absl::FailedPreconditionError(
        "redis-server not found (set MAILGRID_REDIS_SERVER or apt-get install redis-server)");
  }
  ASSIGN_OR_RETURN(std::string dir, MakeTempDir());
  std::unique_ptr<RedisServer> server(
      new RedisServer(std::move(binary), std::move(options), std::move(dir)));
  absl::Status last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    ASSIGN_OR_RETURN(server->port_, PickFreePort());
    RETURN_IF_ERROR(server->Launch());
    last = server->WaitReady();
    if (last.ok()) return server;
    server->Kill().IgnoreError();
    // Only a lost race for the port is worth another try.
    if (!absl::StrContains(server->LogTail(), "Address already in use")) break;
  }
  return last;
}

absl::Status RedisServer::Launch() {
  // clang-format off
  std::vector<std::string> args = {binary_,
                                   "--port", std::to_string(port_),
                                   "--bind", host_,
                                   "--save", "",
                                   "--appendonly", "no",
                                   "--daemonize", "no",
                                   "--dir", dir_,
                                   "--logfile", absl::StrCat(dir_, "/", kLogName)};
  // clang-format on
  if (const RedisServerTls& tls = options_.tls; !tls.cert_file.empty()) {
    args[2] = "0";  // no plain listener: "--port 0"
    // clang-format off
    args.insert(args.end(), {"--tls-port", std::to_string(port_),
                             "--tls-cert-file", tls.cert_file,
                             "--tls-key-file", tls.key_file,
                             "--tls-ca-cert-file", tls.ca_file,
                             "--tls-auth-clients", tls.auth_clients ? "yes" : "no"});
    // clang-format on
  }
  if (!options_.password.empty()) {
    args.push_back("--requirepass");
    args.push_back(options_.password);
  }
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  // Everything the child needs is prepared before fork(): after it, in a
  // multi-threaded parent, only async-signal-safe calls are allowed.
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string out_path = absl::StrCat(dir_, "/", kStdoutName);
  int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int null_in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out < 0 || null_in < 0) {
    int err = errno;
    if (out >= 0) ::close(out);
    if (null_in >= 0) ::close(null_in);
    return absl::InternalError(absl::StrCat("open ", out_path, ": ", std::strerror(err)));
  }
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // parent died before prctl
    ::dup2(null_in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    // Do not leak the test's sockets (e.g. client connections) into Redis.
    if (::close_range(3, ~0U, 0) != 0) {
      for (int fd = 3; fd < 1024; ++fd) ::close(fd);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int fork_errno = errno;
  ::close(out);
  ::close(null_in);
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(fork_errno)));
  pid_ = pid;
  return absl::OkStatus();
}

absl::Status RedisServer::WaitReady() {
  Options opts = ClientOptions();
  opts.connect_timeout = absl::Milliseconds(500);
  opts.pool_size = 1;
  Client client(opts);
  const absl::Time deadline = absl::Now() + options_.startup_timeout;
  absl::Status ping;
  while (absl::Now() < deadline) {
    int wstatus = 0;
    if (::waitpid(pid_, &wstatus, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError(absl::StrCat("redis-server on port ", port_,
                                                 " exited (wait status ", wstatus,
                                                 ") before answering PING; log:\n", LogTail()));
    }
    ping = client.Ping();
    if (ping.ok()) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat("redis-server on port ", port_,
                                                  " did not answer PING: ", ping.ToString(),
                                                  "; log:\n", LogTail()));
}

absl::Status RedisServer::Signal(int sig) {
  if (pid_ <= 0) return absl::OkStatus();
  if (::kill(pid_, sig) != 0 && errno != ESRCH) {
    return absl::InternalError(absl::StrCat("kill: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status RedisServer::Stop() {
  if (pid_ <= 0) return absl::OkStatus();
  RETURN_IF_ERROR(Signal(SIGTERM));
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::OkStatus();
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return Kill();
}

absl::Status RedisServer::Kill() {
  if (pid_ <= 0) return absl::OkStatus();
  RETURN_IF_ERROR(Signal(SIGKILL));
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  return absl::OkStatus();
}

absl::Status RedisServer::Restart() {
  if (pid_ > 0) return absl::FailedPreconditionError("redis-server is still running");
  // The port was ours a moment ago; if something grabbed it in between, it
  // is usually gone again soon, so keep trying for a while.
  absl::Status last;
  for (int attempt = 0; attempt < 40; ++attempt) {
    RETURN_IF_ERROR(Launch());
    last = WaitReady();
    if (last.ok()) return last;
    Kill().IgnoreError();
    if (!absl::StrContains(LogTail(), "Address already in use")) break;
    absl::SleepFor(absl::Milliseconds(250));
  }
  return last;
}

std::string RedisServer::url() const {
  std::string auth =
      options_.password.empty() ? "" : absl::StrCat(":", PercentEncode(options_.password), "@");
  const RedisServerTls& tls = options_.tls;
  if (tls.cert_file.empty()) return absl::StrCat("redis://", auth, host_, ":", port_);
  std::string url =
      absl::StrCat("rediss://", auth, host_, ":", port_, "?ca=", PercentEncode(tls.ca_file));
  if (!tls.client_cert_file.empty()) {
    absl::StrAppend(&url, "&cert=", PercentEncode(tls.client_cert_file),
                    "&key=", PercentEncode(tls.client_key_file));
  }
  return url;
}

Options RedisServer::ClientOptions() const {
  Options o;
  o.host = host_;
  o.port = port_;
  o.password = options_.password;
  o.connect_timeout = absl::Seconds(5);
  o.command_timeout = absl::Seconds(10);
  o.checkout_timeout = absl::Seconds(10);
  if (!options_.tls.cert_file.empty()) {
    o.tls.enabled = true;
    o.tls.ca_file = options_.tls.ca_file;
    o.tls.cert_file = options_.tls.client_cert_file;
    o.tls.key_file = options_.tls.client_key_file;
  }
  return o;
}

std::string RedisServer::LogTail() const {
  std::string text = absl::StrCat(ReadFile(absl::StrCat(dir_, "/", kStdoutName)),
                                  ReadFile(absl::StrCat(dir_, "/", kLogName)));
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  constexpr size_t kTail = 20;
  if (lines.size() > kTail) lines.erase(lines.begin(), lines.end() - kTail);
  return absl::StrJoin(lines, "\n");
}

}  // namespace mailgrid::redis::testing
