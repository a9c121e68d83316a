// COMPRESS=DEFLATE (RFC 4978) for an IMAP connection: raw DEFLATE (RFC
// 1951, no zlib header) in both directions, each write flushed with
// Z_SYNC_FLUSH so the client can decode every response as it arrives.
// The connection adapter owns one and passes bytes through it once the
// session has answered COMPRESS with OK.
//
// SECURITY: inflation is bounded per call (`max_output`): a few kilobytes
// of hostile input cannot expand into gigabytes of memory.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mailgrid::access {

class DeflateStream {
 public:
  DeflateStream();
  ~DeflateStream();
  DeflateStream(const DeflateStream&) = delete;
  DeflateStream& operator=(const DeflateStream&) = delete;

  // Compresses and flushes (Z_SYNC_FLUSH): the output decodes on its own.
  std::string Deflate(std::string_view in);
  // Decompresses what the peer sent. InvalidArgument for corrupt data,
  // ResourceExhausted when the output would exceed max_output.
  absl::StatusOr<std::string> Inflate(std::string_view in, size_t max_output);

 private:
  struct Streams;
  std::unique_ptr<Streams> s_;
};

}  // namespace mailgrid::access
