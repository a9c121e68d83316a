#include "libs/metrics/process_collector.h"

#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

#ifndef MAILGRID_VERSION
#define MAILGRID_VERSION "dev"
#endif

namespace mailgrid::metrics {
namespace {

prometheus::MetricFamily Single(std::string name, std::string help, prometheus::MetricType type, double value) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
  return f;
}

double ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return static_cast<double>(pages_resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

double CpuSeconds() {
  // Fields 14 and 15 of /proc/self/stat are utime and stime in clock ticks;
  // field 2 (comm) may contain spaces, so parse after the closing ')'.
  std::ifstream stat("/proc/self/stat");
  std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t close = all.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(all.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double OpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  int n = 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n - 1;  // the directory handle itself
}

}  // namespace

ProcessCollector::ProcessCollector(std::string service)
    : service_(std::move(service)),
      start_time_seconds_(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()) {}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> out;
  out.push_back(Single("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge, ResidentBytes()));
  out.push_back(Single("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", MetricType::Counter, CpuSeconds()));
  out.push_back(Single("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, OpenFds()));
  out.push_back(Single("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", MetricType::Gauge, start_time_seconds_));
  prometheus::MetricFamily build = Single("mailgrid_build_info", "Build information; the value is always 1.", MetricType::Gauge, 1);
  build.metric[0].label = {{"service", service_}, {"version", MAILGRID_VERSION}};
  out.push_back(std::move(build));
  return out;
}

}  // namespace mailgrid::metrics
