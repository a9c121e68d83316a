// mailstore_fill: fills ONE folder of a STOPPED mailstored replica's store
// with N messages, offline, in minutes instead of the ~50 minutes a million
// DeliverBatch calls take through the service. The writes are the
// service's own: MailStore::CreateMailbox and MailStore::DeliverBatch (the
// same key and record builders, ingest, postings, attribute index, change
// feed), planned concurrently from --threads callers so that RunCombined
// groups them into large writes, applied by kv::StateMachine directly
// (a LocalStore-like store over the replica's RocksDB) instead of through Raft.
// The messages are mailstore_load --mode=large's (bench/mailstore/bodies.h).
//
// Usage (bench/mailstore/run --fastfill N does all of it):
//   1. start mailstored once as a ONE-replica group (it bootstraps its Raft
//      membership), stop it;
//   2. mailstore_fill --db=DATA_DIR/replica/db --messages=N [--size=B]
//      [--threads=T] [--tenant=bench-t] [--prefix=m]
//   3. start mailstored again: the state machine is ahead of the Raft log,
//      which the replica opens as it opens a snapshot restored at that index
//      (libs/kv/raft_log_store.cc), and it serves the filled folder;
//   4. (run --replicas 3) the other replicas join that group empty and
//      catch up by the leader's snapshot transfer (bench/mailstore/README.md).
// Only into a group of ONE voter (the others cannot apply writes they never
// saw in the log: they must come after, by snapshot) and only on a stopped
// replica (RocksDB's lock refuses a running one).
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/mailstore/bench_args.h"
#include "bench/mailstore/bodies.h"
#include "libs/base/status.h"
#include "libs/kv/engine.h"
#include "libs/store/local_store.h"
#include "services/mailstore/mail_store.h"

namespace {

namespace v1 = mailgrid::mailstore::v1;
using mailgrid::bench::FlagValue;

struct Args {
  std::string db, tenant = "bench-t", prefix = "m";
  int messages = 0, size = 1024, threads = 8, cache_mb = 1024;
  bool deferred_index = true;  // as mailstored's --deferred-index default
};

// The fill opens the store with a bigger block cache (--cache-mb). Why: with
// kv::Engine's default 128 MB cache (64 shards, memtables charged to it) the
// full filter block of a large SST does not stay cached, and from ~50,000
// messages on every Get re-read and checksummed ~1 MB (the fill fell from
// ~400 to ~100 msg/s). Only the fill's cache differs: the RocksDB files it
// leaves are the same, and the served replica opens them with its own options.
absl::StatusOr<std::unique_ptr<mailgrid::store::LocalStore>> OpenFillStore(
    const std::string& dir, size_t cache_mb) {
  mailgrid::kv::EngineOptions o;
  o.block_cache_bytes = cache_mb << 20;
  return mailgrid::store::LocalStore::Open(dir, o);
}

bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    auto val = [&](const char* name) { return FlagValue(argv[i], name); };
    if (auto v = val("db")) a->db = v;
    else if (auto v = val("tenant")) a->tenant = v;
    else if (auto v = val("prefix")) a->prefix = v;
    else if (auto v = val("messages")) a->messages = std::atoi(v);
    else if (auto v = val("size")) a->size = std::atoi(v);
    else if (auto v = val("threads")) a->threads = std::atoi(v);
    else if (auto v = val("cache-mb")) a->cache_mb = std::atoi(v);
    else if (auto v = val("deferred-index")) a->deferred_index = std::string(v) != "false";
    else return false;
  }
  return !a->db.empty() && a->messages > 0 && a->threads > 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!ParseArgs(argc, argv, &a)) {
    std::fprintf(stderr,
                 "usage: mailstore_fill --db=DATA_DIR/replica/db --messages=N [--size=B] "
                 "[--threads=T] [--cache-mb=M] [--tenant=T] [--prefix=P] [--deferred-index=false]  (the replica must be stopped)\n");
    return 2;
  }
  auto local = OpenFillStore(a.db, static_cast<size_t>(a.cache_mb));
  if (!local.ok()) {
    std::fprintf(stderr, "open %s: %s\n", a.db.c_str(), local.status().ToString().c_str());
    return 2;
  }
  mailgrid::mailstore::StoreOptions so;
  // The served folder has the layout mailstored makes: per-term UID blocks
  // written by the indexer (run here during and after the fill), or with
  // --deferred-index=false one posting per term per message.
  so.deferred_index = a.deferred_index;
  mailgrid::mailstore::MailStore store(local->get(), so);
  std::string big = a.prefix + "-large";
  v1::CreateMailboxRequest c;
  c.set_mailbox_id(big);
  c.set_tenant_id(a.tenant);
  c.set_owner_id("owner-" + big);
  c.set_kind(mailgrid::common::v1::MAILBOX_KIND_USER);
  if (auto m = store.CreateMailbox(c); !m.ok()) {
    std::fprintf(stderr, "create: %s\n", m.status().ToString().c_str());
    return 2;
  }
  std::atomic<int> next{0}, errors{0};
  std::atomic<uint64_t> raw_bytes{0};
  const int step = std::max(1, a.messages / 20);
  absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int t = 0; t < a.threads; ++t) {
    threads.emplace_back([&, t] {
      for (;;) {
        int n = next++;
        if (n >= a.messages) return;
        if (n % step == 0 && n > 0)
          std::fprintf(stderr, "filled %d (%.0f s)\n", n, absl::ToDoubleSeconds(absl::Now() - start));
        std::mt19937_64 rng(5000 + n);
        v1::DeliverBatchRequest d =
            mailgrid::bench::LargeDelivery(rng, a.prefix, big, n, a.messages, t, a.size, false);
        auto r = store.DeliverBatch(d);
        if (!r.ok() || r->results(0).status() != v1::DELIVERY_STATUS_DELIVERED) {
          if (errors++ < 5)
            std::fprintf(stderr, "message %d: %s\n", n,
                         r.ok() ? r->results(0).detail().c_str() : r.status().ToString().c_str());
          continue;
        }
        raw_bytes += d.message().size() + d.recipients(0).prepend_headers().size();
      }
    });
  }
  store.StartIndexer([] { return true; });
  for (auto& th : threads) th.join();
  store.StopIndexer();
  for (;;) {  // what the thread had not reached yet
    auto n = store.IndexPending();
    if (!n.ok()) {
      std::fprintf(stderr, "index: %s\n", n.status().ToString().c_str());
      return 1;
    }
    if (*n == 0) break;
  }
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("{\"large_folder\":%d,\"size\":%d,\"threads\":%d,\"fill_seconds\":%.1f,"
              "\"fill_messages_per_s\":%.1f,\"raw_bytes\":%llu,\"errors\":%d,\"offline\":true,"
              "\"deferred_index\":%s}\n",
              a.messages, a.size, a.threads, secs, a.messages / secs,
              static_cast<unsigned long long>(raw_bytes.load()), errors.load(),
              a.deferred_index ? "true" : "false");
  return errors == 0 ? 0 : 1;
}
