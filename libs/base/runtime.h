// Process-wide runtime settings a daemon applies once, at the start of main(),
// before it starts any thread.
#pragma once

namespace mailgrid::base {

// Turns off absl::Mutex's deadlock detector. Debian's Abseil is built without
// NDEBUG, so the detector is on by default: every acquisition made while
// another Mutex is held updates a process-wide lock-order graph under a
// global spinlock, and every Mutex destruction removes its node. Measured on
// the 2-core machine: 600 ns instead of 190 ns per nested lock pair, and the
// global lock serialises all threads (bench/base/mutex_cost). Daemons and
// benchmarks call this; unit tests do not, so they keep catching lock-order
// inversions.
void DisableMutexDeadlockDetection();

}  // namespace mailgrid::base
