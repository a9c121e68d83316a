// Sequence sets (RFC 3501 §9 sequence-set, RFC 9051 "$"): "1:4,7,9:*".
//
// Bounded and linear: Parse is O(length) and refuses more than max_ranges
// ranges; Normalize sorts once (O(n log n)) and merges, so "1,2,3,...,N"
// collapses to one range and "1:*" on a million messages is one range, never
// a million numbers. The line limit of the receiver already caps the text at
// 64 KiB, so a 100 000-item set ("1,2,...,100000" is 588 KB) is refused as a
// too-long line before it is ever parsed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mailgrid::imap {

// One seq-number or seq-range as the client wrote it. 0 stands for "*".
struct SeqRange {
  uint32_t first = 0;
  uint32_t last = 0;
  bool operator==(const SeqRange&) const = default;
};

inline constexpr uint32_t kSeqStar = 0;

class SequenceSet {
 public:
  SequenceSet() = default;

  // Refuses (InvalidArgument) empty parts, zero, leading zeros, numbers
  // above 4294967295, and more than `max_ranges` parts; "$" alone (RFC 5182
  // saved search result) is accepted when allow_saved.
  static absl::StatusOr<SequenceSet> Parse(std::string_view text, size_t max_ranges,
                                           bool allow_saved = true);
  static SequenceSet Of(std::vector<SeqRange> ranges);

  bool saved_result() const { return saved_; }  // "$"
  const std::vector<SeqRange>& ranges() const { return ranges_; }
  bool has_star() const;
  // The largest explicit number (ignoring "*"); 0 if none.
  uint32_t max_explicit() const;

  // Resolves "*" to `max` (the highest sequence number or UID in use),
  // orders each range, clips to [1, max], sorts and merges overlapping and
  // adjacent ranges. Per RFC 3501 "559:*" with max 100 is 100:559, clipped
  // to 100:100. An empty mailbox (max 0) gives nothing.
  std::vector<SeqRange> Normalize(uint32_t max) const;
  // Members of Normalize(max), counted without expanding.
  uint64_t Count(uint32_t max) const;
  bool Contains(uint32_t n, uint32_t max) const;
  // Calls f(n) for every member of Normalize(max), ascending, once each.
  template <typename F>
  void ForEach(uint32_t max, F&& f) const {
    for (const SeqRange& r : Normalize(max)) {
      for (uint64_t n = r.first; n <= r.last; ++n) f(static_cast<uint32_t>(n));
    }
  }

  // The wire form, as parsed ("$", or ranges joined by ",").
  std::string ToString() const;

 private:
  bool saved_ = false;
  std::vector<SeqRange> ranges_;
};

}  // namespace mailgrid::imap
