// Wing & Gong / Lowe linearizability search over one register at a time.
//
// The history becomes a list of call and return events sorted by time. The
// search walks the list; at a call it tries to linearize that operation now
// (if the register's semantics allow it), removing its call and return
// from the list and pushing a backtrack point. Reaching a return whose
// operation is not yet linearized means the current choice is wrong:
// backtrack. The memo of (set of linearized operations, register state)
// pairs already explored is what keeps this tractable (Lowe).
#include "libs/raft/testing/linearizability.h"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <unordered_set>

#include "absl/strings/str_cat.h"

namespace mailgrid::raft::testing {
namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
constexpr int kAbsent = -1;

struct Event {
  int op = 0;
  bool is_call = false;
  int64_t time = 0;
  Event* match = nullptr;  // call -> its return
  Event* prev = nullptr;
  Event* next = nullptr;
};

// Key of the memo: which operations are linearized, and the register value.
struct MemoKey {
  std::vector<uint64_t> bits;
  int state = kAbsent;
  bool operator==(const MemoKey&) const = default;
};

struct MemoHash {
  size_t operator()(const MemoKey& k) const {
    uint64_t h = static_cast<uint64_t>(k.state) * 0x9e3779b97f4a7c15ULL;
    for (uint64_t w : k.bits) h = (h ^ w) * 0x100000001b3ULL + (h >> 29);
    return static_cast<size_t>(h);
  }
};

// Ops of one key with values interned to small integers.
struct KeyModel {
  std::vector<KvOp> ops;
  std::vector<int> value_id;  // per op: put value or get result; kAbsent for not found
};

KeyModel Intern(std::vector<KvOp> ops) {
  KeyModel m;
  std::map<std::string, int> ids;
  for (const KvOp& op : ops) {
    if (op.kind == KvOp::Kind::kGet && !op.found) {
      m.value_id.push_back(kAbsent);
    } else {
      m.value_id.push_back(ids.emplace(op.value, static_cast<int>(ids.size())).first->second);
    }
  }
  m.ops = std::move(ops);
  return m;
}

// The register: a get must see the current value, a put sets it.
std::optional<int> StepModel(const KeyModel& m, int op, int state) {
  if (m.ops[op].kind == KvOp::Kind::kPut) return m.value_id[op];
  if (m.value_id[op] == state) return state;
  return std::nullopt;
}

class Search {
 public:
  Search(const KeyModel& model, uint64_t max_steps) : m_(model), max_steps_(max_steps) {}

  // kOk, kViolation, or kUnknown if the budget ran out.
  CheckResult::Outcome Run() {
    BuildEvents();
    const size_t n = m_.ops.size();
    MemoKey cur{std::vector<uint64_t>((n + 63) / 64, 0), kAbsent};
    std::unordered_set<MemoKey, MemoHash> memo;
    struct Frame {
      Event* call;
      int state;
    };
    std::vector<Frame> stack;
    Event* entry = head_.next;
    uint64_t steps = 0;
    while (head_.next != nullptr) {
      if (++steps > max_steps_) return CheckResult::Outcome::kUnknown;
      if (entry->is_call) {
        if (auto next_state = StepModel(m_, entry->op, cur.state)) {
          MemoKey candidate = cur;
          candidate.bits[entry->op / 64] |= 1ULL << (entry->op % 64);
          candidate.state = *next_state;
          if (memo.insert(candidate).second) {
            stack.push_back(Frame{entry, cur.state});
            cur = std::move(candidate);
            Lift(entry);
            entry = head_.next;
            continue;
          }
        }
        entry = entry->next;
        continue;
      }
      // A return of a not-yet-linearized operation: undo the last choice.
      if (stack.empty()) return CheckResult::Outcome::kViolation;
      Frame top = stack.back();
      stack.pop_back();
      cur.state = top.state;
      cur.bits[top.call->op / 64] &= ~(1ULL << (top.call->op % 64));
      Unlift(top.call);
      entry = top.call->next;
    }
    return CheckResult::Outcome::kOk;
  }

 private:
  void BuildEvents() {
    const size_t n = m_.ops.size();
    events_.resize(2 * n);
    for (size_t i = 0; i < n; ++i) {
      const KvOp& op = m_.ops[i];
      Event& call = events_[2 * i];
      Event& ret = events_[2 * i + 1];
      call = Event{static_cast<int>(i), true, op.invoke};
      ret = Event{static_cast<int>(i), false, op.unknown ? kNever : op.ret};
      call.match = &ret;
    }
    std::vector<Event*> order;
    for (Event& e : events_) order.push_back(&e);
    // Calls before returns at equal times: touching intervals count as
    // concurrent, the lenient reading of a coarse clock.
    std::stable_sort(order.begin(), order.end(), [](const Event* a, const Event* b) {
      if (a->time != b->time) return a->time < b->time;
      return a->is_call && !b->is_call;
    });
    Event* prev = &head_;
    for (Event* e : order) {
      prev->next = e;
      e->prev = prev;
      prev = e;
    }
    prev->next = nullptr;
  }

