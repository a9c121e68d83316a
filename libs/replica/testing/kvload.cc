// kvload: drives a replica group through KvClient for the real-process
// tests and the benchmark.
//
//   kvload --addresses=A,B,C write [--ops=N] [--clients=C] [--hot-keys=H]
//          [--value-size=B] [--timeout=10s] [--history=FILE] [--run=ID]
//     Op i writes the unique key <run>/k-<i> with value <run>-<i>, except
//     every fifth op, which reads or writes one of H hot keys (<run>/h-<j>), so the
//     history has real contention for the linearizability check.
//     stdout, one line per write, flushed:
//       ack KEY VALUE        the write was acknowledged
//       unknown KEY VALUE    it failed or timed out: may or may not apply
//     stderr, at the end: summary ops=.. acked=.. unknown=.. seconds=..
//       writes_per_sec=.. p50_ms=.. p99_ms=..
//   kvload --addresses=A,B,C read [--ops=N] [--hot-keys=H] [--stale]
//          [--history=FILE]
//     Reads every key the write phase could have written:
//       value KEY VALUE | missing KEY
//
// --history appends one line per completed operation for kvlincheck:
//   client kind key value found invoke_ns return_ns unknown
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "libs/base/config.h"
#include "libs/replica/kv_client.h"

namespace {

using mailgrid::replica::KvClient;
namespace kv1 = mailgrid::kv::v1;

struct Options {
  std::string addresses;
  int64_t ops = 1000;
  int clients = 8;
  int hot_keys = 20;
  int value_size = 0;  // pad values to this size (benchmarks)
  absl::Duration timeout = absl::Seconds(10);
  std::string history;
  std::string run = "r";
  bool stale = false;
};

const std::string kPrefix = "\x02load/";

// Keys carry the run tag, so runs against one group never share a key.
std::string UniqueKey(const Options& o, int64_t i) {
  return absl::StrFormat("%s/k-%07d", o.run, i);
}
std::string HotKey(const Options& o, int64_t j) { return absl::StrFormat("%s/h-%03d", o.run, j); }

class Output {
 public:
  explicit Output(const std::string& history) {
    if (!history.empty()) history_.open(history, std::ios::app);
  }
  void Line(const std::string& line) {
    std::lock_guard<std::mutex> lock(mu_);
    fputs(line.c_str(), stdout);
    fputc('\n', stdout);
    fflush(stdout);
  }
  void History(int client, bool put, const std::string& key, const std::string& value, bool found,
               int64_t invoke, int64_t ret, bool unknown) {
    if (!history_.is_open()) return;
    std::lock_guard<std::mutex> lock(mu_);
    history_ << client << ' ' << (put ? "put" : "get") << ' ' << key << ' '
             << (value.empty() ? "-" : value) << ' ' << (found ? 1 : 0) << ' ' << invoke << ' '
             << ret << ' ' << (unknown ? 1 : 0) << '\n';
    history_.flush();
  }

