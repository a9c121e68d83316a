#include "libs/store/local_store.h"

#include "libs/base/status.h"
#include "libs/kv/requests.h"

namespace mailgrid::store {

absl::StatusOr<std::unique_ptr<LocalStore>> LocalStore::Open(const std::string& dir) {
  return Open(dir, kv::EngineOptions());
}

absl::StatusOr<std::unique_ptr<LocalStore>> LocalStore::Open(const std::string& dir,
                                                             const kv::EngineOptions& engine) {
  std::unique_ptr<LocalStore> s(new LocalStore());
  ASSIGN_OR_RETURN(s->engine_, kv::Engine::Open(dir, engine));
  ASSIGN_OR_RETURN(s->machine_, kv::StateMachine::Open(s->engine_.get()));
  return s;
}

absl::StatusOr<kv::v1::GetResponse> LocalStore::Get(const kv::v1::GetRequest& request, absl::Time) {
  if (request.key().empty()) return absl::InvalidArgumentError("key: empty");
  kv::v1::GetResponse out;
  out.set_applied_index(machine_->applied_index());
  auto value = machine_->Get(request.key());
  if (absl::IsNotFound(value.status())) return out;
  if (!value.ok()) return value.status();
  out.set_found(true);
  out.set_value(std::move(value->value));
  out.set_version(value->version);
  return out;
}

absl::StatusOr<kv::v1::ScanResponse> LocalStore::Scan(const kv::v1::ScanRequest& request, absl::Time) {
  ASSIGN_OR_RETURN(kv::ScanOptions options, kv::ResolveScan(request));
  ASSIGN_OR_RETURN(kv::ScanResult result, machine_->Scan(options));
  kv::v1::ScanResponse out;
  for (auto& e : result.entries) *out.add_entries() = std::move(e);
  out.set_continuation(std::move(result.continuation));
  out.set_applied_index(result.applied_index);
  return out;
}

absl::StatusOr<kv::v1::WriteResponse> LocalStore::Write(const kv::v1::WriteRequest& request, absl::Time) {
  RETURN_IF_ERROR(kv::ValidateWriteRequest(request));
  absl::MutexLock lock(&write_mu_);
  uint64_t index = machine_->applied_index() + 1;
  return machine_->Apply(index, /*term=*/1, request.SerializeAsString());
}

}  // namespace mailgrid::store
