// mailctl: the operator and tenant-admin CLI over mailgrid's gRPC APIs.
//   mailctl [--cluster FILE] [--json] GROUP [ARGS...]
// Human output by default, --json for scripts; on any error one line on
// stderr and a non-zero exit code (2 for usage errors).
#include <algorithm>
#include <iostream>

#include "libs/base/config.h"
#include "libs/base/log.h"
#include "tools/mailctl/command.h"

namespace mailgrid::mailctl {

bool RegisterCommand(Command command) {
  const_cast<std::vector<Command>&>(Commands()).push_back(std::move(command));
  return true;
}

const std::vector<Command>& Commands() {
  static auto* commands = new std::vector<Command>();
  return *commands;
}

namespace {

void PrintHelp(std::ostream& out) {
  out << "usage: mailctl [--cluster FILE] [--json] COMMAND [ARGS...]\n\ncommands:\n";
  std::vector<const Command*> sorted;
  for (const auto& c : Commands()) sorted.push_back(&c);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->group < b->group; });
  for (const Command* c : sorted) out << "  " << c->group << "\t" << c->summary << "\n      " << c->usage << "\n";
}

int Main(int argc, char** argv) {
  std::string cluster_path;
  bool json = false;
  config::Flags flags("mailctl");
  flags.String("cluster", &cluster_path, "cluster.json written by `tools/mailgrid up`");
  flags.Bool("json", &json, "machine-readable JSON output");
  // Global flags come before the command; everything after it is the
  // command's own.
  int first_positional = 1;
  while (first_positional < argc && std::string_view(argv[first_positional]).rfind("--", 0) == 0) {
    std::string_view a = argv[first_positional];
    ++first_positional;
    if (a.find('=') == std::string_view::npos && a != "--json" && a != "--help" && first_positional < argc) ++first_positional;
  }
  if (absl::Status s = flags.Parse(first_positional, argv); !s.ok()) {
    std::cerr << "mailctl: " << s.message() << "\n";
    return 2;
  }
  if (flags.help_requested() || first_positional >= argc || std::string_view(argv[first_positional]) == "help") {
    PrintHelp(std::cout);
    return first_positional >= argc && !flags.help_requested() ? 2 : 0;
  }
  std::string group = argv[first_positional];
  auto it = std::find_if(Commands().begin(), Commands().end(), [&](const Command& c) { return c.group == group; });
  if (it == Commands().end()) {
    std::cerr << "mailctl: unknown command \"" << group << "\" (see mailctl help)\n";
    return 2;
  }
  Cluster cluster;
  Invocation inv;
  if (!cluster_path.empty()) {
    auto loaded = LoadCluster(cluster_path);
    if (!loaded.ok()) {
      std::cerr << "mailctl: " << loaded.status().message() << "\n";
      return 1;
    }
    cluster = std::move(*loaded);
    inv.cluster = &cluster;
  }
  inv.args.assign(argv + first_positional + 1, argv + argc);
  inv.json = json;
  inv.out = &std::cout;
  absl::Status s = it->run(inv);
  if (!s.ok()) {
    std::cerr << "mailctl " << group << ": " << s.message() << "\n";
    return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

}  // namespace
}  // namespace mailgrid::mailctl

int main(int argc, char** argv) {
  mailgrid::log::SetMinLevel(mailgrid::log::Level::kWarn);
  return mailgrid::mailctl::Main(argc, argv);
}
