#include "libs/rpc/ssl_reloader.h"

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "libs/base/file.h"
#include "libs/base/log.h"
#include "libs/base/status.h"

namespace mailgrid::rpc {
namespace {
// Set before any listener exists (flags are parsed first) and read after;
// atomic anyway so a test may change it between servers.
std::atomic<int64_t> process_refresh_ms{60'000};
}  // namespace

void SslCertificateReloader::SetProcessRefresh(absl::Duration refresh) {
  process_refresh_ms.store(absl::ToInt64Milliseconds(refresh));
}

absl::Duration SslCertificateReloader::ProcessRefresh() {
  return absl::Milliseconds(process_refresh_ms.load());
}

// One parsed certificate chain and key, immutable once built; handshakes
// hold a reference while they copy it into their SSL.
struct SslCertificateReloader::Pair {
  std::string cert_pem, key_pem;  // to skip re-parsing unchanged files
  X509* leaf = nullptr;
  STACK_OF(X509) * chain = nullptr;  // intermediates after the leaf
  EVP_PKEY* key = nullptr;
  ~Pair() {
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
  }
};

absl::StatusOr<std::unique_ptr<SslCertificateReloader>> SslCertificateReloader::Start(
    std::string cert_file, std::string key_file, absl::Duration refresh) {
  std::unique_ptr<SslCertificateReloader> r(
      new SslCertificateReloader(std::move(cert_file), std::move(key_file)));
  RETURN_IF_ERROR(r->ReloadNow());
  if (refresh > absl::ZeroDuration()) {
    SslCertificateReloader* self = r.get();
    r->thread_ = std::thread([self, refresh] {
      while (!self->stop_.WaitForNotificationWithTimeout(refresh)) {
        if (absl::Status s = self->ReloadNow(); !s.ok()) {
          log::Warn("TLS certificate not reloaded; serving the previous one",
                    {{"cert", self->cert_file_}, {"error", std::string(s.message())}});
        }
      }
    });
  }
  return r;
}

SslCertificateReloader::~SslCertificateReloader() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

absl::Status SslCertificateReloader::ReloadNow() {
  auto cert_pem = file::ReadAll(cert_file_);
  if (!cert_pem.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("TLS certificate ", cert_file_, ": ", cert_pem.status().message()));
  auto key_pem = file::ReadAll(key_file_);
  if (!key_pem.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("TLS key ", key_file_, ": ", key_pem.status().message()));
  std::shared_ptr<const Pair> current = Current();
  if (current != nullptr && current->cert_pem == *cert_pem && current->key_pem == *key_pem)
    return absl::OkStatus();

  auto pair = std::make_shared<Pair>();
  pair->cert_pem = *std::move(cert_pem);
  pair->key_pem = *std::move(key_pem);
  std::unique_ptr<BIO, decltype(&BIO_free)> cert_bio(
      BIO_new_mem_buf(pair->cert_pem.data(), static_cast<int>(pair->cert_pem.size())), &BIO_free);
  pair->leaf = PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr);
  if (pair->leaf == nullptr)
    return absl::InvalidArgumentError(
        absl::StrCat("TLS certificate ", cert_file_, ": no PEM certificate"));
  pair->chain = sk_X509_new_null();
  while (X509* extra = PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr)) {
    sk_X509_push(pair->chain, extra);
  }
  std::unique_ptr<BIO, decltype(&BIO_free)> key_bio(
      BIO_new_mem_buf(pair->key_pem.data(), static_cast<int>(pair->key_pem.size())), &BIO_free);
  pair->key = PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr);
  if (pair->key == nullptr)
    return absl::InvalidArgumentError(absl::StrCat("TLS key ", key_file_, ": no PEM private key"));
  // Mid-rotation (new certificate, old key) is the common failure: refuse
  // it and try again at the next refresh.
  if (X509_check_private_key(pair->leaf, pair->key) != 1)
    return absl::InvalidArgumentError(
        absl::StrCat("TLS key ", key_file_, " does not match the certificate ", cert_file_));
  absl::MutexLock lock(&mu_);
  bool first = pair_ == nullptr;
  pair_ = std::move(pair);
  ++generation_;
  if (!first)
    log::Info("TLS certificate reloaded", {{"cert", cert_file_}, {"generation", generation_}});
  return absl::OkStatus();
}

std::shared_ptr<const SslCertificateReloader::Pair> SslCertificateReloader::Current() const {
  absl::MutexLock lock(&mu_);
  return pair_;
}

int SslCertificateReloader::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

void SslCertificateReloader::Install(SSL_CTX* ctx) { SSL_CTX_set_cert_cb(ctx, &OnHandshake, this); }

// OpenSSL calls this once per server handshake, before it picks the
// certificate: replace whatever the SSL inherited from its SSL_CTX.
int SslCertificateReloader::OnHandshake(SSL* ssl, void* arg) {
  auto* self = static_cast<SslCertificateReloader*>(arg);
  std::shared_ptr<const Pair> pair = self->Current();
  if (pair == nullptr) return 1;  // keep the context's own pair
  return SSL_use_cert_and_key(ssl, pair->leaf, pair->key, pair->chain, /*override=*/1) == 1 ? 1 : 0;
}

}  // namespace mailgrid::rpc
