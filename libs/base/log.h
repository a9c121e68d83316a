// One-line structured logs (logfmt): every line is
//   ts=2026-11-27T01:02:03.456Z level=info svc=tenantd msg="started" port=7101
// so that `grep`, Loki and humans read the same thing. Thread-safe; a line is
// written with a single write(2) so concurrent lines never interleave.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace mailgrid::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// A key=value pair. Values are quoted and escaped when they need it.
struct Field {
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v) {}
  Field(std::string_view k, bool v) : key(k), value(v ? "true" : "false") {}
  Field(std::string_view k, int v) : key(k), value(std::to_string(v)) {}
  Field(std::string_view k, long v) : key(k), value(std::to_string(v)) {}
  Field(std::string_view k, long long v) : key(k), value(std::to_string(v)) {}
  Field(std::string_view k, unsigned v) : key(k), value(std::to_string(v)) {}
  Field(std::string_view k, unsigned long v) : key(k), value(std::to_string(v)) {}
  Field(std::string_view k, unsigned long long v) : key(k), value(std::to_string(v)) {}
  Field(std::string_view k, double v) : key(k), value(std::to_string(v)) {}
  Field(std::string_view k, const absl::Status& s) : key(k), value(s.ToString()) {}
  std::string_view key;
  std::string value;
};

using Fields = std::initializer_list<Field>;

// Process-wide settings, set once at start by the service bootstrap.
void SetServiceName(std::string_view name);
void SetMinLevel(Level level);
// Parses "debug", "info", "warn", "error".
absl::Status SetMinLevelByName(std::string_view name);
// Where lines go; stderr (fd 2) by default.
void SetOutputFd(int fd);

// Formats one line without writing it (exposed for tests).
std::string FormatLine(Level level, std::string_view msg, Fields fields);

void Write(Level level, std::string_view msg, Fields fields = {});
inline void Debug(std::string_view msg, Fields fields = {}) { Write(Level::kDebug, msg, fields); }
inline void Info(std::string_view msg, Fields fields = {}) { Write(Level::kInfo, msg, fields); }
inline void Warn(std::string_view msg, Fields fields = {}) { Write(Level::kWarn, msg, fields); }
inline void Error(std::string_view msg, Fields fields = {}) { Write(Level::kError, msg, fields); }

}  // namespace mailgrid::log
