// raft_bench: one write workload, three targets, for issue 3's "Speed".
//
//   raft_bench replicated --addresses A,B,C [common flags]
//       writes through replica::KvClient to a replicad group (follows the
//       leader, idempotent request ids, concurrent writes coalesced into
//       WriteMany calls: exactly what a service does). --raw-writes: one
//       Write RPC per write instead (the per-call cost, no coalescing).
//   raft_bench rocksdb --dir D [common flags]
//       the same puts on ONE plain RocksDB, WriteOptions.sync = true, all
//       writers on one DB so RocksDB's own group commit applies: the
//       single-node synced baseline.
//   raft_bench etcd --addresses A[,B,...] [common flags]
//       the same puts as etcd v3 KV.Put over gRPC (etcd_proto/); writers are
//       spread over the given endpoints (give only the leader to spare etcd
//       the follower forwarding hop).
//
//   raft_bench apply --dir D [--entries 20000] [--apply-batch 32] [--writes-per-entry 1]
//                    [--sessions=true|false]
//       no network, no raft: the state machine alone. Applies --entries
//       write commands (the same puts, each with a request id as KvClient
//       sends) one entry per RocksDB write, then as many again in batches
//       of --apply-batch (StateMachine::ApplyBatch, what a replica does per
//       Ready), and prints the CPU and wall time per entry of each and the
//       ratio. Thread CPU time, so a busy machine disturbs it little.
//
// Common flags: --clients N (concurrent writer threads), --seconds S
// (measured), --warmup 1s (run but not measured), --value-bytes 100,
// --timeout 10s (per write), --client-per-writer (one KvClient / channel per
// writer instead of one shared by all, which is what a service does).
//
// Every writer writes unique keys bench/<run>/<writer>/<i>. A write counts
// when it completes inside the measured window; its latency is the client's
// view (call to answer). Output, one line on stdout:
//   result mode=.. clients=.. seconds=.. writes=.. writes_per_sec=..
//          p50_ms=.. p99_ms=.. p999_ms=.. max_ms=.. errors=..
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "etcd_proto/etcdserverpb/kv_put.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "libs/base/config.h"
#include "libs/base/runtime.h"
#include "libs/kv/engine.h"
#include "libs/kv/state_machine.h"
#include "libs/replica/kv_client.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"

