// One search term's UIDs within one block of kBlockUids UIDs (FolderRecord.
// block_postings, keys.h "w/<folder>/<term>\0<be32 block>"). Why blocks: a
// posting per (term, message) makes a search that matches a whole
// million-message folder read a million keys; a block is one key per 4,096
// UIDs, and the background indexer writes a term's block once for all the
// messages of its batch instead of one key per message.
//
// Value: "" (no UID), or 'L' + the offsets (uid % kBlockUids) ascending as
// varint deltas (sparse terms: 1-2 bytes per UID), or 'B' + a bitmap (bit
// offset%8 of byte offset/8, trailing zero bytes dropped: dense terms, at
// most 513 bytes), whichever is shorter.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/mailstore/uid_map.h"

namespace mailgrid::mailstore::termblock {

inline constexpr uint32_t kBlockUids = uidmap::kBlockUids;
inline uint32_t BlockOf(uint32_t uid) { return uid / kBlockUids; }

// Appends the block's UIDs (ascending) to *out. DATA_LOSS on a malformed value.
absl::Status Decode(std::string_view value, uint32_t block, std::vector<uint32_t>* out);

// The value for these UIDs (ascending, distinct, all in `block`).
std::string Encode(const std::vector<uint32_t>& uids);

// `value` with `add` added and `remove` removed (both ascending, in the
// block); "" when nothing is left.
absl::StatusOr<std::string> Apply(std::string_view value, uint32_t block,
                                  const std::vector<uint32_t>& add,
                                  const std::vector<uint32_t>& remove);

}  // namespace mailgrid::mailstore::termblock
