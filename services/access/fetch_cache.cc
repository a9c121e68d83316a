#include "services/access/fetch_cache.h"

#include "absl/strings/str_cat.h"

namespace mailgrid::access {

bool FetchCache::Servable(const ms::FetchRequest& r) {
  if (r.set_seen() || r.changed_since() != 0 || r.items().raw()) return false;
  // BINARY answers depend on the part's encoding (UNKNOWN-CTE): mailstored.
  for (const ms::BodySection& s : r.items().sections()) {
    if (s.decode()) return false;
  }
  return true;
}

std::string FetchCache::EntryKey(const std::string& folder_key, uint32_t uidvalidity,
                                 uint32_t uid) {
  return absl::StrCat(folder_key, "\n", uidvalidity, "\n", uid);
}

size_t FetchCache::Bytes(const Entry& e) {
  size_t n = 128 + e.data.SpaceUsedLong();
  for (const auto& [k, s] : e.sections) n += k.size() + s.SpaceUsedLong() + 32;
  return n;
}

void FetchCache::Touch(Entry& e) { lru_.splice(lru_.begin(), lru_, e.lru); }

void FetchCache::EvictEntries() {
  while (bytes_ > limits_.message_bytes && !lru_.empty()) {
    auto it = entries_.find(lru_.back());
    bytes_ -= it->second.bytes;
    entries_.erase(it);
    lru_.pop_back();
  }
}

bool FetchCache::Lookup(const std::string& folder_key, uint32_t uidvalidity, uint32_t uid,
                        const ms::FetchItems& items, ms::FetchResponse* out) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = entries_.find(EntryKey(folder_key, uidvalidity, uid));
  bool hit = it != entries_.end();
  if (hit) {
    const Entry& e = it->second;
    hit = (!items.envelope() || e.envelope) && (!items.bodystructure() || e.bodystructure) &&
          (!items.rfc822_size() || e.size) && (!items.internal_date() || e.date);
    std::vector<const ms::SectionData*> sections;
    for (int i = 0; hit && i < items.sections_size(); ++i) {
      std::string key = items.sections(i).SerializeAsString();
      const ms::SectionData* found = nullptr;
      for (const auto& [k, s] : e.sections) {
        if (k == key) found = &s;
      }
      if (found == nullptr) hit = false;
      sections.push_back(found);
    }
    if (hit) {
      out->set_uid(uid);
      if (items.envelope()) *out->mutable_envelope() = e.data.envelope();
      if (items.bodystructure()) *out->mutable_bodystructure() = e.data.bodystructure();
      if (items.rfc822_size()) out->set_rfc822_size(e.data.rfc822_size());
      if (items.internal_date()) *out->mutable_internal_date() = e.data.internal_date();
      for (const ms::SectionData* s : sections) *out->add_sections() = *s;
      Touch(it->second);
    }
  }
  ++(hit ? hits_ : misses_);
  return hit;
}

void FetchCache::Store(const std::string& folder_key, uint32_t uidvalidity,
                       const ms::FetchItems& items, const ms::FetchResponse& m) {
  if (limits_.message_bytes == 0) return;
  std::lock_guard<std::mutex> l(mu_);
  std::string key = EntryKey(folder_key, uidvalidity, m.uid());
  auto [it, inserted] = entries_.try_emplace(key);
  Entry& e = it->second;
  if (inserted) {
    lru_.push_front(key);
    e.lru = lru_.begin();
  } else {
    bytes_ -= e.bytes;
    Touch(e);
  }
  if (items.envelope()) {
    *e.data.mutable_envelope() = m.envelope();
    e.envelope = true;
  }
  if (items.bodystructure()) {
    *e.data.mutable_bodystructure() = m.bodystructure();
    e.bodystructure = true;
  }
  if (items.rfc822_size()) {
    e.data.set_rfc822_size(m.rfc822_size());
    e.size = true;
  }
  if (items.internal_date()) {
    *e.data.mutable_internal_date() = m.internal_date();
    e.date = true;
  }
  for (int i = 0; i < items.sections_size() && i < m.sections_size(); ++i) {
    const ms::SectionData& s = m.sections(i);
    if (s.has_data() && s.data().size() > limits_.max_item_bytes) continue;  // too big to keep
    std::string k = items.sections(i).SerializeAsString();
    bool known = false;
    for (const auto& [have, unused] : e.sections) known |= have == k;
    if (!known) e.sections.emplace_back(std::move(k), s);
  }
  e.bytes = Bytes(e);
  bytes_ += e.bytes;
  EvictEntries();
}

// ---- flags ------------------------------------------------------------------

void FetchCache::TouchFolder(Folder& f) { folder_lru_.splice(folder_lru_.begin(), folder_lru_, f.lru); }

