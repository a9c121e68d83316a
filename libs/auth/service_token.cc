#include "libs/auth/service_token.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "libs/auth/key_id.h"
#include "libs/base/status.h"

namespace mailgrid::auth {

absl::StatusOr<std::unique_ptr<ServiceTokenSource>> ServiceTokenSource::FromPemFile(
    const std::string& pem_path, std::string service_name, std::string issuer) {
  std::ifstream in(pem_path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read token signing key ", pem_path));
  std::stringstream pem;
  pem << in.rdbuf();
  return FromPem(pem.str(), std::move(service_name), std::move(issuer));
}

absl::StatusOr<std::unique_ptr<ServiceTokenSource>> ServiceTokenSource::FromPem(
    std::string_view pem, std::string service_name, std::string issuer) {
  if (service_name.empty()) return absl::InvalidArgumentError("service name is empty");
  ASSIGN_OR_RETURN(std::string key_id, KeyIdOfPrivatePem(pem));
  ASSIGN_OR_RETURN(std::unique_ptr<TokenSigner> signer, TokenSigner::FromPrivatePem(key_id, pem));
  return std::unique_ptr<ServiceTokenSource>(
      new ServiceTokenSource(std::move(signer), std::move(service_name), std::move(issuer)));
}

absl::StatusOr<std::string> ServiceTokenSource::Token() {
  absl::MutexLock lock(&mu_);
  absl::Time now = absl::Now();
  if (now < expires_ - refresh_before) return token_;
  Claims claims;
  claims.issuer = issuer_;
  claims.subject = service_;
  claims.service = service_;
  claims.roles = {kRoleService};
  claims.issued_at = now;
  claims.expires_at = now + lifetime;
  ASSIGN_OR_RETURN(token_, signer_->Sign(claims));
  expires_ = claims.expires_at;
  return token_;
}

absl::StatusOr<std::string> ServiceTokenSource::AuthorizationHeader() {
  ASSIGN_OR_RETURN(std::string token, Token());
  return absl::StrCat("Bearer ", token);
}

}  // namespace mailgrid::auth
