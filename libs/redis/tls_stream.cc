#include "libs/redis/tls_stream.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "libs/base/strings.h"

namespace mailgrid::redis::internal {
namespace {

bool IsIpLiteral(const std::string& name) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

// Everything OpenSSL queued on this thread, oldest first, then cleared.
std::string OpenSslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    const char* reason = ERR_reason_error_string(e);
    absl::StrAppend(&out, out.empty() ? "" : "; ", reason != nullptr ? reason : buf);
  }
  return out;
}

absl::Status ConfigError(std::string_view what, const std::string& path) {
  return absl::InvalidArgumentError(
      absl::StrCat("redis TLS: ", ToAbsl(what), " '", path, "': ", OpenSslErrors()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsStream>> TlsStream::Handshake(int fd, const std::string& host,
                                                                const TlsOptions& tls,
                                                                const std::string& endpoint) {
  ERR_clear_error();
  std::unique_ptr<TlsStream> s(new TlsStream(fd, endpoint));
  s->ctx_ = SSL_CTX_new(TLS_client_method());
  if (s->ctx_ == nullptr) return absl::ResourceExhaustedError("redis TLS: SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(s->ctx_, TLS1_2_VERSION);
  SSL_CTX_set_verify(s->ctx_, SSL_VERIFY_PEER, nullptr);
  if (!tls.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(s->ctx_, tls.ca_file.c_str(), nullptr) != 1) {
      return ConfigError("CA file", tls.ca_file);
    }
  } else if (SSL_CTX_set_default_verify_paths(s->ctx_) != 1) {
    return ConfigError("system CA paths", "");
  }
  if (!tls.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(s->ctx_, tls.cert_file.c_str()) != 1) {
      return ConfigError("client certificate", tls.cert_file);
    }
    if (SSL_CTX_use_PrivateKey_file(s->ctx_, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(s->ctx_) != 1) {
      return ConfigError("client key", tls.key_file);
    }
  }

  s->ssl_ = SSL_new(s->ctx_);
  if (s->ssl_ == nullptr || SSL_set_fd(s->ssl_, fd) != 1) {
    return absl::ResourceExhaustedError("redis TLS: SSL_new failed");
  }
  const std::string& name = tls.server_name.empty() ? host : tls.server_name;
  if (IsIpLiteral(name)) {
    // No SNI for an address (RFC 6066 §3); the certificate needs an IP SAN.
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl_), name.c_str()) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("redis TLS: bad IP '", name, "'"));
    }
  } else if (SSL_set_tlsext_host_name(s->ssl_, name.c_str()) != 1 ||
             SSL_set1_host(s->ssl_, name.c_str()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("redis TLS: bad server name '", name, "'"));
  }
  int ret = SSL_connect(s->ssl_);
  if (ret != 1) return s->Failure(ret, "TLS handshake");
  return s;
}

TlsStream::~TlsStream() {
  // No close_notify: it could block on a dead peer, and Redis keeps no state
  // that a clean TLS close would protect.
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

absl::Status TlsStream::WriteAll(std::string_view data) {
  while (!data.empty()) {
    ERR_clear_error();
    const int n = static_cast<int>(std::min<size_t>(data.size(), INT_MAX));
    int ret = SSL_write(ssl_, data.data(), n);
    if (ret <= 0) return Failure(ret, "send");
    data.remove_prefix(static_cast<size_t>(ret));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> TlsStream::ReadSome(char* buf, size_t len) {
  ERR_clear_error();
  int ret = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(len, INT_MAX)));
  if (ret <= 0) return Failure(ret, "read");
  return static_cast<size_t>(ret);
}

bool TlsStream::IsStale() {
  if (SSL_pending(ssl_) > 0) return true;  // decrypted bytes nobody asked for
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, 0) == 0) return false;
  // Readable: either the server closed, or it sent records without data
  // (TLS 1.3 session tickets). A non-blocking peek tells them apart and
  // consumes the latter.
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0 || ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK) != 0) return true;
  ERR_clear_error();
  char byte;
  int ret = SSL_peek(ssl_, &byte, 1);
  int err = SSL_get_error(ssl_, ret);
  ERR_clear_error();
  const bool restored = ::fcntl(fd_, F_SETFL, flags) == 0;
  return !restored || ret > 0 || err != SSL_ERROR_WANT_READ;
}

absl::Status TlsStream::Failure(int ret, std::string_view what) {
  const int saved_errno = errno;
  const int err = SSL_get_error(ssl_, ret);
  std::string msg = absl::StrCat("redis ", endpoint_, ": ", ToAbsl(what), ": ");
  switch (err) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      // The socket's timeout expired (SO_RCVTIMEO/SO_SNDTIMEO, EAGAIN).
      ERR_clear_error();
      return absl::DeadlineExceededError(absl::StrCat(msg, "timed out"));
    case SSL_ERROR_ZERO_RETURN:
      return absl::UnavailableError(absl::StrCat(msg, "connection closed by the server"));
    case SSL_ERROR_SYSCALL: {
      std::string queued = OpenSslErrors();
      if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK) {
        return absl::DeadlineExceededError(absl::StrCat(msg, "timed out"));
      }
      if (saved_errno == 0) {
        return absl::UnavailableError(
            absl::StrCat(msg, queued.empty() ? "connection closed by the server" : queued));
      }
      return absl::UnavailableError(absl::StrCat(msg, std::strerror(saved_errno)));
    }
    default: {
      absl::StrAppend(&msg, OpenSslErrors());
      const long verify = SSL_get_verify_result(ssl_);
      if (verify != X509_V_OK) {
        // The line an operator needs: which check failed, and what to fix.
        absl::StrAppend(&msg, " (", X509_verify_cert_error_string(verify),
                        "; the server's certificate must chain to the Redis TLS CA and "
                        "name the host)");
      }
      return absl::UnavailableError(msg);
    }
  }
}

}  // namespace mailgrid::redis::internal
