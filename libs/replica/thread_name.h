// Names the calling thread (15 characters at most, as Linux keeps them), so
// `top -H`, perf and /proc/<pid>/task/*/comm tell the replica's threads
// apart from gRPC's and RocksDB's ("replicad" for all of them otherwise).
#pragma once

#include <pthread.h>

namespace mailgrid::replica {

inline void NameThisThread(const char* name) { pthread_setname_np(pthread_self(), name); }

}  // namespace mailgrid::replica
