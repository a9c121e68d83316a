// kvlincheck: checks a history written by kvload (--history) with the
// linearizability checker of libs/raft/testing. Exit 0: linearizable;
// 1: a violation (the minimal offending history is printed); 2: undecided
// within the search budget or unreadable input.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "libs/raft/testing/linearizability.h"

int main(int argc, char** argv) {
  using mailgrid::raft::testing::KvOp;
  if (argc < 2) {
    std::cerr << "usage: kvlincheck HISTORY...\n";
    return 2;
  }
  std::vector<KvOp> ops;
  for (int f = 1; f < argc; ++f) {
    std::ifstream in(argv[f]);
    if (!in) {
      std::cerr << "cannot read " << argv[f] << "\n";
      return 2;
    }
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (line.empty()) continue;
      std::istringstream ss(line);
      KvOp op;
      std::string kind, value;
      int found = 0, unknown = 0;
      if (!(ss >> op.client >> kind >> op.key >> value >> found >> op.invoke >> op.ret >>
            unknown) ||
          (kind != "put" && kind != "get")) {
        std::cerr << argv[f] << ":" << n << ": malformed line\n";
        return 2;
      }
      op.kind = kind == "put" ? KvOp::Kind::kPut : KvOp::Kind::kGet;
      op.value = value == "-" ? "" : value;
      op.found = found != 0;
      op.unknown = unknown != 0;
      ops.push_back(std::move(op));
    }
  }
  mailgrid::raft::testing::CheckResult r = mailgrid::raft::testing::CheckKvLinearizable(ops);
  if (r.ok()) {
    std::cout << "linearizable: " << ops.size() << " operations\n";
    return 0;
  }
  std::cout << r.report << "\n";
  return r.outcome == mailgrid::raft::testing::CheckResult::Outcome::kViolation ? 1 : 2;
}
