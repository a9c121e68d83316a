// Verification documents: what is accepted (by content, not by the name or
// declared type) and how the bytes are stored. The RPCs are in
// documents.cc (TenantServiceImpl).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace mailgrid::tenant {

// Stored chunk size: well under kv's 1 MiB value limit, and small enough
// that a download streams without holding the whole file.
inline constexpr size_t kDocumentChunkBytes = 512 << 10;
// Chunks per store write while uploading (4 MiB per Raft entry).
inline constexpr size_t kChunksPerWrite = 8;
// Largest chunk one stream message may carry (tenant.proto).
inline constexpr size_t kMaxStreamChunkBytes = 1 << 20;
// Bytes DetectContentType needs to decide.
inline constexpr size_t kMagicBytes = 8;

// "application/pdf", "image/png" or "image/jpeg" from the first bytes, or
// nullopt for anything else (or too few bytes to tell).
std::optional<std::string> DetectContentType(std::string_view head);

}  // namespace mailgrid::tenant
