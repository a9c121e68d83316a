#include "libs/replica/wire_frame.h"

#include "absl/strings/str_cat.h"

namespace mailgrid::replica {

void PutWireFrameLength(uint32_t n, char out[4]) {
  out[0] = static_cast<char>(n >> 24);
  out[1] = static_cast<char>(n >> 16);
  out[2] = static_cast<char>(n >> 8);
  out[3] = static_cast<char>(n);
}

void AppendWireFrame(absl::string_view payload, std::string* out) {
  char length[4];
  PutWireFrameLength(static_cast<uint32_t>(payload.size()), length);
  out->append(length, 4);
  out->append(payload.data(), payload.size());
}

WireFrame DecodeWireFrame(absl::string_view input, uint32_t max_bytes) {
  WireFrame f;
  if (input.size() < 4) return f;
  const auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(input[i])); };
  const uint32_t n = byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3);
  if (n > max_bytes) {
    f.result = WireFrame::Result::kError;
    f.error = absl::StrCat("frame of ", n, " bytes: the limit is ", max_bytes);
    return f;
  }
  if (input.size() - 4 < n) return f;
  f.result = WireFrame::Result::kFrame;
  f.payload = input.substr(4, n);
  f.consumed = 4 + static_cast<size_t>(n);
  return f;
}

}  // namespace mailgrid::replica