namespace {

namespace kv1 = mailgrid::kv::v1;
using mailgrid::replica::KvClient;

struct Options {
  std::string addresses;
  std::string dir;
  int clients = 1;
  absl::Duration seconds = absl::Seconds(10);
  absl::Duration warmup = absl::Seconds(1);
  int value_bytes = 100;
  absl::Duration timeout = absl::Seconds(10);
  bool client_per_writer = false;
  bool raw_writes = false;
  int calls_in_flight = 1;
  // Off by default: the services' groups run at format 1 (one idempotency
  // record per write) until the launcher and chart raise them
  // (libs/kv/README.md "Client sessions").
  bool raise_format = false;
  bool sessions = true;
  std::string run;
};

// One writer's put; each writer thread gets its own (it may close over a
// shared client).
using PutFn = std::function<absl::Status(const std::string& key, const std::string& value)>;
using PutFactory = std::function<absl::StatusOr<PutFn>(int writer)>;

struct Result {
  int64_t writes = 0;
  int64_t errors = 0;
  std::string first_error;
  std::vector<double> latencies_ms;
};

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(p * static_cast<double>(sorted.size()) + 0.999999);
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

// Runs o.clients writer threads for warmup + seconds; counts what completes
// inside the measured window.
absl::StatusOr<Result> RunWriters(const Options& o, const PutFactory& factory) {
  std::vector<PutFn> puts;
  for (int w = 0; w < o.clients; ++w) {
    absl::StatusOr<PutFn> put = factory(w);
    if (!put.ok()) return put.status();
    puts.push_back(*std::move(put));
  }
  const std::string value(static_cast<size_t>(o.value_bytes), 'v');
  const absl::Time start = absl::Now();
  const absl::Time measure_from = start + o.warmup;
  const absl::Time measure_to = measure_from + o.seconds;
  std::mutex mu;
  Result total;
  auto writer = [&](int w) {
    Result mine;
    for (int64_t i = 0;; ++i) {
      const std::string key = absl::StrFormat("bench/%s/%03d/%09d", o.run, w, i);
      const absl::Time t0 = absl::Now();
      absl::Status s = puts[w](key, value);
      const absl::Time t1 = absl::Now();
      if (t1 > measure_to) break;
      if (t1 < measure_from) continue;
      if (s.ok()) {
        ++mine.writes;
        mine.latencies_ms.push_back(absl::ToDoubleMilliseconds(t1 - t0));
      } else {
        if (mine.errors++ == 0) mine.first_error = s.ToString();
        absl::SleepFor(absl::Milliseconds(10));  // do not spin on a down target
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    total.writes += mine.writes;
    total.errors += mine.errors;
    if (total.first_error.empty()) total.first_error = mine.first_error;
    total.latencies_ms.insert(total.latencies_ms.end(), mine.latencies_ms.begin(),
                              mine.latencies_ms.end());
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < o.clients; ++w) threads.emplace_back(writer, w);
  for (auto& t : threads) t.join();
  std::sort(total.latencies_ms.begin(), total.latencies_ms.end());
  return total;
}

// --- targets ---------------------------------------------------------------

// What an operator does after deploying a binary to every member (mailctl
// raft set-format): commit this binary's state-machine format, so that the
// writes use what it brings (client sessions, offered from format 3). The leader takes
// it; the others answer NOT_LEADER. A group that cannot (an older binary
// somewhere) keeps its format: logged, the bench goes on.
void RaiseFormat(const std::vector<std::string>& addresses) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  std::string last;
  while (absl::Now() < deadline) {
    for (const std::string& a : addresses) {
      auto stub =
          kv1::KvService::NewStub(grpc::CreateChannel(a, grpc::InsecureChannelCredentials()));
      kv1::SetFormatRequest req;
      req.set_format(mailgrid::kv::kStateMachineFormat);
      kv1::WriteResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
      grpc::Status s = stub->SetFormat(&ctx, req, &resp);
      if (s.ok()) {
        std::cerr << "state-machine format " << mailgrid::kv::kStateMachineFormat
                  << " committed at index " << resp.applied_index() << "\n";
        return;
      }
      last = s.error_message();
      if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
        std::cerr << "format not raised: " << a << " predates formats\n";
        return;
      }
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  std::cerr << "format not raised: " << last << "\n";
}

absl::StatusOr<PutFactory> ReplicatedTarget(const Options& o) {
  auto addresses = mailgrid::replica::ParseAddressList(o.addresses);
  if (!addresses.ok()) return addresses.status();
  if (o.raise_format) RaiseFormat(*addresses);
  auto make_client = [o, addresses = *addresses]() -> absl::StatusOr<std::shared_ptr<KvClient>> {
    mailgrid::replica::KvClientOptions co;
    co.addresses = addresses;
    co.timeout = o.timeout;
    co.batching = o.raw_writes ? mailgrid::replica::WriteBatching::kOnePerCall
                               : mailgrid::replica::WriteBatching::kCoalesce;
    co.sessions = o.sessions ? mailgrid::replica::SessionUse::kWhenOffered
                             : mailgrid::replica::SessionUse::kRecordPerWrite;
    co.max_calls_in_flight = o.calls_in_flight;
    auto client = KvClient::Create(co);
    if (!client.ok()) return client.status();
    return std::shared_ptr<KvClient>(std::move(*client));
  };
  std::shared_ptr<KvClient> shared;
  if (!o.client_per_writer) {
    auto client = make_client();
    if (!client.ok()) return client.status();
    shared = *client;
  }
  return PutFactory([o, shared, make_client](int) -> absl::StatusOr<PutFn> {
    std::shared_ptr<KvClient> client = shared;
    if (client == nullptr) {
      auto made = make_client();
      if (!made.ok()) return made.status();
      client = *made;
    }
    return PutFn([o, client](const std::string& key, const std::string& value) -> absl::Status {
      kv1::WriteRequest req;
      kv1::Put* put = req.add_ops()->mutable_put();
      put->set_key(key);
      put->set_value(value);
      absl::StatusOr<kv1::WriteResponse> r = client->Write(std::move(req), o.timeout);
      if (!r.ok()) return r.status();
      if (!r->has_ok()) return absl::InternalError("write not applied: " + r->ShortDebugString());
      return absl::OkStatus();
    });
  });
}

absl::StatusOr<PutFactory> RocksDbTarget(const Options& o, std::unique_ptr<rocksdb::DB>* db_out) {
  if (o.dir.empty()) return absl::InvalidArgumentError("rocksdb needs --dir");
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, o.dir, &db);
  if (!s.ok()) return absl::InternalError("rocksdb open " + o.dir + ": " + s.ToString());
  db_out->reset(db);
  return PutFactory([db](int) -> absl::StatusOr<PutFn> {
    return PutFn([db](const std::string& key, const std::string& value) -> absl::Status {
      rocksdb::WriteOptions wo;
      wo.sync = true;
      rocksdb::Status s = db->Put(wo, key, value);
      if (!s.ok()) return absl::InternalError(s.ToString());
      return absl::OkStatus();
    });
  });
}

absl::StatusOr<PutFactory> EtcdTarget(const Options& o) {
  auto addresses = mailgrid::replica::ParseAddressList(o.addresses);
  if (!addresses.ok()) return addresses.status();
  auto make_stub = [](const std::string& address) {
    grpc::ChannelArguments args;
    // Without this, channels to one address share one connection.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return std::shared_ptr<etcdserverpb::KV::Stub>(etcdserverpb::KV::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
  };
  std::vector<std::shared_ptr<etcdserverpb::KV::Stub>> shared;
  for (const std::string& a : *addresses) shared.push_back(make_stub(a));
  return PutFactory([o, shared, addresses = *addresses, make_stub](int w) -> absl::StatusOr<PutFn> {
    const size_t pick = static_cast<size_t>(w) % addresses.size();
    std::shared_ptr<etcdserverpb::KV::Stub> stub =
        o.client_per_writer ? make_stub(addresses[pick]) : shared[pick];
    return PutFn([o, stub](const std::string& key, const std::string& value) -> absl::Status {
      etcdserverpb::PutRequest req;
      req.set_key(key);
      req.set_value(value);
      etcdserverpb::PutResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + o.timeout));
      grpc::Status s = stub->Put(&ctx, req, &resp);
      if (!s.ok()) {
        return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
      }
      return absl::OkStatus();
    });
  });
}

