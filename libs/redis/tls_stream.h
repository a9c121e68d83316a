// Internal: TLS over a socket hiredis already connected, for "rediss://".
//
// hiredis 0.14 has no TLS, but its dialing (name resolution, non-blocking
// connect bounded by a timeout, keepalive, socket timeouts) and its reply
// parser (redisReader, which does no I/O) are independent of the transport.
// So a TLS connection keeps hiredis's redisContext for the socket only and
// sends and receives through this class; see connection.cc.
//
// SECURITY: the server's certificate is always verified, against
// TlsOptions::ca_file or the system CAs, and must name the host (DNS SAN) or
// its IP (IP SAN); there is no switch to turn that off. TLS 1.2 at least.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/redis/options.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace mailgrid::redis::internal {

class TlsStream {
 public:
  // Runs the TLS handshake on the connected socket `fd` (not owned; closed by
  // its owner after this object is gone). The socket's SO_RCVTIMEO and
  // SO_SNDTIMEO bound each step. `host` is what was dialed.
  static absl::StatusOr<std::unique_ptr<TlsStream>> Handshake(int fd, const std::string& host,
                                                              const TlsOptions& tls,
                                                              const std::string& endpoint);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // Writes all of `data`.
  absl::Status WriteAll(std::string_view data);
  // Reads what is available, at least one byte (blocking up to the socket's
  // timeout). Returns the number of bytes read.
  absl::StatusOr<size_t> ReadSome(char* buf, size_t len);
  // For an idle pooled connection: true if the server closed it or sent
  // application data nobody asked for. TLS records that carry no data (TLS
  // 1.3 session tickets, which arrive after the handshake) are consumed.
  bool IsStale();

 private:
  TlsStream(int fd, std::string endpoint) : fd_(fd), endpoint_(std::move(endpoint)) {}
  // Maps an SSL_* failure (ret is what the call returned) to a status, with
  // OpenSSL's reason (e.g. "certificate verify failed: ...") in the text.
  absl::Status Failure(int ret, std::string_view what);

  const int fd_;
  const std::string endpoint_;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
};

}  // namespace mailgrid::redis::internal
