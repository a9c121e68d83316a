#include "libs/base/runtime.h"

#include "absl/synchronization/mutex.h"

namespace mailgrid::base {

void DisableMutexDeadlockDetection() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace mailgrid::base
