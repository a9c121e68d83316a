#include "services/tenant/resolve_cache.h"

#include <algorithm>
#include <vector>

namespace mailgrid::tenant {

ResolveCache::Lookup ResolveCache::Find(const std::string& key, absl::Time now) {
  Lookup out;
  if (!enabled()) return out;
  absl::ReaderMutexLock lock(&mu_);
  if (auto w = warm_.find(key); w != warm_.end()) {
    const std::string& tid = warm_tenants_[w->second.tenant];
    auto st = stamps_.find(tid);
    if (st == stamps_.end() || now - st->second.as_of > max_staleness_) {
      out.validate_tenant = tid;
      return out;
    }
    auto ws = warm_stamps_.find(tid);
    if (ws != warm_stamps_.end() && ws->second == st->second.stamp) {
      hits_.fetch_add(1, std::memory_order_relaxed);
      auto e = std::make_shared<Entry>();
      e->tenant_id = tid;
      e->computed_at = st->second.as_of;
      e->packed = w->second.packed;
      out.entry = std::move(e);
      return out;
    }
    // Not re-warmed since the last change: an answer computed on use may hold.
  }
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return out;
  }
  const Entry& e = *it->second;
  if (e.tenant_id.empty()) {
    if (now - e.computed_at <= max_staleness_) {
      hits_.fetch_add(1, std::memory_order_relaxed);
      out.entry = it->second;
    } else {
      misses_.fetch_add(1, std::memory_order_relaxed);
    }
    return out;
  }
  auto st = stamps_.find(e.tenant_id);
  if (st == stamps_.end() || now - st->second.as_of > max_staleness_) {
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
  // Crude but bounded: a full index starts over (answers are cheap to redo).
  if (entries_.size() >= max_entries_) entries_.clear();
  entries_[key] = std::move(entry);
}

void ResolveCache::InsertAll(
    std::vector<std::pair<std::string, std::shared_ptr<const Entry>>> entries) {
  if (!enabled()) return;
  absl::MutexLock lock(&mu_);
  for (auto& [key, entry] : entries) {
    if (entries_.size() >= max_entries_) entries_.clear();
    entries_[key] = std::move(entry);
  }
}

void ResolveCache::ApplyWarm(
    const std::string& tenant_id, const Stamp& stamp,
    std::vector<std::pair<std::string, std::shared_ptr<const Entry>>> upserts,
    const std::vector<std::string>& erase) {
  if (!enabled()) return;
  absl::MutexLock lock(&mu_);
  for (const auto& key : erase) warm_.erase(key);
  const uint32_t t = WarmTenantIndex(tenant_id);
  for (auto& [key, entry] : upserts) warm_[key] = WarmSlot{t, entry->packed};
  warm_stamps_[tenant_id] = stamp;
}

uint32_t ResolveCache::WarmTenantIndex(const std::string& tenant_id) {
  auto it = std::find(warm_tenants_.begin(), warm_tenants_.end(), tenant_id);
  if (it != warm_tenants_.end()) return static_cast<uint32_t>(it - warm_tenants_.begin());
  warm_tenants_.push_back(tenant_id);
  return static_cast<uint32_t>(warm_tenants_.size() - 1);
}

void ResolveCache::DropWarm(const std::string& tenant_id) {
  absl::MutexLock lock(&mu_);
  warm_stamps_.erase(tenant_id);
}

void ResolveCache::ClearWarm(const std::string& tenant_id) {
  absl::MutexLock lock(&mu_);
  warm_stamps_.erase(tenant_id);
  const uint32_t t = WarmTenantIndex(tenant_id);
  absl::erase_if(warm_, [&](const auto& kv) { return kv.second.tenant == t; });
}

bool ResolveCache::Unsettled(TenantStamp& t, absl::Time now) {
  if (t.pending.empty()) return false;
  std::erase_if(t.pending, [&](const Pending& p) { return p.until <= now; });
  return !t.pending.empty();
}

bool ResolveCache::SetStamp(const std::string& tenant_id, const Stamp& stamp, absl::Time as_of) {
  if (!enabled()) return false;
  absl::MutexLock lock(&mu_);
  auto it = stamps_.find(tenant_id);
  if (it == stamps_.end()) {
    stamps_[tenant_id] = TenantStamp{stamp, as_of, {}};
    return true;
  }
  TenantStamp& t = it->second;
  const bool changed = !(t.stamp == stamp);
  if (Unsettled(t, absl::Now())) {
    auto seen = std::find_if(t.pending.begin(), t.pending.end(),
                             [&](const Pending& p) { return p.dirgen == stamp.dirgen; });
    if (seen != t.pending.end()) t.pending.erase(t.pending.begin(), seen + 1);
    if (!t.pending.empty()) {
      // A change made here is not in what was read: keep the stamp (the
      // warm-up follows it) but vouch for nothing until it is.
      t.stamp = stamp;
      t.as_of = absl::InfinitePast();
      return changed;
    }
  }
  // Never move as_of backwards: a slower reader must not undo a newer read.
  if (changed || as_of > t.as_of) {
    t.stamp = stamp;
    t.as_of = as_of;
  }
  return changed;
}

void ResolveCache::Revouch(absl::Time as_of) {
  absl::MutexLock lock(&mu_);
  for (auto& [t, s] : stamps_) {
    if (s.as_of != absl::InfinitePast() && as_of > s.as_of) s.as_of = as_of;
  }
}

void ResolveCache::Invalidate(const std::string& tenant_id, std::string expected) {
  if (!enabled()) return;
  absl::MutexLock lock(&mu_);
  // Keep the tenant known (the index thread re-reads it) but unusable. A
  // tenant not held yet is added: its answers computed from this replica
  // must wait for the change too (Awaiting).
  TenantStamp& t = stamps_[tenant_id];
  t.as_of = absl::InfinitePast();
  t.pending.push_back(Pending{std::move(expected), absl::Now() + kPendingFor});
}

bool ResolveCache::Awaiting(const std::string& tenant_id) {
  if (!enabled()) return false;
  absl::MutexLock lock(&mu_);
  auto it = stamps_.find(tenant_id);
  return it != stamps_.end() && Unsettled(it->second, absl::Now());
}

std::vector<std::string> ResolveCache::Tenants() {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::string> out;
  out.reserve(stamps_.size());
  for (const auto& [t, s] : stamps_) out.push_back(t);
  return out;
}

bool ResolveCache::CurrentStamp(const std::string& tenant_id, Stamp* out) {
  absl::ReaderMutexLock lock(&mu_);
  auto it = stamps_.find(tenant_id);
  if (it == stamps_.end()) return false;
  *out = it->second.stamp;
  return true;
}

size_t ResolveCache::size() {
  absl::ReaderMutexLock lock(&mu_);
  return entries_.size();
}

size_t ResolveCache::warmed_size() {
  absl::ReaderMutexLock lock(&mu_);
  return warm_.size();
}

}  // namespace mailgrid::tenant
