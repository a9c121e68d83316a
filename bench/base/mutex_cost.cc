// What absl::Mutex costs with and without its deadlock detector, on this
// machine, in one run (libs/base/runtime.h says why daemons turn it off).
// Prints ns per nested lock pair for 1 and N threads, each thread with its own
// two mutexes (no contention on the mutexes themselves: what is measured is
// the detector's own bookkeeping and its global lock), then the ratio.
//
//   build/bin/mutex_cost [threads=2] [pairs_per_thread=1000000]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace {

double NsPerPair(int threads, int pairs) {
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([pairs] {
      absl::Mutex outer, inner;
      for (int i = 0; i < pairs; ++i) {
        absl::MutexLock a(&outer);
        absl::MutexLock b(&inner);
      }
    });
  }
  for (auto& w : workers) w.join();
  auto elapsed = std::chrono::steady_clock::now() - start;
  return std::chrono::duration<double, std::nano>(elapsed).count() / pairs;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int pairs = argc > 2 ? std::atoi(argv[2]) : 1000000;
  // The detector's mode is process-wide and read on every acquisition, so the
  // two rows can run in one process: default (as Debian's Abseil ships) first.
  const double on_one = NsPerPair(1, pairs);
  const double on_many = NsPerPair(threads, pairs);
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const double off_one = NsPerPair(1, pairs);
  const double off_many = NsPerPair(threads, pairs);
  std::printf("%-28s %12s %12s\n", "ns per nested lock pair", "1 thread", "threads");
  std::printf("%-28s %12.1f %12.1f\n", "detector on (default)", on_one, on_many);
  std::printf("%-28s %12.1f %12.1f\n", "detector off", off_one, off_many);
  std::printf("%-28s %12.2f %12.2f\n", "ratio on/off", on_one / off_one, on_many / off_many);
  return 0;
}
