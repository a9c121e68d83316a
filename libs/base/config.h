// Configuration from (highest precedence first) command-line flags, the
// environment (MAILGRID_<NAME>), a config file (--config=FILE), and defaults.
//
// Why not absl flags: they are process-global, cannot read the environment,
// and make one binary's tests fight over the same globals. A service declares
// its options on a Flags object bound to fields of its own config struct:
//
//   Flags flags("tenantd");
//   flags.String("listen", &cfg.listen, "gRPC listen address");
//   flags.Int("metrics-port", &cfg.metrics_port, "Prometheus /metrics port");
//   RETURN_IF_ERROR(flags.Parse(argc, argv));
//
// `--metrics-port=9100`, `--metrics-port 9100`, `MAILGRID_METRICS_PORT=9100`
// and a line `metrics-port = 9100` in the config file all set the same option.
// Unknown flags, unknown config-file keys and malformed values are errors that
// name the option.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace mailgrid::config {

class Flags {
 public:
  explicit Flags(std::string program);

  // Each option binds to caller-owned storage whose current value is the
  // default. `secret` options are redacted in Effective().
  void String(std::string name, std::string* target, std::string help, bool secret = false);
  void Int(std::string name, int* target, std::string help);
  void Int64(std::string name, int64_t* target, std::string help);
  void Bool(std::string name, bool* target, std::string help);
  // Durations are written as 10s, 250ms, 5m, 1h (absl::ParseDuration).
  void Duration(std::string name, absl::Duration* target, std::string help);
  void StringList(std::string name, std::vector<std::string>* target, std::string help);

  // Parses argv (argv[0] is skipped) and `environ`-style env (NAME=value, null
  // terminated; nullptr means the process environment). Positional arguments
  // (not starting with "--") are kept in Positional().
  absl::Status Parse(int argc, const char* const* argv, const char* const* envp = nullptr);

  bool help_requested() const { return help_requested_; }
  const std::vector<std::string>& Positional() const { return positional_; }
  std::string Usage() const;
  // Every option and its effective value (secrets shown as "<redacted>"),
  // in declaration order, with where the value came from.
  struct Effective {
    std::string name, value, source;
  };
  std::vector<Effective> EffectiveValues() const;

  // The environment variable for an option: "metrics-port" -> MAILGRID_METRICS_PORT.
  static std::string EnvName(std::string_view option);

 private:
  struct Option {
    std::string name, help, kind;
    bool secret = false;
    bool is_bool = false;
    std::function<absl::Status(std::string_view)> set;
    std::function<std::string()> get;
    std::string source = "default";
  };
  Option* Find(std::string_view name);
  void Add(Option opt);
  absl::Status SetFrom(Option& opt, std::string_view value, std::string_view source);
  absl::Status LoadFile(const std::string& path);

  std::string program_;
  std::vector<Option> options_;
  std::vector<std::string> positional_;
  std::string config_file_;
  bool help_requested_ = false;
};

}  // namespace mailgrid::config
