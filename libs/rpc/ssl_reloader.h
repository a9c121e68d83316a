// A certificate and key for an OpenSSL server context that follow the files
// on disk, for listeners gRPC does not own (libs/netserver: relayd's SMTP
// 25/587/465, accessd's IMAP/POP3). gRPC listeners reload through
// tls_watch.h; this is the same for a plain SSL_CTX.
//
// Adopting it is two lines where the SSL_CTX is built (after the existing
// use_certificate_chain_file/use_private_key_file, which stay as the start-
// time check):
//   ASSIGN_OR_RETURN(reloader_, rpc::SslCertificateReloader::Start(cert, key));
//   reloader_->Install(ctx->native_handle());
// Every handshake then presents the pair read last; established sessions
// keep theirs. A file that is unreadable, not PEM, or a key that does not
// match is logged and the previous pair stays in use (a half-rotated Secret
// never takes a listener down). Threads: one refresher per reloader.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace mailgrid::rpc {

class SslCertificateReloader {
 public:
  // Reads the pair now (an error here names the file) and re-reads it every
  // `refresh` (zero: never; ReloadNow() still works).
  static absl::StatusOr<std::unique_ptr<SslCertificateReloader>> Start(
      std::string cert_file, std::string key_file, absl::Duration refresh = absl::Minutes(1));

  // The process's --tls-reload-interval, for listeners built by code that
  // does not see the common flags (libs/netserver under relayd/accessd):
  // rpc::RunService sets it once after parsing flags, before the daemon's
  // Create. One minute until set; zero means "read once".
  static void SetProcessRefresh(absl::Duration refresh);
  static absl::Duration ProcessRefresh();
  ~SslCertificateReloader();
  SslCertificateReloader(const SslCertificateReloader&) = delete;
  SslCertificateReloader& operator=(const SslCertificateReloader&) = delete;

  // Makes every handshake on `ctx` use the current pair. The reloader must
  // outlive every SSL made from `ctx`.
  void Install(SSL_CTX* ctx);

  // Re-reads both files; unchanged contents are a no-op. On error the
  // previous pair stays in use.
  absl::Status ReloadNow();

  // How many distinct pairs have been loaded (1 after Start).
  int generation() const;

 private:
  struct Pair;
  SslCertificateReloader(std::string cert_file, std::string key_file)
      : cert_file_(std::move(cert_file)), key_file_(std::move(key_file)) {}
  static int OnHandshake(SSL* ssl, void* arg);
  std::shared_ptr<const Pair> Current() const;

  const std::string cert_file_;
  const std::string key_file_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Pair> pair_ ABSL_GUARDED_BY(mu_);
  int generation_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace mailgrid::rpc
