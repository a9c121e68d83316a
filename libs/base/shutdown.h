// Graceful drain on SIGTERM/SIGINT. Install() must run in main() before any
// thread starts: it blocks the signals in every thread (threads inherit the
// mask) and waits for them on one dedicated thread, so no handler ever runs
// in async-signal context. A second signal while draining exits at once.
#pragma once

#include <string>

#include "absl/time/time.h"

namespace mailgrid::shutdown {

void Install();

// Blocks until a shutdown is requested; returns its reason ("SIGTERM",
// "SIGINT", or what Request() was given).
std::string Wait();

// Waits at most `timeout`; true if a shutdown was requested.
bool WaitFor(absl::Duration timeout);

bool Requested();

// Asks for shutdown from code (tests, a fatal error in a background thread).
void Request(const std::string& reason);

}  // namespace mailgrid::shutdown
