// Checksums the store relies on to refuse corrupted data instead of applying
// it: CRC32C per raft log entry (cheap, on every read) and SHA-256 per
// snapshot file (end-to-end, over a network transfer).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mailgrid::kv {

// CRC-32C (Castagnoli). Extend(Extend(0, a), b) == Crc32c(a + b).
// Uses the CPU's crc32 instruction where it has SSE4.2.
uint32_t Crc32cExtend(uint32_t crc, std::string_view data);
// The same, table-driven on any CPU (the reference the fast path is tested against).
uint32_t Crc32cExtendPortable(uint32_t crc, std::string_view data);
inline uint32_t Crc32c(std::string_view data) { return Crc32cExtend(0, data); }

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest Sha256(std::string_view data);
std::string DigestBytes(const Sha256Digest& d);  // the 32 raw bytes

// SHA-256 and size of a whole file, read in chunks.
struct FileDigest {
  uint64_t size = 0;
  Sha256Digest sha256{};
};
absl::StatusOr<FileDigest> Sha256File(const std::string& path);

}  // namespace mailgrid::kv
