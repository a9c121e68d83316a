#include "services/mailstore/uid_map.h"

#include <algorithm>

namespace mailgrid::mailstore::uidmap {

void Set(std::string* bits, uint32_t uid, bool on) {
  uint32_t bit = uid % kBlockUids;
  size_t byte = bit / 8;
  unsigned char mask = static_cast<unsigned char>(1u << (bit % 8));
  if (on) {
    if (bits->size() <= byte) bits->resize(byte + 1, '\0');
    (*bits)[byte] = static_cast<char>(static_cast<unsigned char>((*bits)[byte]) | mask);
    return;
  }
  if (bits->size() <= byte) return;
  (*bits)[byte] = static_cast<char>(static_cast<unsigned char>((*bits)[byte]) & ~mask);
  while (!bits->empty() && bits->back() == '\0') bits->pop_back();
}

void ForEachRun(std::string_view bits, uint32_t block,
                const std::function<void(uint32_t first, uint32_t last)>& fn) {
  const uint32_t base = block * kBlockUids;
  bool open = false;
  uint32_t first = 0;
  size_t n = std::min<size_t>(bits.size(), kBlockUids / 8);
  for (size_t i = 0; i < n; ++i) {
    auto b = static_cast<unsigned char>(bits[i]);
    uint32_t at = base + static_cast<uint32_t>(i * 8);
    if (b == 0xff && open) continue;  // the common case: a run goes on
    if (b == 0 && !open) continue;
    for (uint32_t k = 0; k < 8; ++k) {
      bool set = (b >> k) & 1u;
      if (set && !open) {
        open = true;
        first = at + k;
      } else if (!set && open) {
        open = false;
        fn(first, at + k - 1);
      }
    }
  }
  if (open) fn(first, base + static_cast<uint32_t>(n * 8) - 1);
}

}  // namespace mailgrid::mailstore::uidmap
