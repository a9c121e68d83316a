// UID sets and message selection.
#include <algorithm>

#include "services/mailstore/store_internal.h"

namespace mailgrid::mailstore {

bool InSet(const v1::IdSet& set, uint32_t id, uint32_t max) {
  for (const auto& r : set.ranges()) {
    uint32_t a = r.first(), b = r.to_last() ? max : r.last();
    if (b < a && !r.to_last()) std::swap(a, b);
    if (r.to_last() && a > max) a = max;  // "N:*" with N beyond the end means max
    if (id >= a && id <= b) return true;
  }
  return false;
}

void ToIdSet(const std::vector<uint32_t>& sorted, v1::IdSet* out) {
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
    auto* r = out->add_ranges();
    r->set_first(sorted[i]);
    r->set_last(sorted[j]);
    i = j + 1;
  }
}

std::vector<uint32_t> FromIdSet(const v1::IdSet& set, uint32_t max, uint32_t cap) {
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
  for (const auto& r : set.ranges()) {
    uint32_t a = r.first(), b = r.to_last() ? max : r.last();
    if (r.to_last() && a > max) a = max;
    if (b < a) std::swap(a, b);
    if (a == 0) a = 1;
    if (b > max) b = max;
    if (a <= b) ranges.emplace_back(a, b);
  }
  std::sort(ranges.begin(), ranges.end());
  std::vector<uint32_t> out;
  uint32_t next = 0;
  for (auto [a, b] : ranges) {
    for (uint64_t x = std::max(a, next); x <= b && out.size() < cap; ++x) out.push_back(static_cast<uint32_t>(x));
    next = std::max<uint32_t>(next, b + 1);
  }
  return out;
}

absl::Status ForEachUidRange(MailStore* store, const MailStore::Mbx& m,
                             const storage::FolderRecord& f,
                             const std::function<void(uint32_t first, uint32_t last)>& fn) {
  uidmap::RangeJoiner join(fn);
  if (f.uid_map()) {
    std::string p = keys::UidMapPrefix(m.tenant, m.id, f.folder_id());
    RETURN_IF_ERROR(store->ScanRange(p, keys::PrefixEnd(p), false, SIZE_MAX, false,
                                     [&](const kv::v1::KeyValue& kv) {
                                       uidmap::ForEachRun(kv.value(), keys::ReadBe32(kv.key()),
                                                          [&](uint32_t a, uint32_t b) { join.Add(a, b); });
                                       return true;
                                     }));
  } else {
    std::string p = keys::MessagePrefix(m.tenant, m.id, f.folder_id());
    RETURN_IF_ERROR(store->ScanRange(p, keys::PrefixEnd(p), true, SIZE_MAX, false,
                                     [&](const kv::v1::KeyValue& kv) {
                                       uint32_t uid = keys::ReadBe32(kv.key());
                                       join.Add(uid, uid);
                                       return true;
                                     }));
  }
  join.Flush();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint32_t>> AllUids(MailStore* store, const MailStore::Mbx& m,
                                              const storage::FolderRecord& f) {
  std::vector<uint32_t> out;
  out.reserve(f.messages());
  RETURN_IF_ERROR(ForEachUidRange(store, m, f, [&](uint32_t a, uint32_t b) {
    for (uint64_t u = a; u <= b; ++u) out.push_back(static_cast<uint32_t>(u));
  }));
  return out;
}

absl::StatusOr<std::vector<std::pair<uint32_t, storage::MessageRecord>>> ScanMessages(
    MailStore* store, const MailStore::Mbx& m, const std::string& folder_id, uint32_t first,
    uint32_t last) {
  std::vector<std::pair<uint32_t, storage::MessageRecord>> out;
  if (first == 0) first = 1;
  if (last < first) return out;
  std::string p = keys::MessagePrefix(m.tenant, m.id, folder_id);
  std::string start = keys::Message(m.tenant, m.id, folder_id, first);
  std::string end = last == UINT32_MAX ? keys::PrefixEnd(p)
                                       : keys::Message(m.tenant, m.id, folder_id, last + 1);
  absl::Status bad;
  RETURN_IF_ERROR(store->ScanRange(start, end, false, SIZE_MAX, false,
                                   [&](const kv::v1::KeyValue& kv) {
                                     storage::MessageRecord rec;
                                     if (!rec.ParseFromString(kv.value())) {
                                       bad = absl::DataLossError("message record");
                                       return false;
                                     }
                                     out.emplace_back(keys::ReadBe32(kv.key()), std::move(rec));
                                     return true;
                                   }));
  RETURN_IF_ERROR(bad);
  return out;
}

absl::StatusOr<std::vector<std::pair<uint32_t, storage::MessageRecord>>> SelectMessages(
    MailStore* store, const MailStore::Mbx& m, const storage::FolderRecord& f,
    const v1::MessageSelector& sel, std::vector<uint32_t>* all_uids_out) {
  std::vector<std::pair<uint32_t, storage::MessageRecord>> out;
  uint32_t max_uid = f.uidnext() > 0 ? f.uidnext() - 1 : 0;
  std::vector<std::pair<uint32_t, uint32_t>> uid_ranges;
  if (sel.set_case() == v1::MessageSelector::kSequenceNumbers) {
    ASSIGN_OR_RETURN(std::vector<uint32_t> all, AllUids(store, m, f));
    std::vector<uint32_t> seqs =
        FromIdSet(sel.sequence_numbers(), static_cast<uint32_t>(all.size()));
    for (uint32_t s : seqs) {
      uint32_t uid = all[s - 1];
      if (!uid_ranges.empty() && uid_ranges.back().second + 1 == uid) uid_ranges.back().second = uid;
      else uid_ranges.emplace_back(uid, uid);
    }
    if (all_uids_out) *all_uids_out = std::move(all);
  } else if (sel.set_case() == v1::MessageSelector::kUids) {
    // "*" is the largest UID that exists; a range is clamped to it.
    uint32_t largest = 0;
    bool needs_largest = false;
    for (const auto& r : sel.uids().ranges()) needs_largest |= r.to_last();
    if (needs_largest) {
      std::string p = keys::MessagePrefix(m.tenant, m.id, f.folder_id());
      RETURN_IF_ERROR(store->ScanRange(p, keys::PrefixEnd(p), true, 1, true,
                                       [&](const kv::v1::KeyValue& kv) {
                                         largest = keys::ReadBe32(kv.key());
                                         return false;
                                       }));
    }
    for (const auto& r : sel.uids().ranges()) {
      uint32_t a = r.first(), b = r.to_last() ? largest : r.last();
      if (b < a) std::swap(a, b);
      if (a == 0) a = 1;
      b = std::min(b, max_uid);
      if (a <= b) uid_ranges.emplace_back(a, b);
    }
    std::sort(uid_ranges.begin(), uid_ranges.end());
  } else {
    return InvalidField("messages", "EMPTY", "no UIDs or sequence numbers given");
  }
  uint32_t done = 0;  // ranges may overlap
  for (auto [a, b] : uid_ranges) {
    a = std::max(a, done + 1);
    if (a > b) continue;
    ASSIGN_OR_RETURN(auto part, ScanMessages(store, m, f.folder_id(), a, b));
    for (auto& x : part) out.push_back(std::move(x));
    done = b;
  }
  return out;
}

}  // namespace mailgrid::mailstore
