#include "libs/base/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace mailgrid::log {
namespace {

std::atomic<int> g_min_level{static_cast<int>(Level::kInfo)};
std::atomic<int> g_fd{2};
std::mutex g_service_mu;
std::string g_service = "mailgrid";  // guarded by g_service_mu

std::string_view LevelName(Level level) {
  switch (level) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "info";
}

bool NeedsQuoting(std::string_view v) {
  if (v.empty()) return true;
  for (unsigned char c : v) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) return true;
  }
  return false;
}

// Escapes so that one log record is always one line: control characters from
// hostile input (a client's EHLO, say) can never forge a second record.
void AppendValue(std::string& out, std::string_view v) {
  if (!NeedsQuoting(v)) {
    out.append(v);
    return;
  }
  out.push_back('"');
  for (unsigned char c : v) {
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      default:
        if (c < 0x20 || c == 0x7f) {
          static constexpr char kHex[] = "0123456789abcdef";
          out.append("\\x");
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xf]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

}  // namespace

void SetServiceName(std::string_view name) {
  std::lock_guard<std::mutex> lock(g_service_mu);
  g_service = std::string(name);
}

void SetMinLevel(Level level) { g_min_level.store(static_cast<int>(level)); }

absl::Status SetMinLevelByName(std::string_view name) {
  std::string n = absl::AsciiStrToLower(absl::string_view(name.data(), name.size()));
  if (n == "debug") SetMinLevel(Level::kDebug);
  else if (n == "info") SetMinLevel(Level::kInfo);
  else if (n == "warn" || n == "warning") SetMinLevel(Level::kWarn);
  else if (n == "error") SetMinLevel(Level::kError);
  else return absl::InvalidArgumentError("log level must be debug, info, warn or error, got \"" + n + "\"");
  return absl::OkStatus();
}

void SetOutputFd(int fd) { g_fd.store(fd); }

std::string FormatLine(Level level, std::string_view msg, Fields fields) {
  std::string line;
  line.reserve(128);
  line.append("ts=");
  line.append(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()));
  line.append(" level=");
  line.append(LevelName(level));
  line.append(" svc=");
  {
    std::lock_guard<std::mutex> lock(g_service_mu);
    AppendValue(line, g_service);
  }
  line.append(" msg=");
  AppendValue(line, msg);
  for (const Field& f : fields) {
    line.push_back(' ');
    line.append(f.key);
    line.push_back('=');
    AppendValue(line, f.value);
  }
  line.push_back('\n');
  return line;
}

void Write(Level level, std::string_view msg, Fields fields) {
  if (static_cast<int>(level) < g_min_level.load()) return;
  std::string line = FormatLine(level, msg, fields);
  const char* p = line.data();
  size_t left = line.size();
  int fd = g_fd.load();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // Nowhere to report a failure to log.
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace mailgrid::log
