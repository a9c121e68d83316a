#include "services/access/backend.h"

#include <algorithm>

namespace mailgrid::access {

std::vector<uint32_t> ExpandIdSet(const ms::IdSet& set, size_t limit) {
  std::vector<uint32_t> out;
  for (const ms::IdRange& r : set.ranges()) {
    uint32_t a = std::min(r.first(), r.last() == 0 ? r.first() : r.last());
    uint32_t b = std::max(r.first(), r.last());
    if (a == 0) a = 1;
    for (uint64_t n = a; n <= b && out.size() < limit; ++n) out.push_back(static_cast<uint32_t>(n));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

ms::IdSet CompactIdSet(const std::vector<uint32_t>& sorted) {
  ms::IdSet set;
  size_t i = 0;
  while (i < sorted.size()) {
    size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
    ms::IdRange* r = set.add_ranges();
    r->set_first(sorted[i]);
    r->set_last(sorted[j]);
    i = j + 1;
  }
  return set;
}

}  // namespace mailgrid::access
