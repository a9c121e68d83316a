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
// store's memgen is still M. Changes that do not touch memberships (a
// department rename, groups, aliases, shared mailboxes, domain settings)
// keep it.
//
// Incremental update: every write of a department's T/deptchild/<d>/… or
// T/deptmember/<d>/… keys also rewrites T/deptgen/<d> in the same write
// (NoteDeptChanges). When memgen moved, the model reads every department's
// deptgen (one scan of short keys) and re-reads the lists of only those
// whose deptgen differs from the one it read before their lists; the other
// lists are shared with the previous model. Because each deptgen is read
// BEFORE its lists, lists are never older than their recorded deptgen: a
// change landing in between only makes the next update read them again.
// This runs on the first expansion after the change (a 5,000-member group
// right after a member was disabled re-reads one department instead of
// falling back to ~350 member scans), and on the warm thread after a
// warm-up. A range delete over several departments (T/deptgenall) and the
// first load read everything.
//
// Threads: updated by the warm thread or a Resolve worker (one at a time,
// model_update_mu_); read by Resolve workers. Models are immutable
// shared_ptrs swapped under model_mu_.
#include <algorithm>
#include <set>

#include "libs/base/status.h"
#include "services/tenant/directory_service.h"

namespace mailgrid::tenant {

namespace {
constexpr uint32_t kModelPage = 10000;

absl::StatusOr<std::vector<kv::v1::KeyValue>> ScanPages(TenantStore& s, const std::string& prefix) {
  std::vector<kv::v1::KeyValue> out;
  std::string token;
  do {
    ASSIGN_OR_RETURN(TenantStore::Page page, s.Scan(prefix, kModelPage, token));
    token = page.next_token;
    for (auto& kv : page.entries) out.push_back(std::move(kv));
  } while (!token.empty());
  return out;
}
}  // namespace

std::shared_ptr<const DirectoryServiceImpl::DeptModel> DirectoryServiceImpl::CurrentDeptModel(
    TenantStore& s, const std::string& tid) {
  absl::StatusOr<std::optional<std::string>> memgen = s.GetRaw(dkeys::MemGen(tid));
  if (!memgen.ok()) return nullptr;
  auto held = [&]() {
    absl::MutexLock lock(&model_mu_);
    auto it = models_.find(tid);
    return it == models_.end() ? nullptr : it->second;
  };
  std::shared_ptr<const DeptModel> base = held();
  if (base != nullptr && base->memgen == memgen->value_or("")) return base;
  if (base == nullptr) {
    // The first load scans every membership: the warm thread does it.
    absl::MutexLock lock(&index_mu_);
    model_pending_.insert(tid);
    return nullptr;
  }
  absl::MutexLock update(&model_update_mu_);
  base = held();  // another caller may have brought it up to date meanwhile
  if (base != nullptr && base->memgen == memgen->value_or("")) return base;
  absl::StatusOr<std::shared_ptr<const DeptModel>> m = UpdateDeptModel(s, tid, base);
  if (!m.ok()) return nullptr;  // expand from the store
  absl::MutexLock lock(&model_mu_);
  models_[tid] = *m;
  return *m;
}

absl::Status DirectoryServiceImpl::ReadDeptLists(TenantStore& s, const std::string& tid,
                                                 const std::string& dept, DeptModel& m) {
  ASSIGN_OR_RETURN(auto children, ScanPages(s, dkeys::DeptChildPrefix(tid, dept)));
  if (children.empty()) {
    m.children.erase(dept);
  } else {
    auto ids = std::make_shared<std::vector<std::string>>();
    for (auto& kv : children) ids->push_back(std::move(*kv.mutable_value()));
    std::sort(ids->begin(), ids->end());
    m.children[dept] = std::move(ids);
  }
  ASSIGN_OR_RETURN(auto members, ScanPages(s, dkeys::DeptMemberPrefix(tid, dept)));
  if (auto it = m.members.find(dept); it != m.members.end()) {
    m.member_count -= it->second->size();
    m.members.erase(it);
  }
  if (members.empty()) return absl::OkStatus();
  auto list = std::make_shared<std::vector<std::string>>();
  list->reserve(members.size());
  for (auto& kv : members) list->push_back(std::move(*kv.mutable_value()));
  m.member_count += list->size();
  m.members[dept] = std::move(list);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const DirectoryServiceImpl::DeptModel>>
DirectoryServiceImpl::UpdateDeptModel(TenantStore& s, const std::string& tid,
                                      std::shared_ptr<const DeptModel> base) {
  auto m = std::make_shared<DeptModel>();
  // The stamps first: a change after these reads makes the model unusable
  // (memgen) or its department's lists read again next time (deptgen).
  ASSIGN_OR_RETURN(auto memgen, s.GetRaw(dkeys::MemGen(tid)));
  ASSIGN_OR_RETURN(auto allgen, s.GetRaw(dkeys::DeptGenAll(tid)));
  m->memgen = memgen.value_or("");
  m->allgen = allgen.value_or("");
  const std::string gprefix = dkeys::DeptGenPrefix(tid);
  ASSIGN_OR_RETURN(auto gens, ScanPages(s, gprefix));
  for (auto& kv : gens) m->gens[ComponentAfter(kv.key(), gprefix)] = std::move(*kv.mutable_value());
  if (base != nullptr && base->allgen == m->allgen) {
    m->children = base->children;
    m->members = base->members;
    m->member_count = base->member_count;
    auto gen_of = [](const DeptModel& d, const std::string& id) {
      auto it = d.gens.find(id);
      return it == d.gens.end() ? std::string() : it->second;
    };
    std::set<std::string> changed;
    for (const auto& [id, gen] : m->gens)
      if (gen != gen_of(*base, id)) changed.insert(id);
    for (const auto& [id, gen] : base->gens)
      if (!gen.empty() && !m->gens.contains(id)) changed.insert(id);
    for (const auto& id : changed) RETURN_IF_ERROR(ReadDeptLists(s, tid, id, *m));
    m->reread = changed.size();
    return std::shared_ptr<const DeptModel>(std::move(m));
  }
  // Everything: one scan of the tree, one of the memberships.
  const std::string cprefix = dkeys::DeptChildAllPrefix(tid);
  absl::flat_hash_map<std::string, std::vector<std::string>> children;
  ASSIGN_OR_RETURN(auto tree, ScanPages(s, cprefix));
  for (auto& kv : tree) children[ComponentAfter(kv.key(), cprefix)].push_back(std::move(*kv.mutable_value()));
  tree.clear();
  for (auto& [parent, ids] : children) {
    std::sort(ids.begin(), ids.end());
    m->children[parent] = std::make_shared<const std::vector<std::string>>(std::move(ids));
  }
  const std::string mprefix = dkeys::DeptMemberAllPrefix(tid);
  absl::flat_hash_map<std::string, std::vector<std::string>> members;
  std::string token;
  do {
    ASSIGN_OR_RETURN(TenantStore::Page page, s.Scan(mprefix, kModelPage, token));
    token = page.next_token;
    for (auto& kv : page.entries) {
      members[ComponentAfter(kv.key(), mprefix)].push_back(std::move(*kv.mutable_value()));
      ++m->member_count;
    }
  } while (!token.empty());
  for (auto& [dept, list] : members) {
    list.shrink_to_fit();
    m->members[dept] = std::make_shared<const std::vector<std::string>>(std::move(list));
  }
  m->reread = m->members.size();
  return std::shared_ptr<const DeptModel>(std::move(m));
}

absl::StatusOr<std::shared_ptr<const DirectoryServiceImpl::DeptModel>>
DirectoryServiceImpl::RefreshDeptModel(const std::string& tid) {
  ASSIGN_OR_RETURN(auto memgen, rs_->GetRaw(dkeys::MemGen(tid)));
  auto held = [&]() {
    absl::MutexLock lock(&model_mu_);
    auto it = models_.find(tid);
    return it == models_.end() ? nullptr : it->second;
  };
  std::shared_ptr<const DeptModel> base = held();
  if (base != nullptr && base->memgen == memgen.value_or("")) return base;
  absl::MutexLock update(&model_update_mu_);
  base = held();
  if (base != nullptr && base->memgen == memgen.value_or("")) return base;
  ASSIGN_OR_RETURN(std::shared_ptr<const DeptModel> m, UpdateDeptModel(*rs_, tid, base));
  absl::MutexLock lock(&model_mu_);
  models_[tid] = m;
  return m;
}

}  // namespace mailgrid::tenant
