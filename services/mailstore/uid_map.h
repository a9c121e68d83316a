// A folder's UID map (FolderRecord.uid_map): which UIDs exist, as one
// bitmap per block of kBlockUids UIDs (keys.h "k/<folder>/<be32 block>"),
// written in the same write as the append or expunge that changes it.
// Why: IMAP SELECT needs the folder's UID list (its sequence-number map),
// and listing a million message keys costs a scan of a million keys; the
// map is about 245 keys of at most 512 bytes for a million UIDs, and its
// runs of set bits are the UID ranges the answer is made of. An append
// rewrites one block (the last), an expunge the blocks it touches.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace mailgrid::mailstore::uidmap {

inline constexpr uint32_t kBlockUids = 4096;

inline uint32_t BlockOf(uint32_t uid) { return uid / kBlockUids; }

// Sets (on) or clears uid's bit in its block's bitmap `bits` (bit uid %
// kBlockUids is bit (uid % 8) of byte (uid % kBlockUids) / 8). Trailing zero
// bytes are dropped, so an empty block is "".
void Set(std::string* bits, uint32_t uid, bool on);

// Calls fn(first, last) for each run of set bits of block `block`, in UID
// order (runs that continue into the next block are the caller's to join).
void ForEachRun(std::string_view bits, uint32_t block,
                const std::function<void(uint32_t first, uint32_t last)>& fn);

// Joins consecutive runs across blocks into maximal UID ranges.
class RangeJoiner {
 public:
  explicit RangeJoiner(std::function<void(uint32_t first, uint32_t last)> emit)
      : emit_(std::move(emit)) {}
  void Add(uint32_t first, uint32_t last) {
    if (open_ && first == last_ + 1) {
      last_ = last;
      return;
    }
    Flush();
    open_ = true;
    first_ = first;
    last_ = last;
  }
  void Flush() {
    if (open_) emit_(first_, last_);
    open_ = false;
  }

 private:
  std::function<void(uint32_t, uint32_t)> emit_;
  bool open_ = false;
  uint32_t first_ = 0, last_ = 0;
};

}  // namespace mailgrid::mailstore::uidmap
