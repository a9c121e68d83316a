// identityd's wiring: the store (embedded replica or local), Redis, the
// directory client, the token signer and verifier, Core and its three gRPC
// services.
#pragma once

#include <memory>

#include "libs/redis/client.h"
#include "libs/replica/replica_flags.h"
#include "libs/rpc/service_main.h"
#include "libs/store/store.h"
#include "services/identity/config.h"
#include "services/identity/core.h"
#include "services/identity/services.h"

namespace mailgrid::identity {

class IdentityApp final : public rpc::ServiceApp {
 public:
  static absl::StatusOr<std::unique_ptr<IdentityApp>> Create(
      const rpc::CommonConfig& common, Options options,
      std::shared_ptr<prometheus::Registry> registry);
  ~IdentityApp() override;

  std::vector<grpc::Service*> Services() override;
  absl::Status Start(const rpc::RunContext& ctx) override;
  bool Ready(std::string* reason) override;
  void Drain() override;
  void Stop() override;

 private:
  IdentityApp() = default;

  Options options_;
  std::unique_ptr<replica::ReplicaServer> replica_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<IdentityStore> identity_store_;
  std::unique_ptr<redis::Client> redis_;
  std::unique_ptr<auth::TokenSigner> signer_;
  std::unique_ptr<auth::TokenVerifier> verifier_;
  std::unique_ptr<auth::ServiceTokenSource> service_tokens_;
  std::unique_ptr<Directory> directory_;
  std::unique_ptr<Notices> notices_;
  std::unique_ptr<PasswordHasher> hasher_;
  std::unique_ptr<SessionManager> sessions_;
  std::unique_ptr<Throttler> throttle_;
  std::unique_ptr<Core> core_;
  std::unique_ptr<v1::AuthService::Service> auth_service_;
  std::unique_ptr<v1::CredentialService::Service> credential_service_;
  std::unique_ptr<v1::SsoService::Service> sso_service_;
};

rpc::ServiceDef ServiceDefinition();

}  // namespace mailgrid::identity