 private:
  std::mutex mu_;
  std::ofstream history_;
};

kv1::WriteRequest Put(const std::string& key, const std::string& value) {
  kv1::WriteRequest req;
  kv1::Put* p = req.add_ops()->mutable_put();
  p->set_key(kPrefix + key);
  p->set_value(value);
  return req;
}

int Write(const Options& o, KvClient& client) {
  Output out(o.history);
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> acked{0}, unknown{0};
  std::mutex lat_mu;
  std::vector<double> latencies_ms;
  absl::Time start = absl::Now();
  auto worker = [&](int id) {
    std::vector<double> mine;
    for (int64_t i = next.fetch_add(1); i < o.ops; i = next.fetch_add(1)) {
      const bool hot = o.hot_keys > 0 && i % 5 == 4;
      const std::string key = hot ? HotKey(o, (i / 5) % o.hot_keys) : UniqueKey(o, i);
      if (hot && (i / 5) % 2 == 0) {
        kv1::GetRequest get;
        get.set_key(kPrefix + key);
        int64_t invoke = absl::GetCurrentTimeNanos();
        absl::StatusOr<kv1::GetResponse> r = client.Get(get, o.timeout);
        int64_t ret = absl::GetCurrentTimeNanos();
        if (r.ok()) out.History(id, false, key, r->value(), r->found(), invoke, ret, false);
        continue;  // a failed read constrains nothing
      }
      std::string value = absl::StrCat(o.run, "-", i);
      if (static_cast<int>(value.size()) < o.value_size) value.resize(o.value_size, 'x');
      int64_t invoke = absl::GetCurrentTimeNanos();
      absl::StatusOr<kv1::WriteResponse> w = client.Write(Put(key, value), o.timeout);
      int64_t ret = absl::GetCurrentTimeNanos();
      const bool ok = w.ok() && w->has_ok();
      out.History(id, true, key, value, true, invoke, ret, !ok);
      if (ok) {
        ++acked;
        mine.push_back(static_cast<double>(ret - invoke) / 1e6);
        out.Line(absl::StrCat("ack ", key, " ", value));
      } else {
        ++unknown;
        out.Line(absl::StrCat("unknown ", key, " ", value, " ",
                              w.ok() ? "not-ok" : absl::StatusCodeToString(w.status().code())));
      }
    }
    std::lock_guard<std::mutex> lock(lat_mu);
    latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
  };
  std::vector<std::thread> threads;
  for (int c = 0; c < o.clients; ++c) threads.emplace_back(worker, c);
  for (auto& t : threads) t.join();
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto pct = [&](double p) {
    if (latencies_ms.empty()) return 0.0;
    size_t idx = std::min(latencies_ms.size() - 1, static_cast<size_t>(p * latencies_ms.size()));
    return latencies_ms[idx];
  };
  std::cerr << absl::StrFormat(
      "summary ops=%d acked=%d unknown=%d seconds=%.2f writes_per_sec=%.1f p50_ms=%.2f "
      "p99_ms=%.2f\n",
      o.ops, acked.load(), unknown.load(), seconds, acked.load() / std::max(seconds, 1e-9),
      pct(0.50), pct(0.99));
  return 0;
}

int Read(const Options& o, KvClient& client) {
  Output out(o.history);
  int errors = 0;
  auto read = [&](const std::string& key) {
    kv1::GetRequest get;
    get.set_key(kPrefix + key);
    get.set_consistency(o.stale ? kv1::STALE : kv1::LINEARIZABLE);
    int64_t invoke = absl::GetCurrentTimeNanos();
    absl::StatusOr<kv1::GetResponse> r = client.Get(get, o.timeout);
    int64_t ret = absl::GetCurrentTimeNanos();
    if (!r.ok()) {
      std::cerr << "read " << key << ": " << r.status() << "\n";
      ++errors;
      return;
    }
    if (!o.stale) out.History(999, false, key, r->value(), r->found(), invoke, ret, false);
    out.Line(r->found() ? absl::StrCat("value ", key, " ", r->value())
                        : absl::StrCat("missing ", key));
  };
  for (int64_t i = 0; i < o.ops; ++i) {
    if (o.hot_keys > 0 && i % 5 == 4) continue;
    read(UniqueKey(o, i));
  }
  for (int j = 0; j < o.hot_keys; ++j) read(HotKey(o, j));
  return errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  mailgrid::config::Flags flags("kvload");
  flags.String("addresses", &o.addresses, "the group's replicas, host:port,...");
  flags.Int64("ops", &o.ops, "operations (write) / key space (read)");
  flags.Int("clients", &o.clients, "concurrent clients");
  flags.Int("hot-keys", &o.hot_keys, "contended keys (every fifth op); 0 = unique keys only");
  flags.Int("value-size", &o.value_size, "pad values to this many bytes");
  flags.Duration("timeout", &o.timeout, "deadline of each operation");
  flags.String("history", &o.history, "append the operation history here (for kvlincheck)");
  flags.String("run", &o.run, "tag making this run's values unique");
  flags.Bool("stale", &o.stale, "read: STALE reads from whichever replica answers");
  mailgrid::replica::ReplicaTls tls;
  flags.String("tls-ca", &tls.ca_file, "PEM CA of the replicas' certificates (enables TLS)");
  flags.String("tls-cert", &tls.cert_file, "PEM client certificate (mTLS)");
  flags.String("tls-key", &tls.key_file, "PEM key of --tls-cert");
  absl::Status parsed = flags.Parse(argc, argv);
  if (!parsed.ok() || flags.Positional().size() != 1) {
    std::cerr << (parsed.ok() ? "usage: kvload [flags] write|read" : parsed.ToString()) << "\n"
              << flags.Usage();
    return 2;
  }
  mailgrid::replica::KvClientOptions co;
  auto addresses = mailgrid::replica::ParseAddressList(o.addresses);
  if (!addresses.ok()) {
    std::cerr << addresses.status() << "\n";
    return 2;
  }
  co.addresses = *addresses;
  co.timeout = o.timeout;
  co.tls = tls;
  auto client = KvClient::Create(co);
  if (!client.ok()) {
    std::cerr << client.status() << "\n";
    return 2;
  }
  const std::string& mode = flags.Positional()[0];
  if (mode == "write") return Write(o, **client);
  if (mode == "read") return Read(o, **client);
  std::cerr << "unknown mode " << mode << "\n";
  return 2;
}
