// TenantService (tenant.proto): registration, onboarding tokens, documents,
// review, suspension, deletion, events, plans and usage. One class, its
// methods split by topic over tenant_service.cc (registration and
// lifecycle), documents.cc (upload/list/download) and plans.cc (catalog,
// SetTenantPlan, usage).
//
// Threads: gRPC's sync server threads call in concurrently; there is no
// state here beyond the store, so concurrency is settled by the store's
// conditional writes (tenant_store.h, Transact).
#pragma once

#include <string>

#include "mailgrid/tenant/v1/tenant.grpc.pb.h"
#include "services/tenant/authz.h"
#include "services/tenant/config.h"
#include "services/tenant/lifecycle.h"
#include "services/tenant/tenant_storage.pb.h"
#include "services/tenant/tenant_store.h"

namespace mailgrid::tenant {

// Adds a TenantEvent to `batch`.
void AddEvent(Batch& batch, const std::string& tenant_id, tenant::v1::TenantState from,
              tenant::v1::TenantState to, const std::string& action, const Principal& who,
              const std::string& reason, absl::Time at);

// Adds an AdminAuditEntry (the log the directory shares, issue 5).
void AddAudit(Batch& batch, const std::string& tenant_id, const Principal& who,
              const std::string& action, const std::string& target_kind,
              const std::string& target_id, const std::string& summary, const std::string& reason,
              absl::Time at);

// The API view of a stored tenant (onboarding_token_active computed).
tenant::v1::Tenant TenantView(const storage::TenantRecord& record, absl::Time now = absl::Now());

// Reads a tenant record; NOT_FOUND (same words as for another tenant's)
// when absent.
absl::StatusOr<Versioned<storage::TenantRecord>> ReadTenant(TenantStore& store,
                                                            const std::string& tenant_id);

class TenantServiceImpl final : public tenant::v1::TenantService::Service {
 public:
  TenantServiceImpl(TenantStore* store, const Authenticator* auth, const Options* options);

  using Ctx = grpc::ServerContext;
  grpc::Status RegisterTenant(Ctx*, const v1::RegisterTenantRequest*,
                              v1::RegisterTenantResponse*) override;
  grpc::Status GetTenant(Ctx*, const v1::GetTenantRequest*, v1::Tenant*) override;
  grpc::Status ListTenants(Ctx*, const v1::ListTenantsRequest*, v1::ListTenantsResponse*) override;
  grpc::Status IssueOnboardingToken(Ctx*, const v1::IssueOnboardingTokenRequest*,
                                    v1::IssueOnboardingTokenResponse*) override;
  grpc::Status RevokeOnboardingToken(Ctx*, const v1::RevokeOnboardingTokenRequest*,
                                     v1::RevokeOnboardingTokenResponse*) override;
  grpc::Status UploadDocument(Ctx*, grpc::ServerReader<v1::UploadDocumentRequest>*,
                              v1::Document*) override;
  grpc::Status ListDocuments(Ctx*, const v1::ListDocumentsRequest*,
                             v1::ListDocumentsResponse*) override;
  grpc::Status DownloadDocument(Ctx*, const v1::DownloadDocumentRequest*,
                                grpc::ServerWriter<v1::DownloadDocumentResponse>*) override;
  grpc::Status ReviewTenant(Ctx*, const v1::ReviewTenantRequest*, v1::Tenant*) override;
  grpc::Status SuspendTenant(Ctx*, const v1::SuspendTenantRequest*, v1::Tenant*) override;
  grpc::Status ResumeTenant(Ctx*, const v1::ResumeTenantRequest*, v1::Tenant*) override;
  grpc::Status DeleteTenant(Ctx*, const v1::DeleteTenantRequest*, v1::Tenant*) override;
  grpc::Status ListTenantEvents(Ctx*, const v1::ListTenantEventsRequest*,
                                v1::ListTenantEventsResponse*) override;
  grpc::Status GetTenantUsage(Ctx*, const v1::GetTenantUsageRequest*, v1::TenantUsage*) override;
  grpc::Status ListPlans(Ctx*, const v1::ListPlansRequest*, v1::ListPlansResponse*) override;
  grpc::Status CreatePlan(Ctx*, const v1::CreatePlanRequest*, v1::Plan*) override;
  grpc::Status UpdatePlan(Ctx*, const v1::UpdatePlanRequest*, v1::Plan*) override;
  grpc::Status SetTenantPlan(Ctx*, const v1::SetTenantPlanRequest*, v1::Tenant*) override;

  // Removes every key of tenants whose grace period is over, and upload
  // chunks left by a crash. Called by the background loop; idempotent.
  absl::Status PurgeExpired(absl::Time now);

 private:
  // Applies a lifecycle action to a tenant and records the event.
  absl::StatusOr<v1::Tenant> Transition(const Principal& p, const std::string& tenant_id,
                                        Action action, const std::string& reason,
                                        absl::Duration grace = kDefaultGracePeriod);
  absl::StatusOr<std::string> NewOnboardingToken(Batch& batch, storage::TenantRecord& record,
                                                 absl::Time now);
  absl::Status UploadImpl(const Principal& p, grpc::ServerReader<v1::UploadDocumentRequest>* reader,
                          v1::Document* out);

  TenantStore* store_;
  const Authenticator* auth_;
  const Options* options_;
};

// Pages: page_size 0 means 50, capped at 1000 (common.proto).
uint32_t PageSize(const common::v1::Pagination& page);

}  // namespace mailgrid::tenant