void FetchCache::EvictFolders(const std::string& keep) {
  while (flag_messages_ > limits_.flag_messages && !folder_lru_.empty() &&
         folder_lru_.back() != keep) {
    auto it = folders_.find(folder_lru_.back());
    flag_messages_ -= it->second.messages.size();
    folders_.erase(it);
    folder_lru_.pop_back();
  }
}

uint64_t FetchCache::FlagsBase(const std::string& folder_key, uint32_t uidvalidity) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = folders_.find(folder_key);
  if (it == folders_.end() || it->second.uidvalidity != uidvalidity) return 0;
  return it->second.modseq;
}

bool FetchCache::ApplyChanges(const std::string& folder_key, uint64_t base,
                              const ms::ChangesSinceResponse& r) {
  if (limits_.flag_messages == 0) return false;
  std::lock_guard<std::mutex> l(mu_);
  auto it = folders_.find(folder_key);
  if (it != folders_.end() && it->second.uidvalidity != r.uidvalidity()) {
    // A new UIDVALIDITY: everything known about the old one is void.
    flag_messages_ -= it->second.messages.size();
    folder_lru_.erase(it->second.lru);
    folders_.erase(it);
    it = folders_.end();
  }
  if (it == folders_.end()) {
    // Only a complete load (base 0) can start a folder.
    if (base != 0) return false;
    it = folders_.try_emplace(folder_key).first;
    it->second.uidvalidity = r.uidvalidity();
    folder_lru_.push_front(folder_key);
    it->second.lru = folder_lru_.begin();
  }
  Folder& f = it->second;
  // A state older than `base` was replaced: the changes between are
  // missing from this answer.
  if (base > f.modseq) return false;
  TouchFolder(f);
  // An answer no newer than the state adds nothing (another session's
  // refresh got there first); anything newer is applied whole, each
  // message only if its MODSEQ moved forward.
  if (r.highest_modseq() <= f.modseq && f.modseq != 0) return true;
  size_t before = f.messages.size();
  for (const ms::MessageFlags& m : r.changed()) {
    Flags& x = f.messages[m.uid()];
    if (x.modseq > m.modseq()) continue;
    x.modseq = m.modseq();
    x.flags.assign(m.flags().begin(), m.flags().end());
  }
  for (const ms::IdRange& range : r.vanished().ranges()) {
    uint32_t last = range.to_last() ? UINT32_MAX : range.last();
    if (last < range.first()) continue;
    if (static_cast<uint64_t>(last) - range.first() > f.messages.size()) {
      for (auto m = f.messages.begin(); m != f.messages.end();) {
        m = m->first >= range.first() && m->first <= last ? f.messages.erase(m) : std::next(m);
      }
    } else {
      for (uint64_t u = range.first(); u <= last; ++u) f.messages.erase(static_cast<uint32_t>(u));
    }
  }
  f.modseq = std::max(f.modseq, r.highest_modseq());
  flag_messages_ = flag_messages_ - before + f.messages.size();
  EvictFolders(folder_key);
  return true;
}

bool FetchCache::FlagsOf(const std::string& folder_key, uint32_t uid, ms::MessageFlags* out) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = folders_.find(folder_key);
  if (it == folders_.end()) return false;
  auto m = it->second.messages.find(uid);
  if (m == it->second.messages.end()) return false;
  out->set_uid(uid);
  out->set_modseq(m->second.modseq);
  out->mutable_flags()->Assign(m->second.flags.begin(), m->second.flags.end());
  return true;
}

std::optional<std::pair<uint32_t, uint64_t>> FetchCache::FlagsState(const std::string& folder_key) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = folders_.find(folder_key);
  if (it == folders_.end()) return std::nullopt;
  return std::make_pair(it->second.uidvalidity, it->second.modseq);
}

std::optional<std::string> FetchCache::FolderIdHint(const std::string& mailbox_id,
                                                    const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = folder_ids_.find(absl::StrCat(mailbox_id, "\n", name));
  if (it == folder_ids_.end()) return std::nullopt;
  return it->second;
}

void FetchCache::RememberFolderId(const std::string& mailbox_id, const std::string& name,
                                  const std::string& folder_id) {
  if (limits_.flag_messages == 0) return;
  std::lock_guard<std::mutex> l(mu_);
  // Hints only save a call: when there are too many, start again.
  if (folder_ids_.size() >= 100'000) folder_ids_.clear();
  folder_ids_[absl::StrCat(mailbox_id, "\n", name)] = folder_id;
}

FetchCache::Stats FetchCache::stats() const {
  std::lock_guard<std::mutex> l(mu_);
  Stats s;
  s.hits = hits_;
  s.misses = misses_;
  s.bytes = bytes_;
  s.entries = entries_.size();
  s.folders = folders_.size();
  s.flag_messages = flag_messages_;
  return s;
}

}  // namespace mailgrid::access
