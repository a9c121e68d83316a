#include "libs/rpc/tls_watch.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "libs/base/status.h"

namespace mailgrid::rpc {

absl::StatusOr<std::string> ReadPemFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--", flag, ": cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().find("-----BEGIN") == std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", path, " is not a PEM file"));
  return ss.str();
}

absl::Status CheckKeyPair(const std::string& cert_flag, const std::string& cert_file,
                          const std::string& key_flag, const std::string& key_file) {
  ASSIGN_OR_RETURN(std::string cert_pem, ReadPemFile(cert_flag, cert_file));
  ASSIGN_OR_RETURN(std::string key_pem, ReadPemFile(key_flag, key_file));
  std::unique_ptr<BIO, decltype(&BIO_free)> cert_bio(
      BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())), &BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr), &X509_free);
  if (cert == nullptr)
    return absl::InvalidArgumentError(
        absl::StrCat("--", cert_flag, ": ", cert_file, " holds no certificate"));
  std::unique_ptr<BIO, decltype(&BIO_free)> key_bio(
      BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())), &BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  if (key == nullptr)
    return absl::InvalidArgumentError(
        absl::StrCat("--", key_flag, ": ", key_file, " holds no private key"));
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", key_flag, ": ", key_file, " is not the key of --", cert_flag, " ", cert_file));
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::experimental::CertificateProviderInterface> WatchedCertificates(
    const std::string& key_file, const std::string& cert_file, const std::string& ca_file,
    absl::Duration refresh) {
  using Key = std::tuple<std::string, std::string, std::string, int64_t>;
  static std::mutex mu;
  static auto* providers =
      new std::map<Key, std::weak_ptr<grpc::experimental::CertificateProviderInterface>>();
  unsigned seconds = static_cast<unsigned>(std::max<int64_t>(1, absl::ToInt64Seconds(refresh)));
  Key key{key_file, cert_file, ca_file, seconds};
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = (*providers)[key];
  if (auto existing = slot.lock()) return existing;
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> made;
  if (key_file.empty()) {
    made = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(ca_file, seconds);
  } else {
    made = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(key_file, cert_file,
                                                                                ca_file, seconds);
  }
  slot = made;
  return made;
}

}  // namespace mailgrid::rpc
