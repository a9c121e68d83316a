#include "libs/base/config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/base/status.h"
#include "libs/base/strings.h"

extern char** environ;

namespace mailgrid::config {

Flags::Flags(std::string program) : program_(std::move(program)) {
  Option file;
  file.name = "config";
  file.kind = "path";
  file.help = "read options from FILE (lines `name = value`, # comments)";
  file.set = [this](std::string_view v) {
    config_file_ = std::string(v);
    return absl::OkStatus();
  };
  file.get = [this] { return config_file_; };
  options_.push_back(std::move(file));
}

std::string Flags::EnvName(std::string_view option) {
  std::string env = "MAILGRID_";
  for (char c : option) env.push_back(c == '-' ? '_' : absl::ascii_toupper(static_cast<unsigned char>(c)));
  return env;
}

void Flags::Add(Option opt) { options_.push_back(std::move(opt)); }

void Flags::String(std::string name, std::string* target, std::string help, bool secret) {
  Add({std::move(name), std::move(help), "string", secret, false,
       [target](std::string_view v) {
         *target = std::string(v);
         return absl::OkStatus();
       },
       [target] { return *target; }});
}

void Flags::Int(std::string name, int* target, std::string help) {
  std::string n = name;
  Add({std::move(name), std::move(help), "int", false, false,
       [target, n](std::string_view v) {
         int x;
         if (!absl::SimpleAtoi(ToAbsl(v), &x)) return absl::InvalidArgumentError(absl::StrCat("--", n, ": \"", ToAbsl(v), "\" is not an integer"));
         *target = x;
         return absl::OkStatus();
       },
       [target] { return std::to_string(*target); }});
}

void Flags::Int64(std::string name, int64_t* target, std::string help) {
  std::string n = name;
  Add({std::move(name), std::move(help), "int", false, false,
       [target, n](std::string_view v) {
         int64_t x;
         if (!absl::SimpleAtoi(ToAbsl(v), &x)) return absl::InvalidArgumentError(absl::StrCat("--", n, ": \"", ToAbsl(v), "\" is not an integer"));
         *target = x;
         return absl::OkStatus();
       },
       [target] { return std::to_string(*target); }});
}

void Flags::Bool(std::string name, bool* target, std::string help) {
  std::string n = name;
  Add({std::move(name), std::move(help), "bool", false, true,
       [target, n](std::string_view v) {
         bool x;
         if (!absl::SimpleAtob(ToAbsl(v), &x)) return absl::InvalidArgumentError(absl::StrCat("--", n, ": \"", ToAbsl(v), "\" is not true/false"));
         *target = x;
         return absl::OkStatus();
       },
       [target] { return std::string(*target ? "true" : "false"); }});
}

void Flags::Duration(std::string name, absl::Duration* target, std::string help) {
  std::string n = name;
  Add({std::move(name), std::move(help), "duration", false, false,
       [target, n](std::string_view v) {
         absl::Duration d;
         if (!absl::ParseDuration(std::string(v), &d) || d < absl::ZeroDuration())
           return absl::InvalidArgumentError(absl::StrCat("--", n, ": \"", ToAbsl(v), "\" is not a duration such as 10s or 250ms"));
         *target = d;
         return absl::OkStatus();
       },
       [target] { return absl::FormatDuration(*target); }});
}

void Flags::StringList(std::string name, std::vector<std::string>* target, std::string help) {
  Add({std::move(name), std::move(help), "list", false, false,
       [target](std::string_view v) {
         target->clear();
         for (absl::string_view part : absl::StrSplit(ToAbsl(v), ',', absl::SkipWhitespace())) {
           target->emplace_back(absl::StripAsciiWhitespace(part));
         }
         return absl::OkStatus();
       },
       [target] { return absl::StrJoin(*target, ","); }});
}

Flags::Option* Flags::Find(std::string_view name) {
  for (Option& o : options_) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

absl::Status Flags::SetFrom(Option& opt, std::string_view value, std::string_view source) {
  RETURN_IF_ERROR(opt.set(value));
  opt.source = std::string(source);
  return absl::OkStatus();
}

absl::Status Flags::LoadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--config: cannot read ", path));
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    absl::string_view l = absl::StripAsciiWhitespace(line);
    if (l.empty() || l[0] == '#') continue;
    size_t eq = l.find('=');
    if (eq == absl::string_view::npos)
      return absl::InvalidArgumentError(absl::StrCat(path, ":", lineno, ": expected `name = value`"));
    std::string key(absl::StripAsciiWhitespace(l.substr(0, eq)));
    std::string value(absl::StripAsciiWhitespace(l.substr(eq + 1)));
    Option* opt = Find(key);
    if (opt == nullptr || key == "config")
      return absl::InvalidArgumentError(absl::StrCat(path, ":", lineno, ": unknown option \"", key, "\""));
    absl::Status s = SetFrom(*opt, value, "file");
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ":", lineno, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status Flags::Parse(int argc, const char* const* argv, const char* const* envp) {
  // Command-line values are collected first but applied last, so that they
  // win over the file and the environment whatever their order.
  std::vector<std::pair<Option*, std::string>> cli;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      continue;
    }
    if (arg == "--") {
      for (++i; i < argc; ++i) positional_.emplace_back(argv[i]);
      break;
    }
    if (!absl::StartsWith(ToAbsl(arg), "--")) {
      positional_.emplace_back(arg);
      continue;
    }
    arg.remove_prefix(2);
    std::string name(arg.substr(0, arg.find('=')));
    bool has_value = arg.find('=') != std::string_view::npos;
    Option* opt = Find(name);
    if (opt == nullptr && absl::StartsWith(ToAbsl(name), "no-")) {
      Option* negated = Find(name.substr(3));
      if (negated != nullptr && negated->is_bool && !has_value) {
        cli.emplace_back(negated, "false");
        continue;
      }
    }
    if (opt == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    std::string value;
    if (has_value) {
      value = std::string(arg.substr(arg.find('=') + 1));
    } else if (opt->is_bool) {
      value = "true";
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
    }
    cli.emplace_back(opt, std::move(value));
  }
  // The config file may itself come from the command line or environment.
  for (auto& [opt, value] : cli) {
    if (opt->name == "config") RETURN_IF_ERROR(SetFrom(*opt, value, "flag"));
  }
  const char* const* env = envp != nullptr ? envp : environ;
  std::map<std::string, std::string> env_map;
  for (const char* const* e = env; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv = *e;
    size_t eq = kv.find('=');
    if (eq != std::string_view::npos) env_map.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  if (config_file_.empty()) {
    auto it = env_map.find(EnvName("config"));
    if (it != env_map.end()) config_file_ = it->second;
  }
  if (!config_file_.empty()) RETURN_IF_ERROR(LoadFile(config_file_));
  for (Option& opt : options_) {
    if (opt.name == "config") continue;
    auto it = env_map.find(EnvName(opt.name));
    if (it == env_map.end()) continue;
    absl::Status s = SetFrom(opt, it->second, "env");
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(it->first, ": ", s.message()));
  }
  for (auto& [opt, value] : cli) {
    if (opt->name != "config") RETURN_IF_ERROR(SetFrom(*opt, value, "flag"));
  }
  return absl::OkStatus();
}

std::string Flags::Usage() const {
  std::ostringstream out;
  out << "usage: " << program_ << " [--option=value ...]\n"
      << "Every option may also be set as MAILGRID_<OPTION> in the environment or in --config FILE.\n\n";
  for (const Option& o : options_) {
    out << "  --" << o.name << " (" << o.kind << ", default " << (o.secret ? "<redacted>" : o.get()) << ")\n      "
        << o.help << "  [" << EnvName(o.name) << "]\n";
  }
  return out.str();
}

std::vector<Flags::Effective> Flags::EffectiveValues() const {
  std::vector<Effective> out;
  for (const Option& o : options_) {
    out.push_back({o.name, o.secret && !o.get().empty() ? "<redacted>" : o.get(), o.source});
  }
  return out;
}

}  // namespace mailgrid::config
