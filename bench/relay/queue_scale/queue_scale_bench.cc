// Issue 9 "Speed": "Queue of 1,000,000 deferred messages: scheduling stays
// O(log n) per message and memory under 1 GB".
//
// Under heavy load the fill (one Queue::Enqueue per entry, ~120 us of CPU
// each) is the slow part: 1M entries take ~2 min of CPU; a run cut short
// prints its progress every 100k entries.
//
// Drives libs/outbound's Queue directly (no SMTP) on store::LocalStore: the
// same kv::StateMachine on RocksDB that every replica applies to, minus Raft;
// or, with --kv, on a real replicated group (replica::ClientStore: what
// relayd uses in production over tenantd's group; bench/relay/queue_kv
// starts three replicad and runs this against them). Then every call is a
// gRPC call to the leader and every write a Raft round with fsync, and the
// RSS that matters is the replicas' (--rss-pids) besides this process's
// (the queue's client side, i.e. relayd's share).
// The queue grows in steps (--sizes); at each step it measures, per message:
//   make-due   RetryNow of a random deferred entry (an operator's "retry", or
//              a backoff expiring: its due key moves to now),
//   pick       what a runner does to find and take the next due entry: one
//              DueIds scan (batch 16) + TryLease on the first id,
//   reschedule Complete with a 4xx for every recipient: the entry goes back
//              to DEFERRED with its next attempt 5 min later (due key moved),
//   idle scan  DueIds when nothing is due (what an idle runner polls),
// and the process RSS / peak RSS (RocksDB block cache and memtables are
// bounded by kv::EngineOptions: 128 MiB together).
//
// The deferred entries are written by Queue::Enqueue at a time spread over
// the next 5 days (the retry window): same record, body chunks and due key as
// a deferral writes, without paying three writes per entry to build the queue.
//
//   queue_scale_bench [--sizes 10000,100000,1000000] [--probes 2000]
//                     [--body-bytes 1024] [--dir DIR] [--keep]
//                     [--kv HOST:PORT,...] [--fill-threads N] [--rss-pids PID,...]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "libs/outbound/queue.h"
#include "libs/replica/client_store.h"
#include "libs/store/local_store.h"

namespace mailgrid::outbound {
namespace {

struct Args {
  std::vector<size_t> sizes = {10000, 100000, 1000000};
  size_t probes = 2000;
  size_t body_bytes = 1024;
  std::string dir;
  bool keep = false;
  // The replicated group's addresses; empty = LocalStore in --dir.
  std::vector<std::string> kv;
  // Concurrent Enqueue calls while filling (the kv client coalesces them
  // into shared Raft entries; one at a time a million fsynced rounds take
  // ~25 min). Default: 1 on LocalStore, 32 with --kv.
  size_t fill_threads = 0;
  // Processes whose RSS and CPU are printed per step (the replicas).
  std::vector<int> rss_pids;
};

bool ParseArgs(int argc, char** argv, Args* args) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--sizes") {
      args->sizes.clear();
      for (absl::string_view s : absl::StrSplit(value(), ',')) {
        size_t n = 0;
        if (!absl::SimpleAtoi(s, &n) || n == 0) return false;
        args->sizes.push_back(n);
      }
      std::sort(args->sizes.begin(), args->sizes.end());
    } else if (a == "--probes") {
      if (!absl::SimpleAtoi(value(), &args->probes) || args->probes == 0) return false;
    } else if (a == "--body-bytes") {
      if (!absl::SimpleAtoi(value(), &args->body_bytes)) return false;
    } else if (a == "--dir") {
      args->dir = value();
    } else if (a == "--keep") {
      args->keep = true;
    } else if (a == "--kv") {
      for (absl::string_view s : absl::StrSplit(value(), ',', absl::SkipEmpty()))
        args->kv.emplace_back(s);
      if (args->kv.empty()) return false;
    } else if (a == "--fill-threads") {
      if (!absl::SimpleAtoi(value(), &args->fill_threads) || args->fill_threads == 0) return false;
    } else if (a == "--rss-pids") {
      for (absl::string_view s : absl::StrSplit(value(), ',', absl::SkipEmpty())) {
        int pid = 0;
        if (!absl::SimpleAtoi(s, &pid)) return false;
        args->rss_pids.push_back(pid);
      }
    } else {
      return false;
    }
  }
  return !args->sizes.empty();
}

// kB from /proc/<pid>/status ("VmRSS", "VmHWM").
long ProcKb(const std::string& field, const std::string& pid = "self") {
  std::ifstream in("/proc/" + pid + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      long kb = 0;
      std::sscanf(line.c_str() + field.size() + 1, "%ld", &kb);
      return kb;
    }
  }
  return -1;
}