  // Removes a call and its return from the list (they remember neighbours).
  static void Lift(Event* call) {
    call->prev->next = call->next;
    if (call->next) call->next->prev = call->prev;
    Event* ret = call->match;
    ret->prev->next = ret->next;
    if (ret->next) ret->next->prev = ret->prev;
  }

  static void Unlift(Event* call) {
    Event* ret = call->match;
    ret->prev->next = ret;
    if (ret->next) ret->next->prev = ret;
    call->prev->next = call;
    if (call->next) call->next->prev = call;
  }

  const KeyModel& m_;
  uint64_t max_steps_;
  std::vector<Event> events_;
  Event head_;
};

CheckResult::Outcome CheckKey(const std::vector<KvOp>& ops, uint64_t max_steps) {
  KeyModel model = Intern(ops);
  return Search(model, max_steps).Run();
}

// An op may go if nothing left depends on it: gets always; a put only when
// no remaining get read its value (else the shrunk history would "fail"
// merely because a read value has no writer, hiding the real problem).
bool Removable(const std::vector<KvOp>& ops, size_t i) {
  if (ops[i].kind == KvOp::Kind::kGet) return true;
  for (size_t j = 0; j < ops.size(); ++j) {
    if (j != i && ops[j].kind == KvOp::Kind::kGet && ops[j].found && ops[j].value == ops[i].value) {
      return false;
    }
  }
  return true;
}

// Greedy one-at-a-time removal to a 1-minimal violating history.
std::vector<KvOp> Minimize(std::vector<KvOp> ops, const CheckOptions& options) {
  int budget = options.max_minimize_checks;
  bool changed = true;
  while (changed && budget > 0) {
    changed = false;
    for (size_t i = ops.size(); i-- > 0 && budget > 0;) {
      if (!Removable(ops, i)) continue;
      std::vector<KvOp> candidate = ops;
      candidate.erase(candidate.begin() + i);
      --budget;
      if (CheckKey(candidate, options.max_steps_per_key) == CheckResult::Outcome::kViolation) {
        ops = std::move(candidate);
        changed = true;
      }
    }
  }
  return ops;
}

std::string FormatOp(const KvOp& op) {
  const std::string when = op.unknown ? absl::StrCat("[", op.invoke, ", ?)")
                                      : absl::StrCat("[", op.invoke, ", ", op.ret, "]");
  if (op.kind == KvOp::Kind::kPut) {
    return absl::StrCat(when, " client ", op.client, ": put(", op.key, ", ", op.value, ")",
                        op.unknown ? " outcome unknown" : "");
  }
  return absl::StrCat(when, " client ", op.client, ": get(", op.key, ") -> ",
                      op.found ? op.value : "<absent>");
}

}  // namespace

std::string FormatHistory(const std::vector<KvOp>& ops) {
  std::vector<KvOp> sorted = ops;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const KvOp& a, const KvOp& b) { return a.invoke < b.invoke; });
  std::string out;
  for (const KvOp& op : sorted) absl::StrAppend(&out, "  ", FormatOp(op), "\n");
  return out;
}

CheckResult CheckKvLinearizable(const std::vector<KvOp>& history, const CheckOptions& options) {
  std::map<std::string, std::vector<KvOp>> by_key;
  for (const KvOp& op : history) {
    if (op.kind == KvOp::Kind::kGet && op.unknown) continue;  // constrains nothing
    by_key[op.key].push_back(op);
  }
  CheckResult result;
  for (auto& [key, ops] : by_key) {
    const auto outcome = CheckKey(ops, options.max_steps_per_key);
    if (outcome == CheckResult::Outcome::kOk) continue;
    result.outcome = outcome;
    result.key = key;
    if (outcome == CheckResult::Outcome::kUnknown) {
      result.report = absl::StrCat("linearizability check of key '", key, "' (", ops.size(),
                                   " ops) exceeded its search budget\n");
      // An undecided key is reported only if no other key fails outright.
      continue;
    }
    result.offending = options.minimize ? Minimize(ops, options) : ops;
    result.report = absl::StrCat("history of key '", key, "' is not linearizable; minimal ",
                                 "offending history (", result.offending.size(), " of ", ops.size(),
                                 " ops):\n", FormatHistory(result.offending));
    return result;
  }
  return result;
}

}  // namespace mailgrid::raft::testing