void Print(const std::string& mode, const Options& o, const Result& r) {
  const double seconds = absl::ToDoubleSeconds(o.seconds);
  std::printf(
      "result mode=%s clients=%d seconds=%.2f writes=%lld writes_per_sec=%.1f p50_ms=%.3f "
      "p99_ms=%.3f p999_ms=%.3f max_ms=%.3f errors=%lld\n",
      mode.c_str(), o.clients, seconds, static_cast<long long>(r.writes), r.writes / seconds,
      Percentile(r.latencies_ms, 0.50), Percentile(r.latencies_ms, 0.99),
      Percentile(r.latencies_ms, 0.999), r.latencies_ms.empty() ? 0.0 : r.latencies_ms.back(),
      static_cast<long long>(r.errors));
  std::fflush(stdout);
  if (r.errors > 0) std::fprintf(stderr, "first error: %s\n", r.first_error.c_str());
}

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// The `apply` mode (see the top of the file).
int RunApplyBench(const Options& o, int entries, int batch, int per_entry) {
  if (o.dir.empty() || entries < 1 || batch < 1) {
    std::cerr << "apply: needs --dir, --entries >= 1 and --apply-batch >= 1\n";
    return 2;
  }
  auto engine = mailgrid::kv::Engine::Open(o.dir);
  if (!engine.ok()) {
    std::cerr << engine.status() << "\n";
    return 1;
  }
  auto sm = mailgrid::kv::StateMachine::Open(engine->get());
  if (!sm.ok()) {
    std::cerr << sm.status() << "\n";
    return 1;
  }
  uint64_t next = (*sm)->applied_index() + 1;
  if (o.sessions) {
    // Session writes need a group at format 2 or later (what raise-format does).
    kv1::WriteRequest set;
    set.set_set_format(mailgrid::kv::kStateMachineFormat);
    absl::StatusOr<kv1::WriteResponse> r = (*sm)->Apply(next++, 1, set.SerializeAsString());
    if (!r.ok() || !r->has_ok()) {
      std::cerr << "set format failed: " << r.status() << "\n";
      return 1;
    }
  }
  // Each entry: `per_entry` writes of one client (as a WriteMany batch entry
  // when > 1), with session ids (first_unacked trailing by `per_entry`, as
  // KvClient's in-flight writes) or one record per write.
  std::vector<std::string> commands;
  const std::string value(static_cast<size_t>(o.value_bytes), 'v');
  uint64_t seq = 0;
  for (int i = 0; i < 2 * entries; ++i) {
    kv1::WriteRequest entry;
    for (int k = 0; k < per_entry; ++k) {
      kv1::WriteRequest& w = per_entry == 1 ? entry : *entry.add_batch();
      kv1::Put* put = w.add_ops()->mutable_put();
      put->set_key(absl::StrCat("bench/", o.run, "/", i, "/", k));
      put->set_value(value);
      w.mutable_request_id()->set_client_id(absl::StrCat("bench-", o.run));
      w.mutable_request_id()->set_seq(++seq);
      if (o.sessions) {
        w.mutable_request_id()->set_first_unacked(
            seq > static_cast<uint64_t>(per_entry) ? seq - per_entry : 1);
        w.set_min_format(mailgrid::kv::kSessionFormat);
      }
    }
    commands.push_back(entry.SerializeAsString());
  }
  // One entry per write.
  double cpu0 = ThreadCpuSeconds();
  absl::Time t0 = absl::Now();
  for (int i = 0; i < entries; ++i) {
    absl::StatusOr<kv1::WriteResponse> r = (*sm)->Apply(next++, 1, commands[i]);
    if (!r.ok() || !r->has_ok() || (per_entry > 1 && !r->batch(0).has_ok())) {
      std::cerr << "apply failed: " << (r.ok() ? r->ShortDebugString() : r.status().ToString())
                << "\n";
      return 1;
    }
  }
  const double one_cpu = ThreadCpuSeconds() - cpu0;
  const double one_wall = absl::ToDoubleSeconds(absl::Now() - t0);
  // Batches of `batch` entries.
  std::vector<mailgrid::kv::ApplyInput> inputs;
  for (int i = entries; i < 2 * entries; ++i) {
    inputs.push_back({next++, 1, mailgrid::kv::ApplyInput::Kind::kCommand, commands[i]});
  }
  cpu0 = ThreadCpuSeconds();
  t0 = absl::Now();
  std::span<const mailgrid::kv::ApplyInput> rest(inputs);
  while (!rest.empty()) {
    auto r = (*sm)->ApplyBatch(rest.first(std::min(rest.size(), static_cast<size_t>(batch))));
    if (!r.ok()) {
      std::cerr << "apply batch failed: " << r.status() << "\n";
      return 1;
    }
    rest = rest.subspan(r->size());
  }
  const double batch_cpu = ThreadCpuSeconds() - cpu0;
  const double batch_wall = absl::ToDoubleSeconds(absl::Now() - t0);
  std::printf(
      "result mode=apply entries=%d apply_batch=%d writes_per_entry=%d sessions=%d "
      "one_by_one_cpu_us=%.1f batched_cpu_us=%.1f batched_cpu_us_per_write=%.2f "
      "cpu_ratio=%.2f one_by_one_wall_us=%.1f batched_wall_us=%.1f wall_ratio=%.2f\n",
      entries, batch, per_entry, o.sessions ? 1 : 0, 1e6 * one_cpu / entries,
      1e6 * batch_cpu / entries, 1e6 * batch_cpu / entries / per_entry, one_cpu / batch_cpu,
      1e6 * one_wall / entries, 1e6 * batch_wall / entries, one_wall / batch_wall);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // As every daemon's main (libs/rpc/service_main.cc): the services whose
  // KvClient this stands for run without absl's deadlock detector.
  mailgrid::base::DisableMutexDeadlockDetection();
  Options o;
  o.run = absl::StrCat(absl::ToUnixMicros(absl::Now()));
  mailgrid::config::Flags flags("raft_bench");
  flags.String("addresses", &o.addresses, "replicated/etcd: host:port,... of the group");
  flags.String("dir", &o.dir, "rocksdb: the database directory (created)");
  flags.Int("clients", &o.clients, "concurrent writer threads");
  flags.Duration("seconds", &o.seconds, "measured duration (10s; a bare number is seconds)");
  flags.Duration("warmup", &o.warmup, "run before measuring");
  flags.Int("value-bytes", &o.value_bytes, "bytes per value");
  flags.Duration("timeout", &o.timeout, "deadline of each write");
  flags.Bool("client-per-writer", &o.client_per_writer,
             "one client/channel per writer instead of one shared (what a service does)");
  flags.Bool("raw-writes", &o.raw_writes,
             "replicated: one Write RPC per write (KvClientOptions::batching = kOnePerCall) "
             "instead of the client's default coalescing into WriteMany calls");
  flags.Int("calls-in-flight", &o.calls_in_flight,
            "replicated: KvClientOptions::max_calls_in_flight (coalesced calls at once)");
  flags.Bool("raise-format", &o.raise_format,
             "replicated: first commit this binary's state-machine format on the group "
             "(as mailctl raft set-format after an upgrade; turns on client sessions)");
  flags.Bool("sessions", &o.sessions,
             "replicated: use client sessions when the group offers them "
             "(false: KvClientOptions::sessions = kRecordPerWrite, one record per write)");
  flags.String("run", &o.run, "tag in the keys (default: the start time)");
  int apply_entries = 20000;
  int apply_batch = 32;
  flags.Int("entries", &apply_entries, "apply: entries applied each way");
  flags.Int("apply-batch", &apply_batch, "apply: entries per ApplyBatch");
  int writes_per_entry = 1;
  flags.Int("writes-per-entry", &writes_per_entry,
            "apply: writes per entry (> 1: a WriteMany batch entry); --sessions picks the ids");
  // Accept "--seconds 10" as well as "--seconds 10s".
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 1; i + 1 < args.size(); ++i) {
    if ((args[i] == "--seconds" || args[i] == "--warmup") &&
        args[i + 1].find_first_not_of("0123456789.") == std::string::npos) {
      args[i + 1] += "s";
    }
  }
  std::vector<const char*> cargs;
  for (const std::string& a : args) cargs.push_back(a.c_str());
  absl::Status parsed = flags.Parse(static_cast<int>(cargs.size()), cargs.data());
  if (!parsed.ok() || flags.help_requested() || flags.Positional().size() != 1 || o.clients < 1 ||
      o.value_bytes < 0) {
    std::cerr << (parsed.ok() ? "usage: raft_bench replicated|rocksdb|etcd|apply [flags]"
                              : parsed.ToString())
              << "\n"
              << flags.Usage();
    return 2;
  }
  const std::string mode = flags.Positional()[0];
  if (mode == "apply") {
    return RunApplyBench(o, apply_entries, apply_batch, std::max(1, writes_per_entry));
  }
  std::unique_ptr<rocksdb::DB> db;
  absl::StatusOr<PutFactory> factory = absl::InvalidArgumentError("unknown mode " + mode);
  if (mode == "replicated") factory = ReplicatedTarget(o);
  if (mode == "rocksdb") factory = RocksDbTarget(o, &db);
  if (mode == "etcd") factory = EtcdTarget(o);
  if (!factory.ok()) {
    std::cerr << factory.status() << "\n";
    return 2;
  }
  absl::StatusOr<Result> result = RunWriters(o, *factory);
  if (!result.ok()) {
    std::cerr << result.status() << "\n";
    return 1;
  }
  Print(mode, o, *result);
  return result->writes > 0 ? 0 : 1;
}