// utime + stime of a process, in seconds.
double ProcCpuSeconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  std::vector<std::string> f = absl::StrSplit(stat.substr(paren + 2), ' ');
  if (f.size() < 13) return 0;
  double ticks = std::strtod(f[11].c_str(), nullptr) + std::strtod(f[12].c_str(), nullptr);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double PidsCpuSeconds(const std::vector<int>& pids) {
  double total = 0;
  for (int pid : pids) total += ProcCpuSeconds(pid);
  return total;
}

std::string PidsRss(const std::vector<int>& pids) {
  std::string out;
  for (int pid : pids) {
    absl::StrAppend(&out, out.empty() ? "" : " ",
                    absl::StrFormat("%.0f", ProcKb("VmRSS", std::to_string(pid)) / 1024.0));
  }
  return out;
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

uint64_t DirBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code size_ec;  // a file compacted away meanwhile: skipped
    if (it->is_regular_file(size_ec)) {
      uint64_t size = it->file_size(size_ec);
      if (!size_ec) total += size;
    }
  }
  return total;
}

// Microsecond samples → "p50 / p99 / mean".
struct Samples {
  std::vector<double> us;
  double Pct(double p) {
    if (us.empty()) return 0;
    std::sort(us.begin(), us.end());
    return us[std::min(us.size() - 1, static_cast<size_t>(p * us.size()))];
  }
  double Mean() const {
    double s = 0;
    for (double v : us) s += v;
    return us.empty() ? 0 : s / us.size();
  }
};

