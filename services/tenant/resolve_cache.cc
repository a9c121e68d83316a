#include "services/tenant/resolve_cache.h"

namespace mailgrid::tenant {

ResolveCache::Lookup ResolveCache::Find(const std::string& key, absl::Time now) {
  Lookup out;
  if (!enabled()) return out;
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return out;
  }
  const Entry& e = *it->second;
  if (e.tenant_id.empty()) {
    if (now - e.computed_at < ttl_) {
      hits_.fetch_add(1, std::memory_order_relaxed);
      out.entry = it->second;
    } else {
      misses_.fetch_add(1, std::memory_order_relaxed);
    }
    return out;
  }
  auto st = stamps_.find(e.tenant_id);
  if (st == stamps_.end() || now - st->second.checked_at >= ttl_) {
    out.validate_tenant = e.tenant_id;
    return out;
  }
  if (st->second.stamp == e.stamp) {
    hits_.fetch_add(1, std::memory_order_relaxed);
    out.entry = it->second;
  } else {
    misses_.fetch_add(1, std::memory_order_relaxed);
  }
  return out;
}

void ResolveCache::Insert(const std::string& key, std::shared_ptr<const Entry> entry) {
  if (!enabled()) return;
  absl::MutexLock lock(&mu_);
  // Crude but bounded: a full cache starts over (answers are cheap to redo).
  if (entries_.size() >= max_entries_) entries_.clear();
  entries_[key] = std::move(entry);
}

void ResolveCache::SetStamp(const std::string& tenant_id, const Stamp& stamp, absl::Time now) {
  if (!enabled()) return;
  absl::MutexLock lock(&mu_);
  stamps_[tenant_id] = TenantStamp{stamp, now};
}

void ResolveCache::Invalidate(const std::string& tenant_id) {
  absl::MutexLock lock(&mu_);
  stamps_.erase(tenant_id);
}

}  // namespace mailgrid::tenant
