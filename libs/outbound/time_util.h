// Conversions between absl::Time and google.protobuf.Timestamp, and string
// views for Debian's Abseil (whose string_view is not std::string_view).
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace mailgrid::outbound {

inline void ToProto(absl::Time t, google::protobuf::Timestamp* out) {
  int64_t micros = absl::ToUnixMicros(t);
  int64_t seconds = micros / 1000000;
  int64_t rem = micros % 1000000;
  if (rem < 0) {
    rem += 1000000;
    --seconds;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(rem * 1000));
}

inline absl::Time FromProto(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixMicros(ts.seconds() * 1000000 + ts.nanos() / 1000);
}

inline absl::string_view ToAbslView(std::string_view v) {
  return absl::string_view(v.data(), v.size());
}

}  // namespace mailgrid::outbound
