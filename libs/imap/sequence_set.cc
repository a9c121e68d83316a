#include "libs/imap/sequence_set.h"

#include <algorithm>

#include "libs/imap/types.h"

namespace mailgrid::imap {
namespace {

// seq-number = nz-number / "*"; nz-number = digit-nz *DIGIT, 32-bit.
bool ParseSeqNumber(std::string_view s, uint32_t* out) {
  if (s == "*") {
    *out = kSeqStar;
    return true;
  }
  if (s.empty() || s.size() > 10 || s[0] < '1' || s[0] > '9') return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > 0xFFFFFFFFull) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

std::string NumberText(uint32_t n) { return n == kSeqStar ? "*" : std::to_string(n); }

}  // namespace

absl::StatusOr<SequenceSet> SequenceSet::Parse(std::string_view text, size_t max_ranges,
                                               bool allow_saved) {
  SequenceSet set;
  if (text == "$" && allow_saved) {
    set.saved_ = true;
    return set;
  }
  // Count first so the vector is sized once and an oversized set is refused
  // before any work proportional to it beyond this scan.
  const size_t parts = static_cast<size_t>(std::count(text.begin(), text.end(), ',')) + 1;
  if (parts > max_ranges) {
    return BadArgument("Sequence set has more than " + std::to_string(max_ranges) + " ranges",
                       "LIMIT");
  }
  set.ranges_.reserve(parts);
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view part = text.substr(start, end - start);
    const size_t colon = part.find(':');
    SeqRange r;
    bool ok;
    if (colon == std::string_view::npos) {
      ok = ParseSeqNumber(part, &r.first);
      r.last = r.first;
    } else {
      ok = ParseSeqNumber(part.substr(0, colon), &r.first) &&
           ParseSeqNumber(part.substr(colon + 1), &r.last);
    }
    if (!ok) return BadArgument("Invalid sequence set");
    set.ranges_.push_back(r);
    start = end + 1;
  }
  return set;
}

SequenceSet SequenceSet::Of(std::vector<SeqRange> ranges) {
  SequenceSet s;
  s.ranges_ = std::move(ranges);
  return s;
}

bool SequenceSet::has_star() const {
  return std::any_of(ranges_.begin(), ranges_.end(),
                     [](const SeqRange& r) { return r.first == kSeqStar || r.last == kSeqStar; });
}

uint32_t SequenceSet::max_explicit() const {
  uint32_t m = 0;
  for (const SeqRange& r : ranges_) m = std::max({m, r.first, r.last});
  return m;
}

std::vector<SeqRange> SequenceSet::Normalize(uint32_t max) const {
  std::vector<SeqRange> out;
  if (max == 0) return out;
  out.reserve(ranges_.size());
  for (SeqRange r : ranges_) {
    if (r.first == kSeqStar) r.first = max;
    if (r.last == kSeqStar) r.last = max;
    if (r.first > r.last) std::swap(r.first, r.last);
    if (r.first > max) continue;
    r.last = std::min(r.last, max);
    out.push_back(r);
  }
  std::sort(out.begin(), out.end(),
            [](const SeqRange& a, const SeqRange& b) { return a.first < b.first; });
  size_t w = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    // Merge overlapping and adjacent ranges (uint64 so last+1 cannot wrap).
    if (w > 0 &&
        static_cast<uint64_t>(out[i].first) <= static_cast<uint64_t>(out[w - 1].last) + 1) {
      out[w - 1].last = std::max(out[w - 1].last, out[i].last);
    } else {
      out[w++] = out[i];
    }
  }
  out.resize(w);
  return out;
}

uint64_t SequenceSet::Count(uint32_t max) const {
  uint64_t n = 0;
  for (const SeqRange& r : Normalize(max)) n += static_cast<uint64_t>(r.last) - r.first + 1;
  return n;
}

bool SequenceSet::Contains(uint32_t n, uint32_t max) const {
  if (n == 0 || n > max) return false;
  for (SeqRange r : ranges_) {
    if (r.first == kSeqStar) r.first = max;
    if (r.last == kSeqStar) r.last = max;
    if (r.first > r.last) std::swap(r.first, r.last);
    if (n >= r.first && n <= r.last) return true;
  }
  return false;
}

std::string SequenceSet::ToString() const {
  if (saved_) return "$";
  std::string out;
  for (const SeqRange& r : ranges_) {
    if (!out.empty()) out.push_back(',');
    out += NumberText(r.first);
    if (r.last != r.first) out += ":" + NumberText(r.last);
  }
  return out;
}

}  // namespace mailgrid::imap