class Timer {
 public:
  Timer() : start_(std::chrono::steady_clock::now()) {}
  double Us() const {
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start_)
        .count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

std::string Body(size_t bytes, size_t n) {
  std::string body = absl::StrFormat(
      "From: sender%d@bench.test\r\nTo: rcpt@dest.test\r\nSubject: deferred %d\r\n"
      "Message-ID: <%d@bench.test>\r\n\r\n",
      n % 1000, n, n);
  // Text that does not compress to nothing (RocksDB compresses blocks).
  std::mt19937_64 rng(n);
  while (body.size() + 2 < bytes) {
    for (int i = 0; i < 76 && body.size() + 2 < bytes; ++i)
      body += static_cast<char>('a' + rng() % 26);
    body += "\r\n";
  }
  return body;
}

struct Step {
  size_t n = 0;
  double fill_per_s = 0;
  double make_due_p50 = 0, make_due_p99 = 0;
  double pick_p50 = 0, pick_p99 = 0, pick_mean = 0;
  double resched_p50 = 0, resched_p99 = 0, resched_mean = 0;
  double idle_p50 = 0, scan_p50 = 0;
  long rss_kb = 0, hwm_kb = 0;
  uint64_t disk = 0;
  double group_cpu_us_per_probe = 0;  // --rss-pids' CPU per probe (all four operations)
  // Idle scans that listed entries the leader's index no longer had due
  // (the stale read reached a replica behind the reschedule).
  size_t stale_idle_scans = 0;
  std::string group_rss;              // their RSS, MiB each
};

void PrintEntry(Queue& queue, const std::string& id, absl::Time now) {
  auto entry = queue.GetQueueEntry(id, "", now);  // a linearizable Get
  if (!entry.ok()) {
    std::fprintf(stderr, "    %s: %s\n", id.c_str(), entry.status().ToString().c_str());
    return;
  }
  std::optional<absl::Time> at = ScheduleTime(*entry);
  std::fprintf(stderr, "    %s: record due %s (%s now), lease '%s', attempts %u, record: %s\n",
               id.c_str(), at ? absl::FormatTime(*at).c_str() : "never (held)",
               at && *at <= now ? "<=" : ">", entry->lease_holder().c_str(),
               entry->recipients_size() > 0 ? entry->recipients(0).attempts() : 0,
               entry->ShortDebugString().c_str());
}

// After a reschedule nothing may be due. The idle DueIds is a STALE read:
// when it lists entries, the leader's index (a linearizable scan) and each
// listed record decide: nothing due there = a replica behind the reschedule
// (true, counted); anything due there = a fault (or a wrong expectation of
// this bench), printed with its record (false).
bool StaleAnswerOnly(Queue& queue, const std::vector<std::string>& listed, absl::Time now) {
  auto truth = queue.DueKeysFromLeader(now, 16);
  if (!truth.ok()) {
    std::fprintf(stderr, "linearizable due scan: %s\n", truth.status().ToString().c_str());
    return false;
  }
  if (truth->empty()) return true;
  std::fprintf(stderr,
               "unexpected due entries after reschedule: the stale scan listed %zu, the leader's "
               "index has %zu due at %s:\n",
               listed.size(), truth->size(), absl::FormatTime(now).c_str());
  for (const Queue::DueKey& key : *truth) {
    std::fprintf(stderr, "  due key %s\n", absl::FormatTime(key.due).c_str());
    PrintEntry(queue, key.queue_id, now);
  }
  return false;
}

int Run(const Args& args) {
  std::string dir =
      args.dir.empty()
          ? (std::filesystem::temp_directory_path() / absl::StrCat("queue_scale_", getpid()))
                .string()
          : args.dir;
  const bool replicated = !args.kv.empty();
  std::unique_ptr<store::Store> store;
  if (replicated) {
    // --dir, if given, is only measured (the replicas' data dirs).
    auto connected = replica::ClientStore::Connect(args.kv);
    if (!connected.ok()) {
      std::fprintf(stderr, "connect %s: %s\n", absl::StrJoin(args.kv, ",").c_str(),
                   connected.status().ToString().c_str());
      return 1;
    }
    store = *std::move(connected);
  } else {
    std::filesystem::remove_all(dir);
    auto local = store::LocalStore::Open(dir);
    if (!local.ok()) {
      std::fprintf(stderr, "open %s: %s\n", dir.c_str(), local.status().ToString().c_str());
      return 1;
    }
    store = *std::move(local);
  }
  const size_t fill_threads = args.fill_threads > 0 ? args.fill_threads : (replicated ? 32 : 1);
  QueueOptions options;
  options.rpc_timeout = absl::Seconds(60);  // a loaded machine: slow, not failed
  // A probe's reschedule (a 451) must not come due again while the bench
  // runs: with the default 5 min backoff, the entries rescheduled at one
  // step were due again during the next step's probes once the fill between
  // them took over 5 min (100k -> 1M: ~6 min quiet), and the idle check
  // found them. The cost of a reschedule does not depend on how far out.
  options.retry.initial_backoff = absl::Hours(24);
  options.retry.max_backoff = absl::Hours(24);
  Queue queue(store.get(), options);
  std::mt19937_64 rng(42);
  const absl::Duration window = absl::Hours(24 * 5);
  // A sample of the deferred ids (the bench's own memory stays small: the
  // RSS printed is the queue's, not a list of a million ids).
  const size_t stride = std::max<size_t>(1, args.sizes.back() / 20000);
  std::vector<std::string> sample;
  size_t filled = 0;
  std::vector<Step> steps;
  if (replicated) {
    std::printf(
        "queue_scale_bench: replicated KV group %s (Raft, fsync), body %zu bytes, %zu probes per "
        "step, fill %zu threads\n",
        absl::StrJoin(args.kv, ",").c_str(), args.body_bytes, args.probes, fill_threads);
  } else {
    std::printf(
        "queue_scale_bench: LocalStore (RocksDB) at %s, body %zu bytes, %zu probes per step\n",
        dir.c_str(), args.body_bytes, args.probes);
  }
  std::printf("load average before: %s\n", LoadAverage().c_str());
  std::fflush(stdout);
  for (size_t target : args.sizes) {
    Step step;
    step.n = target;
    Timer fill;
    size_t added = 0;
    absl::Time base = absl::Now();
    // Entry k of the queue is written by thread k % fill_threads; the ids of
    // every stride-th entry are kept as the probes' sample.
    std::atomic<size_t> next{filled};
    std::atomic<size_t> done{0};
    std::atomic<bool> failed{false};
    std::mutex sample_mu;
    auto fill_one = [&](size_t k, std::mt19937_64& local_rng) -> bool {
      NewMessage m;
      m.tenant_id = absl::StrCat("t", k % 50);
      m.envelope_from = absl::StrCat("sender", k % 1000, "@bench.test");
      m.recipients = {absl::StrCat("rcpt", k, "@d", k % 1000, ".test")};
      m.body = Body(args.body_bytes, k);
      // Next attempt somewhere in the coming retry window, at least 12 h
      // out: none may come due during the run (a fill on a loaded machine
      // takes well over 10 min), or the idle check would find it.
      absl::Duration offset =
          absl::Hours(12) + absl::Microseconds(static_cast<int64_t>(
                                  local_rng() % absl::ToInt64Microseconds(window)));
      auto id = queue.Enqueue(m, base + offset);
      if (!id.ok()) {
        std::fprintf(stderr, "enqueue: %s\n", id.status().ToString().c_str());
        return false;
      }
      if (k % stride == 0) {
        std::lock_guard<std::mutex> lock(sample_mu);
        sample.push_back(*std::move(id));
      }
      size_t d = done.fetch_add(1) + 1;
      if ((filled + d) % 100000 == 0 && filled + d < target) {
        // Progress, so a run cut short still says how far it got.
        std::printf("  ... %zu entries, filling at %.0f/s, RSS %.0f MiB%s%s, load %s\n",
                    filled + d, d / (fill.Us() / 1e6), ProcKb("VmRSS") / 1024.0,
                    args.rss_pids.empty() ? "" : ", replicas MiB ", PidsRss(args.rss_pids).c_str(),
                    LoadAverage().c_str());
        std::fflush(stdout);
      }
      return true;
    };
    std::vector<std::thread> fillers;
    for (size_t t = 0; t < fill_threads; ++t) {
      fillers.emplace_back([&, t] {
        std::mt19937_64 local_rng(rng() ^ (t * 0x9E3779B97F4A7C15u));
        for (size_t k = next.fetch_add(1); k < target && !failed.load(); k = next.fetch_add(1)) {
          if (!fill_one(k, local_rng)) failed.store(true);
        }
      });
    }
    for (std::thread& t : fillers) t.join();
    if (failed.load()) return 1;
    added = done.load();
    filled = target;
    step.fill_per_s = added / (fill.Us() / 1e6);
    Samples make_due, pick, scan, resched, idle;
    const double cpu_before = PidsCpuSeconds(args.rss_pids);
    for (size_t i = 0; i < args.probes; ++i) {
      const std::string& id = sample[rng() % sample.size()];
      absl::Time now = absl::Now();
      relay::v1::RetryNowRequest retry;
      retry.set_queue_id(id);
      Timer t1;
      auto retried = queue.RetryNow(retry, "", now);
      make_due.us.push_back(t1.Us());
      if (!retried.ok()) {
        std::fprintf(stderr, "retry %s: %s\n", id.c_str(), retried.status().ToString().c_str());
        return 1;
      }
      now = absl::Now();
      Timer t2;
      auto due = queue.DueIds(now, 16);
      scan.us.push_back(t2.Us());
      if (!due.ok() || due->empty()) {
        std::fprintf(stderr, "nothing due after RetryNow\n");
        return 1;
      }
      auto lease = queue.TryLease(due->front(), "bench", now);
      pick.us.push_back(t2.Us());
      if (!lease.ok()) {
        std::fprintf(stderr, "lease: %s\n", lease.status().ToString().c_str());
        return 1;
      }
      std::vector<RecipientOutcome> outcomes;
      for (const auto& r : lease->entry.recipients()) {
        RecipientOutcome o{r.address(), RecipientOutcome::Kind::kDeferred, {}};
        o.reply.set_code(451);
        o.reply.set_text("4.4.1 bench: try again later");
        outcomes.push_back(std::move(o));
      }
      Timer t3;
      auto done = queue.Complete(*lease, outcomes, absl::Now());
      resched.us.push_back(t3.Us());
      if (!done.ok()) {
        std::fprintf(stderr, "complete: %s\n", done.status().ToString().c_str());
        return 1;
      }
      Timer t4;
      const absl::Time idle_now = absl::Now();
      auto none = queue.DueIds(idle_now, 16);
      idle.us.push_back(t4.Us());
      if (!none.ok()) {
        std::fprintf(stderr, "idle scan: %s\n", none.status().ToString().c_str());
        return 1;
      }
      if (!none->empty()) {
        if (!StaleAnswerOnly(queue, *none, idle_now)) return 1;
        ++step.stale_idle_scans;
      }
    }
    step.make_due_p50 = make_due.Pct(0.5);
    step.make_due_p99 = make_due.Pct(0.99);
    step.pick_p50 = pick.Pct(0.5);
    step.pick_p99 = pick.Pct(0.99);
    step.pick_mean = pick.Mean();
    step.resched_p50 = resched.Pct(0.5);
    step.resched_p99 = resched.Pct(0.99);
    step.resched_mean = resched.Mean();
    step.idle_p50 = idle.Pct(0.5);
    step.scan_p50 = scan.Pct(0.5);
    if (getenv("QS_DEBUG")) {
      size_t k = idle.us.size() / 10;
      Samples first{std::vector<double>(idle.us.begin(), idle.us.begin() + k)};
      Samples last{std::vector<double>(idle.us.end() - k, idle.us.end())};
      std::printf("  idle scan first 10%% p50 %.1f us, last 10%% p50 %.1f us\n", first.Pct(0.5),
                  last.Pct(0.5));
    }
    if (!args.rss_pids.empty()) {
      step.group_cpu_us_per_probe =
          (PidsCpuSeconds(args.rss_pids) - cpu_before) * 1e6 / static_cast<double>(args.probes);
      step.group_rss = PidsRss(args.rss_pids);
    }
    step.rss_kb = ProcKb("VmRSS");
    step.hwm_kb = ProcKb("VmHWM");
    step.disk = std::filesystem::exists(dir) ? DirBytes(dir) : 0;
    steps.push_back(step);
    std::printf(
        "n=%-8zu fill %7.0f/s | make-due p50 %6.1f p99 %7.1f us | pick p50 %6.1f p99 %7.1f "
        "mean %6.1f us (scan p50 %5.1f) | reschedule p50 %6.1f p99 %7.1f mean %6.1f us | idle scan "
        "p50 %5.1f us | "
        "RSS %5.0f MiB (peak %5.0f) | disk %5.0f MiB | load %s\n",
        step.n, step.fill_per_s, step.make_due_p50, step.make_due_p99, step.pick_p50, step.pick_p99,
        step.pick_mean, step.scan_p50, step.resched_p50, step.resched_p99, step.resched_mean,
        step.idle_p50, step.rss_kb / 1024.0, step.hwm_kb / 1024.0, step.disk / 1048576.0,
        LoadAverage().c_str());
    if (step.stale_idle_scans > 0) {
      std::printf("          %zu of %zu idle scans listed a rescheduled entry that the leader's "
                  "index no longer had due (a lagging replica's stale answer)\n",
                  step.stale_idle_scans, args.probes);
    }
    if (!args.rss_pids.empty()) {
      std::printf("          replicas: CPU %.0f us per probe (make-due + pick + reschedule + idle "
                  "scan, all replicas) | RSS MiB %s\n",
                  step.group_cpu_us_per_probe, step.group_rss.c_str());
    }
    std::fflush(stdout);
  }
  if (steps.size() >= 2) {
    const Step& a = steps.front();
    const Step& b = steps.back();
    double n_ratio = static_cast<double>(b.n) / a.n;
    double log_ratio = std::log2(static_cast<double>(b.n)) / std::log2(static_cast<double>(a.n));
    std::printf(
        "\nfrom n=%zu to n=%zu (x%.0f entries; log2 n grows x%.2f):\n"
        "  pick (scan+lease) per message   p50 x%.2f  mean x%.2f\n"
        "  reschedule per message          p50 x%.2f  mean x%.2f\n"
        "  pick+reschedule per message at n=%zu: %.1f us p50 (%.0f msgs/s on one thread)\n"
        "  peak RSS of this process (the queue's client: relayd's share) %.0f MiB (target < 1024 "
        "MiB)\n",
        a.n, b.n, n_ratio, log_ratio, b.pick_p50 / a.pick_p50, b.pick_mean / a.pick_mean,
        b.resched_p50 / a.resched_p50, b.resched_mean / a.resched_mean, b.n,
        b.pick_p50 + b.resched_p50, 1e6 / (b.pick_mean + b.resched_mean), b.hwm_kb / 1024.0);
    if (!args.rss_pids.empty() && a.group_cpu_us_per_probe > 0) {
      std::printf("  replicas' CPU per probe x%.2f (%.0f -> %.0f us)\n",
                  b.group_cpu_us_per_probe / a.group_cpu_us_per_probe, a.group_cpu_us_per_probe,
                  b.group_cpu_us_per_probe);
    }
  }
  std::printf("load average after: %s\n", LoadAverage().c_str());
  if (!args.keep && !replicated) {
    store.reset();
    std::filesystem::remove_all(dir);
  }
  return 0;
}

}  // namespace
}  // namespace mailgrid::outbound

int main(int argc, char** argv) {
  mailgrid::outbound::Args args;
  if (!mailgrid::outbound::ParseArgs(argc, argv, &args)) {
    std::fprintf(stderr,
                 "usage: queue_scale_bench [--sizes 10000,100000,1000000] [--probes 2000] "
                 "[--body-bytes 1024] [--dir DIR] [--keep] [--kv HOST:PORT,...] "
                 "[--fill-threads N] [--rss-pids PID,...]\n");
    return 2;
  }
  return mailgrid::outbound::Run(args);
}
