// mailctl's commands: each group ("health", later "tenant", "domain", ...)
// lives in its own file and registers itself in one table (the Dovecot
// imap-commands.c idea), so a reader finds `mailctl tenant` in tenant.cc.
#pragma once

#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "libs/base/config.h"
#include "tools/mailctl/cluster.h"

namespace mailgrid::mailctl {

struct Invocation {
  std::vector<std::string> args;  // after the group name
  const Cluster* cluster = nullptr;  // from --cluster, may be empty
  bool json = false;                 // --json: machine-readable output
  std::ostream* out = nullptr;
};

struct Command {
  std::string group;    // "health"
  std::string summary;  // one line for `mailctl help`
  std::string usage;    // the sub-commands and arguments
  std::function<absl::Status(const Invocation&)> run;
};

// Called by each command file at static-initialisation time.
bool RegisterCommand(Command command);
const std::vector<Command>& Commands();

}  // namespace mailgrid::mailctl
