// DomainService (domain.proto): a tenant's mail domains, the records to
// publish, DNS checks and verification, DKIM keys and their rotation.
// Methods are split over domain_service.cc (claim, read, remove, records,
// override, signing keys) and domain_check.cc (DNS checks, the background
// recheck, DKIM rotation).
//
// Threads: gRPC's sync server threads, plus the app's background loop
// calling RecheckAll(). No state beyond the store: every change is a
// conditional write (tenant_store.h), so two replicas (or a check racing a
// rotation) never overwrite each other; the loser re-reads and re-decides.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mailgrid/tenant/v1/domain.grpc.pb.h"
#include "services/tenant/authz.h"
#include "services/tenant/config.h"
#include "services/tenant/dkim.h"
#include "services/tenant/dns_check.h"
#include "services/tenant/dns_records.h"
#include "services/tenant/tenant_storage.pb.h"
#include "services/tenant/tenant_store.h"

namespace mailgrid::tenant {

class DomainServiceImpl final : public tenant::v1::DomainService::Service {
 public:
  // `sealer` empty: no master key configured; AddDomain and rotation are
  // refused (FAILED_PRECONDITION DKIM_NOT_CONFIGURED), the rest works.
  DomainServiceImpl(TenantStore* store, const Authenticator* auth, const Options* options,
                    std::unique_ptr<Resolver> resolver, std::optional<KeySealer> sealer);

  using Ctx = grpc::ServerContext;
  grpc::Status AddDomain(Ctx*, const v1::AddDomainRequest*, v1::Domain*) override;
  grpc::Status GetDomain(Ctx*, const v1::GetDomainRequest*, v1::Domain*) override;
  grpc::Status ListDomains(Ctx*, const v1::ListDomainsRequest*, v1::ListDomainsResponse*) override;
  grpc::Status RemoveDomain(Ctx*, const v1::RemoveDomainRequest*,
                            v1::RemoveDomainResponse*) override;
  grpc::Status GetDomainRecords(Ctx*, const v1::GetDomainRecordsRequest*,
                                v1::DomainRecords*) override;
  grpc::Status CheckDomain(Ctx*, const v1::CheckDomainRequest*, v1::DomainRecords*) override;
  grpc::Status OverrideVerification(Ctx*, const v1::OverrideVerificationRequest*,
                                    v1::Domain*) override;
  grpc::Status RotateDkim(Ctx*, const v1::RotateDkimRequest*, v1::Domain*) override;
  grpc::Status GetDkimSigningKey(Ctx*, const v1::GetDkimSigningKeyRequest*,
                                 v1::GetDkimSigningKeyResponse*) override;

  // Checks every domain of every tenant once (the background recheck):
  // verifies domains whose records appeared, flags drift on verified ones.
  // Returns how many domains were checked.
  absl::StatusOr<int> RecheckAll();

 private:
  struct Loaded {
    std::string tenant_id;
    Versioned<storage::DomainRecord> record;
  };
  // Finds a domain by name (either label form) and checks `who` may act on
  // it; NOT_FOUND alike for absent and foreign domains.
  absl::StatusOr<Loaded> Authorized(const Principal& p, const std::string& name, const Who& who);
  absl::StatusOr<Loaded> Load(const std::string& ascii_name);

  // Looks the domain's records up and records the outcome (state, drift,
  // audit). Lookups happen outside the store transaction.
  absl::StatusOr<v1::DomainRecords> RunCheck(const Principal& p, const std::string& tenant_id,
                                             const std::string& name);
  // The records to publish, with the last check of each.
  absl::StatusOr<std::vector<v1::DnsRecord>> RecordsOf(const std::string& tenant_id,
                                                       const storage::DomainRecord& record);
  // A new Ed25519 + RSA-2048 pair of keys in `state`, sealed.
  absl::StatusOr<std::vector<storage::DkimKeyRecord>> NewKeys(const std::string& domain,
                                                              int64_t generation,
                                                              v1::DkimKeyState state,
                                                              absl::Time now);
  absl::Status RequireSealer() const;

  TenantStore* store_;
  const Authenticator* auth_;
  const Options* options_;
  std::unique_ptr<Resolver> resolver_;
  std::optional<KeySealer> sealer_;
  RecordConfig record_config_;
};

// The API view of a stored domain (keys without secrets).
v1::Domain DomainView(const storage::DomainRecord& record);

// The selector of DKIM generation `generation` made on `day`:
// "mg20261127g1-ed" / "mg20261127g1-rsa".
std::string DkimSelector(absl::Time day, int64_t generation, v1::DkimAlgorithm algorithm);

}  // namespace mailgrid::tenant
