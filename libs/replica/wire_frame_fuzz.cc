// libFuzzer target for the raft wire's receiving side: arbitrary bytes are
// cut into frames as a receiver does (DecodeWireFrame on what is buffered),
// and each frame's payload is parsed as a MessageBatch and its messages
// decoded (FromProto) as RaftService's handler would. Checks:
//  - a decoded frame lies inside the input and re-encodes to exactly the
//    bytes it consumed;
//  - a length above the limit is an error at once, never a wait;
//  - decoding never reads past the input (ASan) and never aborts.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "libs/replica/codec.h"
#include "libs/replica/wire_frame.h"
#include "mailgrid/raft/v1/raft.pb.h"

namespace {

using namespace mailgrid::replica;

#define CHECK(cond)       \
  do {                    \
    if (!(cond)) abort(); \
  } while (0)

constexpr uint32_t kLimit = 1 << 16;  // small, so the error path is reached

void ParsePayload(absl::string_view payload) {
  mailgrid::raft::v1::MessageBatch batch;
  if (!batch.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return;
  for (mailgrid::raft::v1::Message& m : *batch.mutable_messages()) {
    (void)FromProto(std::move(m));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view input(reinterpret_cast<const char*>(data), size);
  while (true) {
    WireFrame f = DecodeWireFrame(input, kLimit);
    if (f.result == WireFrame::Result::kNeedMore) {
      CHECK(input.size() < 4 || input.size() - 4 < kLimit + 1);
      break;
    }
    if (f.result == WireFrame::Result::kError) {
      CHECK(!f.error.empty());
      break;
    }
    CHECK(f.consumed == f.payload.size() + 4 && f.consumed <= input.size());
    CHECK(f.payload.data() == input.data() + 4);
    std::string again;
    AppendWireFrame(f.payload, &again);
    CHECK(again == input.substr(0, f.consumed));
    ParsePayload(f.payload);
    input.remove_prefix(f.consumed);
  }
  return 0;
}
