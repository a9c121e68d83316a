// A linearizability checker for a key-value store of registers (get/put),
// in the style of Wing & Gong's search with Lowe's memoization, as done by
// Porcupine. Keys are independent registers, so the history is checked one
// key at a time (P-compositionality), which keeps the search small.
//
// Used by the deterministic simulation and by real-process tests: record
// every client operation with the time it was invoked and the time its
// answer arrived (any monotonic clock, in any unit), then call
// CheckKvLinearizable. Outcome-unknown operations (timeouts, crashed
// servers) are allowed: an unknown put may or may not have taken effect at
// any point after its invocation; an unknown get constrains nothing and
// may simply be left out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mailgrid::raft::testing {

struct KvOp {
  enum class Kind { kGet, kPut };
  int client = 0;
  Kind kind = Kind::kGet;
  std::string key;
  // Put: the value written. Get: the value read (when found).
  std::string value;
  // Get: false when the key was absent.
  bool found = true;
  int64_t invoke = 0;
  int64_t ret = 0;       // ignored when unknown
  bool unknown = false;  // no answer: may or may not have happened
};

struct CheckOptions {
  // Search budget per key (states explored); beyond it the outcome is
  // kUnknown rather than a false verdict.
  uint64_t max_steps_per_key = 50'000'000;
  // On a violation, shrink the failing key's history to a minimal
  // non-linearizable one (removing any single operation makes it pass).
  bool minimize = true;
  // Budget of linearizability checks spent on minimizing.
  int max_minimize_checks = 20'000;
};

struct CheckResult {
  enum class Outcome { kOk, kViolation, kUnknown };
  Outcome outcome = Outcome::kOk;
  std::string key;              // the failing (or undecided) key
  std::vector<KvOp> offending;  // minimal offending history for that key
  std::string report;           // human-readable, empty when kOk

  bool ok() const { return outcome == Outcome::kOk; }
};

CheckResult CheckKvLinearizable(const std::vector<KvOp>& history, const CheckOptions& options = {});

// One line per operation, ordered by invocation time.
std::string FormatHistory(const std::vector<KvOp>& ops);

}  // namespace mailgrid::raft::testing
