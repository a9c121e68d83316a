#include "services/mailstore/term_block.h"

#include <algorithm>
#include <iterator>

#include "absl/status/statusor.h"

namespace mailgrid::mailstore::termblock {

absl::Status Decode(std::string_view v, uint32_t block, std::vector<uint32_t>* out) {
  if (v.empty()) return absl::OkStatus();
  const uint32_t base = block * kBlockUids;
  if (v[0] == 'B') {
    size_t n = std::min<size_t>(v.size() - 1, kBlockUids / 8);
    for (size_t i = 0; i < n; ++i) {
      auto b = static_cast<unsigned char>(v[i + 1]);
      for (uint32_t k = 0; b != 0; ++k, b >>= 1)
        if (b & 1u) out->push_back(base + static_cast<uint32_t>(i * 8) + k);
    }
    return absl::OkStatus();
  }
  if (v[0] != 'L') return absl::DataLossError("term block: unknown kind");
  uint32_t at = 0;
  bool first = true;
  for (size_t i = 1; i < v.size();) {
    uint32_t delta = 0;
    int shift = 0;
    for (;;) {
      if (i >= v.size() || shift > 14) return absl::DataLossError("term block: bad varint");
      auto b = static_cast<unsigned char>(v[i++]);
      delta |= static_cast<uint32_t>(b & 0x7f) << shift;
      shift += 7;
      if ((b & 0x80) == 0) break;
    }
    at = first ? delta : at + delta;
    first = false;
    if (at >= kBlockUids) return absl::DataLossError("term block: offset out of range");
    out->push_back(base + at);
  }
  return absl::OkStatus();
}

std::string Encode(const std::vector<uint32_t>& uids) {
  if (uids.empty()) return "";
  std::string list = "L";
  uint32_t prev = 0;
  bool first = true;
  for (uint32_t u : uids) {
    uint32_t off = u % kBlockUids;
    uint32_t d = first ? off : off - prev;
    first = false;
    prev = off;
    while (d >= 0x80) {
      list.push_back(static_cast<char>((d & 0x7f) | 0x80));
      d >>= 7;
    }
    list.push_back(static_cast<char>(d));
  }
  uint32_t last = uids.back() % kBlockUids;
  size_t bitmap_size = 1 + last / 8 + 1;
  if (list.size() <= bitmap_size) return list;
  std::string bits(bitmap_size, '\0');
  bits[0] = 'B';
  for (uint32_t u : uids) {
    uint32_t off = u % kBlockUids;
    bits[1 + off / 8] = static_cast<char>(static_cast<unsigned char>(bits[1 + off / 8]) | (1u << (off % 8)));
  }
  return bits;
}

absl::StatusOr<std::string> Apply(std::string_view value, uint32_t block,
                                  const std::vector<uint32_t>& add,
                                  const std::vector<uint32_t>& remove) {
  std::vector<uint32_t> have;
  if (absl::Status s = Decode(value, block, &have); !s.ok()) return s;
  std::vector<uint32_t> merged;
  std::set_union(have.begin(), have.end(), add.begin(), add.end(), std::back_inserter(merged));
  if (!remove.empty()) {
    std::vector<uint32_t> left;
    std::set_difference(merged.begin(), merged.end(), remove.begin(), remove.end(),
                        std::back_inserter(left));
    merged = std::move(left);
  }
  return Encode(merged);
}

}  // namespace mailgrid::mailstore::termblock
