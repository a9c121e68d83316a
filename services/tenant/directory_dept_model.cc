// The department model (directory_service.h, DeptModel): a tenant's
// department tree and every department's direct members in memory, so the
// first expansion of a big group after a directory change does not read
// thousands of keys (a 5,000-member group of department subtrees was ~350
// member scans plus a scan of the whole tree, 37 ms on a quiet machine and
// 287 ms while the replicas re-indexed after the change).
//
// Validity: T/"memgen" is rewritten by every change that writes
// T/deptchild or T/deptmember (TouchDirectory's `memberships`), so a model
// loaded after reading memgen M is exactly the store's content while the
// store's memgen is still M (a change during the load moves memgen, and
// the model is never used). Changes that do not touch memberships (a
// department rename, groups, aliases, shared mailboxes, domain settings)
// keep it; the others make the warm thread reload it (one scan of the
// tenant's memberships), meanwhile expansions read the store as before.
//
// Threads: loaded by the warm thread (after a tenant's warm-up, or when an
// expansion asked for it); read by Resolve workers. Models are immutable
// shared_ptrs swapped under model_mu_.
#include "libs/base/status.h"
#include "services/tenant/directory_service.h"

namespace mailgrid::tenant {

namespace {
constexpr uint32_t kModelPage = 10000;
}  // namespace

std::shared_ptr<const DirectoryServiceImpl::DeptModel> DirectoryServiceImpl::CurrentDeptModel(
    TenantStore& s, const std::string& tid) {
  absl::StatusOr<std::optional<std::string>> memgen = s.GetRaw(dkeys::MemGen(tid));
  if (!memgen.ok()) return nullptr;
  {
    absl::MutexLock lock(&model_mu_);
    auto it = models_.find(tid);
    if (it != models_.end() && it->second->memgen == memgen->value_or("")) return it->second;
  }
  absl::MutexLock lock(&index_mu_);
  model_pending_.insert(tid);
  return nullptr;
}

absl::StatusOr<std::shared_ptr<const DirectoryServiceImpl::DeptModel>>
DirectoryServiceImpl::LoadDeptModel(TenantStore& s, const std::string& tid) {
  auto m = std::make_shared<DeptModel>();
  // The stamp first: a change after this read makes the model unusable.
  ASSIGN_OR_RETURN(auto memgen, s.GetRaw(dkeys::MemGen(tid)));
  m->memgen = memgen.value_or("");
  const std::string cprefix = dkeys::DeptChildAllPrefix(tid);
  std::string token;
  do {
    ASSIGN_OR_RETURN(TenantStore::Page page, s.Scan(cprefix, kModelPage, token));
    token = page.next_token;
    for (auto& kv : page.entries)
      m->children[ComponentAfter(kv.key(), cprefix)].push_back(std::move(*kv.mutable_value()));
  } while (!token.empty());
  for (auto& [parent, ids] : m->children) std::sort(ids.begin(), ids.end());
  const std::string mprefix = dkeys::DeptMemberAllPrefix(tid);
  do {
    ASSIGN_OR_RETURN(TenantStore::Page page, s.Scan(mprefix, kModelPage, token));
    token = page.next_token;
    for (const auto& kv : page.entries) {
      v1::Recipient r;
      if (!r.ParseFromString(kv.value())) return absl::DataLossError("dept member does not parse");
      m->members[ComponentAfter(kv.key(), mprefix)].push_back(std::move(r));
      ++m->member_count;
    }
  } while (!token.empty());
  return std::shared_ptr<const DeptModel>(std::move(m));
}

absl::StatusOr<std::shared_ptr<const DirectoryServiceImpl::DeptModel>>
DirectoryServiceImpl::RefreshDeptModel(const std::string& tid) {
  ASSIGN_OR_RETURN(auto memgen, rs_->GetRaw(dkeys::MemGen(tid)));
  {
    absl::MutexLock lock(&model_mu_);
    auto it = models_.find(tid);
    if (it != models_.end() && it->second->memgen == memgen.value_or("")) return it->second;
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const DeptModel> m, LoadDeptModel(*rs_, tid));
  absl::MutexLock lock(&model_mu_);
  std::shared_ptr<const DeptModel>& held = models_[tid];
  // Two loads of the same memgen (the warm thread and a test): keep one.
  if (held == nullptr || held->memgen != m->memgen) held = std::move(m);
  return held;
}

}  // namespace mailgrid::tenant
