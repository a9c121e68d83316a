// Internal: invariant checks. A violated Raft invariant (say, a conflict
// below the commit index) means a bug or a corrupted log; continuing could
// turn it into silently diverging replicas, so the core stops the process.
#pragma once

#include <cstdio>
#include <cstdlib>

#define RAFT_CHECK(cond, msg)                                                                 \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "raft invariant violated at %s:%d: %s (%s)\n", __FILE__, __LINE__, \
                   #cond, msg);                                                               \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)
