// Service tokens: how one mailgrid daemon proves to another that the call
// is service-internal (tenantd creating a mailbox in mailstored, relayd
// resolving a recipient in tenantd, ...). The caller signs a short-lived
// token (roles ["service"], svc=<its name>, sub=<its name>) with the
// cluster's Ed25519 signing key; the callee verifies it like any other
// token with the published public key, and its authorization code checks
// the "service" role.
//
// Tokens live 10 minutes and are re-minted when less than 2 minutes are
// left, so a busy daemon signs about once per 8 minutes, not per call.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/auth/token.h"

namespace mailgrid::auth {

class ServiceTokenSource {
 public:
  // `pem_path`: a PKCS#8 Ed25519 private key (MAILGRID_TOKEN_SIGNING_KEY).
  static absl::StatusOr<std::unique_ptr<ServiceTokenSource>> FromPemFile(
      const std::string& pem_path, std::string service_name, std::string issuer = "mailgrid");
  static absl::StatusOr<std::unique_ptr<ServiceTokenSource>> FromPem(
      std::string_view pem, std::string service_name, std::string issuer = "mailgrid");

  // A valid token (cached; thread-safe).
  absl::StatusOr<std::string> Token();
  // "Bearer <token>", the value of the `authorization` metadata.
  absl::StatusOr<std::string> AuthorizationHeader();

  const std::string& service_name() const { return service_; }

  absl::Duration lifetime = absl::Minutes(10);
  absl::Duration refresh_before = absl::Minutes(2);

 private:
  ServiceTokenSource(std::unique_ptr<TokenSigner> signer, std::string service, std::string issuer)
      : signer_(std::move(signer)), service_(std::move(service)), issuer_(std::move(issuer)) {}

  std::unique_ptr<TokenSigner> signer_;
  std::string service_;
  std::string issuer_;
  absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  absl::Time expires_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace mailgrid::auth
