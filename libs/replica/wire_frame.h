// The raft wire's framing (wire.h): what travels on a replica-to-replica
// TCP connection, as pure functions over bytes.
//
//   connection := kWirePreface hello-frame frame*      (sender -> receiver)
//   reply      := 'K' | 'E' error-text                  (receiver -> sender, once)
//   frame      := length (4 bytes, big-endian) payload  (payload: a MessageBatch)
//
// The hello frame is a MessageBatch without messages that names group,
// sender, addressee and the sender's address; the receiver checks it before
// it answers 'K', so a connection that reached the wrong process (a port
// reused after a restart) or the wrong group fails at once. TCP (and TLS,
// when added) already checksum the bytes; a frame carries no checksum of
// its own, as the gRPC path's messages carry none.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace mailgrid::replica {

inline constexpr absl::string_view kWirePreface = "MGRAFTW1";
inline constexpr char kWireAccepted = 'K';
inline constexpr char kWireRefused = 'E';
// A frame longer than this is a protocol error (the receiver closes the
// connection); a sender routes a larger batch over gRPC instead.
inline constexpr uint32_t kMaxWireFrameBytes = 64u << 20;

// The 4-byte length prefix of a frame of `n` bytes.
void PutWireFrameLength(uint32_t n, char out[4]);

// Appends one frame holding `payload` to `out`. The caller keeps payloads
// under kMaxWireFrameBytes.
void AppendWireFrame(absl::string_view payload, std::string* out);

struct WireFrame {
  enum class Result { kNeedMore, kFrame, kError };
  Result result = Result::kNeedMore;
  absl::string_view payload;  // kFrame: points into the input
  size_t consumed = 0;        // kFrame: bytes to drop from the input's front
  std::string error;          // kError: why (names the bad length)
};

// The first frame at the front of `input`: kNeedMore until a whole frame is
// there; kError for a length above `max_bytes` (never waits for it).
WireFrame DecodeWireFrame(absl::string_view input, uint32_t max_bytes = kMaxWireFrameBytes);

}  // namespace mailgrid::replica
