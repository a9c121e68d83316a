#include "libs/base/shutdown.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "libs/base/log.h"

namespace mailgrid::shutdown {
namespace {

absl::Mutex g_mu;
bool g_requested = false;  // guarded by g_mu
std::string g_reason;      // guarded by g_mu

void SignalLoop(sigset_t set) {
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    const char* name = sig == SIGTERM ? "SIGTERM" : "SIGINT";
    if (Requested()) {
      log::Warn("second signal while draining; exiting now", {{"signal", name}});
      std::_Exit(128 + sig);
    }
    log::Info("shutdown requested; draining", {{"signal", name}});
    Request(name);
  }
}

}  // namespace

void Install() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A peer closing a socket must be an error return, not a dead process.
  signal(SIGPIPE, SIG_IGN);
  std::thread(SignalLoop, set).detach();
}

void Request(const std::string& reason) {
  absl::MutexLock lock(&g_mu);
  if (g_requested) return;
  g_requested = true;
  g_reason = reason;
}

bool Requested() {
  absl::MutexLock lock(&g_mu);
  return g_requested;
}

std::string Wait() {
  absl::MutexLock lock(&g_mu);
  g_mu.Await(absl::Condition(&g_requested));
  return g_reason;
}

bool WaitFor(absl::Duration timeout) {
  absl::MutexLock lock(&g_mu);
  return g_mu.AwaitWithTimeout(absl::Condition(&g_requested), timeout);
}

}  // namespace mailgrid::shutdown
