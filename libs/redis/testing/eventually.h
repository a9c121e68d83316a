// Polls a condition in tests: the machine is shared and noisy, so a test
// waits generously for what must happen and never asserts on durations.
#pragma once

#include <functional>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace mailgrid::redis::testing {

// True as soon as `pred` holds; false if it still does not after a minute.
inline bool Eventually(const std::function<bool()>& pred) {
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (absl::Now() < give_up) {
    if (pred()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return pred();
}

}  // namespace mailgrid::redis::testing
