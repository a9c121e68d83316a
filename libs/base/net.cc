#include "libs/base/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/base/strings.h"

namespace mailgrid::net {

std::string HostPort::ToString() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<HostPort> ParseHostPort(std::string_view s) {
  HostPort hp;
  std::string_view port_part;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
      return absl::InvalidArgumentError(absl::StrCat("\"", ToAbsl(s), "\" is not [ipv6]:port"));
    hp.host = std::string(s.substr(1, close - 1));
    port_part = s.substr(close + 2);
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return absl::InvalidArgumentError(absl::StrCat("\"", ToAbsl(s), "\" is not host:port"));
    hp.host = std::string(s.substr(0, colon));
    port_part = s.substr(colon + 1);
  }
  if (hp.host.empty()) hp.host = "127.0.0.1";
  if (!absl::SimpleAtoi(ToAbsl(port_part), &hp.port) || hp.port < 0 || hp.port > 65535)
    return absl::InvalidArgumentError(absl::StrCat("\"", ToAbsl(s), "\" has no valid port"));
  return hp;
}

absl::StatusOr<SocketAddress> ToSocketAddress(const std::string& ip, uint16_t port) {
  SocketAddress out;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    out.length = sizeof(*v4);
  } else if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    out.length = sizeof(*v6);
  } else {
    return absl::InvalidArgumentError("bad address " + ip);
  }
  return out;
}

namespace {
absl::StatusOr<int> BindOnce(const HostPort& hp, bool report_port) {
  bool v6 = hp.host.find(':') != std::string::npos;
  int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage ss{};
  socklen_t len;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(hp.port));
    if (inet_pton(AF_INET6, hp.host.c_str(), &a->sin6_addr) != 1) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat("\"", hp.host, "\" is not an IPv6 address"));
    }
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(hp.port));
    std::string host = hp.host == "localhost" ? "127.0.0.1" : hp.host;
    if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat("\"", hp.host, "\" is not an IPv4 address"));
    }
    len = sizeof(*a);
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EADDRINUSE) return absl::UnavailableError(absl::StrCat("port in use: ", hp.ToString()));
    return absl::UnavailableError(absl::StrCat("cannot bind ", hp.ToString(), ": ", std::strerror(err)));
  }
  int port = hp.port;
  if (report_port) {
    sockaddr_storage bound{};
    socklen_t blen = sizeof(bound);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen);
    port = v6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
              : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  }
  ::close(fd);
  return port;
}
}  // namespace

absl::StatusOr<int> PickFreePort() { return BindOnce(HostPort{"127.0.0.1", 0}, true); }

absl::Status CheckPortFree(const HostPort& hp) { return BindOnce(hp, false).status(); }

}  // namespace mailgrid::net
