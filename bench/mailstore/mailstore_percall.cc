// mailstore_percall: server CPU per call of what an IMAP session asks
// mailstored (issue 10's "0.25 ms of mailstored leader CPU per IMAP
// command"). --clients mailboxes of --box messages each; then, per phase,
// --calls calls spread over --clients threads (each on its own mailbox), and
// for every --pids process the CPU (utime + stime from /proc) per call:
//   select_2calls  FolderStatus(claim_recent, include_uids) + ChangesSince
//                  (what accessd does for SELECT and its flags-cache refresh)
//   select_1call   SelectFolder with the same inputs (one call, one read)
//   folder_status  FolderStatus(claim_recent, include_uids) alone
//   changes_since  ChangesSince from the folder's MODSEQ (nothing changed)
//   fetch_body     Fetch of one message's raw bytes
//   store_flags    StoreFlags +/-\Flagged on one message (a Raft write)
//   store_noop     StoreFlags +\Seen on a message that has it (IMAP's
//                  steady-state STORE: nothing to write)
//   deliver_5k     one-recipient DeliverBatch of a distinct 5 KB message
//   append_5k      Append of a distinct 5 KB message
// --phases=a,b runs only those (after the setup); --perf=FILE records the
// first --pids process with `perf record -F 499 --call-graph dwarf` during
// the phases run (not the setup).
// Prints one JSON line per phase. bench/mailstore/run --percall runs it.
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/mailstore/bench_args.h"
#include "bench/mailstore/bench_client.h"
#include "bench/mailstore/bodies.h"
#include "libs/auth/service_token.h"
#include "libs/mailstore_client/mailstore_client.h"

namespace {

namespace ms = mailgrid::mailstore_client;
namespace v1 = mailgrid::mailstore::v1;
using mailgrid::bench::ConnectMailstore;
using mailgrid::bench::FlagValue;

struct Args {
  std::string mailstored, key, tenant = "bench-t", prefix = "pc";
  int clients = 10, calls = 2000, box = 50;
  std::vector<int> pids;
  std::vector<std::string> phases;  // empty: all
  std::string perf;                 // perf.data path ("" = no perf)
  bool Wants(const std::string& phase) const {
    return phases.empty() || std::find(phases.begin(), phases.end(), phase) != phases.end();
  }
};

extern "C" char** environ;

// `perf record` of `pid` until StopPerf (SIGINT, as perf expects).
pid_t StartPerf(const std::string& out, int pid) {
  std::vector<std::string> argv_s = {"perf", "record", "-q", "-F", "499", "--call-graph", "dwarf",
                                     "-o", out, "-p", std::to_string(pid)};
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t child = 0;
  if (posix_spawnp(&child, "perf", nullptr, nullptr, argv.data(), environ) != 0) return 0;
  sleep(1);  // let perf attach before the phase starts
  return child;
}

void StopPerf(pid_t child) {
  if (child <= 0) return;
  kill(child, SIGINT);
  int status = 0;
  waitpid(child, &status, 0);
}

double CpuSeconds(int pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/stat"));
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t close = all.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(all.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 0; i < 13 && rest >> field; ++i) {
    if (i == 11 || i == 12) ticks += std::stod(field);  // utime, stime
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::string LoadAverage() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

struct Box {
  std::string id;
  uint32_t uidvalidity = 0, last_uid = 0;
  uint64_t modseq = 0;
};

// Runs `one(box)` --calls times over --clients threads; prints the phase.
bool Phase(const Args& a, const std::string& name, std::vector<Box>& boxes,
           const std::function<absl::Status(Box&)>& one) {
  std::vector<double> cpu0;
  for (int pid : a.pids) cpu0.push_back(CpuSeconds(pid));
  std::string load = LoadAverage();
  std::atomic<int> next{0}, errors{0};
  std::mutex mu;
  std::vector<double> lat;
  absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int t = 0; t < a.clients; ++t) {
    threads.emplace_back([&, t] {
      std::vector<double> mine;
      while (next++ < a.calls) {
        absl::Time t0 = absl::Now();
        absl::Status s = one(boxes[t]);
        mine.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
        if (!s.ok() && errors++ < 3) std::fprintf(stderr, "%s: %s\n", name.c_str(), s.ToString().c_str());
      }
      std::lock_guard<std::mutex> l(mu);
      lat.insert(lat.end(), mine.begin(), mine.end());
    });
  }
  for (auto& th : threads) th.join();
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  std::sort(lat.begin(), lat.end());
  std::string cpu;
  for (size_t i = 0; i < a.pids.size(); ++i) {
    double ms_per_call = 1000 * (CpuSeconds(a.pids[i]) - cpu0[i]) / a.calls;
    absl::StrAppend(&cpu, i ? "," : "", absl::StrFormat("%.3f", ms_per_call));
  }
  std::printf("{\"phase\":\"%s\",\"calls\":%d,\"clients\":%d,\"calls_per_s\":%.0f,\"p50_ms\":%.3f,"
              "\"p99_ms\":%.3f,\"cpu_ms_per_call_by_pid\":[%s],\"load_average\":\"%s\",\"errors\":%d}\n",
              name.c_str(), a.calls, a.clients, a.calls / secs, lat[lat.size() / 2],
              lat[std::min(lat.size() - 1, lat.size() * 99 / 100)], cpu.c_str(), load.c_str(),
              errors.load());
  std::fflush(stdout);
  return errors == 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    auto val = [&](const char* name) { return FlagValue(argv[i], name); };
    if (auto v = val("mailstored")) a.mailstored = v;
    else if (auto v = val("signing-key")) a.key = v;
    else if (auto v = val("prefix")) a.prefix = v;
    else if (auto v = val("clients")) a.clients = std::atoi(v);
    else if (auto v = val("calls")) a.calls = std::atoi(v);
    else if (auto v = val("box")) a.box = std::atoi(v);
    else if (auto v = val("perf")) a.perf = v;
    else if (auto v = val("phases")) {
      for (absl::string_view p : absl::StrSplit(v, ',', absl::SkipEmpty())) a.phases.emplace_back(p);
    }
    else if (auto v = val("pids")) {
      for (absl::string_view p : absl::StrSplit(v, ',', absl::SkipEmpty())) a.pids.push_back(std::atoi(std::string(p).c_str()));
    } else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (a.mailstored.empty() || a.key.empty() || a.clients < 1 || a.calls < 1) {
    std::fprintf(stderr, "usage: mailstore_percall --mailstored=h:p,... --signing-key=PEM "
                         "[--clients=10] [--calls=2000] [--box=50] [--pids=LEADER,F1,F2]\n");
    return 2;
  }
  std::unique_ptr<ms::MailstoreClient> client = ConnectMailstore(a.mailstored, a.key, "accessd");
  if (client == nullptr) return 2;
  ms::MailstoreClient& c = *client;
  std::vector<Box> boxes(a.clients);
  for (int i = 0; i < a.clients; ++i) {
    Box& b = boxes[i];
    b.id = absl::StrCat(a.prefix, "-", i);
    v1::CreateMailboxRequest r;
    r.set_mailbox_id(b.id);
    r.set_tenant_id(a.tenant);
    r.set_owner_id("owner-" + b.id);
    r.set_kind(mailgrid::common::v1::MAILBOX_KIND_USER);
    if (auto s = c.CreateMailbox(0, r); !s.ok()) {
      std::fprintf(stderr, "create: %s\n", s.status().ToString().c_str());
      return 2;
    }
    std::mt19937_64 rng(i);
    for (int n = 0; n < a.box; ++n) {
      v1::AppendRequest ap;
      ap.set_mailbox_id(b.id);
      ap.mutable_folder()->set_name("INBOX");
      ap.set_message(mailgrid::bench::Body(rng, 4096, absl::StrCat("percall ", n), absl::StrCat(b.id, "-", n)));
      auto got = c.Append(0, ap);
      if (!got.ok()) {
        std::fprintf(stderr, "append: %s\n", got.status().ToString().c_str());
        return 2;
      }
      b.uidvalidity = got->uidvalidity();
      b.last_uid = got->uid();
      b.modseq = got->modseq();
    }
  }
  auto inbox = [](const Box& b, auto* req) {
    req->set_mailbox_id(b.id);
    req->mutable_folder()->set_name("INBOX");
  };
  auto changes = [&](const Box& b) {
    v1::ChangesSinceRequest cs;
    inbox(b, &cs);
    cs.set_modseq(b.modseq);
    cs.set_include_vanished(true);
    cs.set_uidvalidity(b.uidvalidity);
    return cs;
  };
  bool ok = true;
  pid_t perf = a.perf.empty() || a.pids.empty() ? 0 : StartPerf(a.perf, a.pids.front());
  // A phase not asked for (--phases) is skipped.
  auto phase = [&](const std::string& name, const std::function<absl::Status(Box&)>& one) {
    return !a.Wants(name) || Phase(a, name, boxes, one);
  };
  ok &= phase("select_2calls", [&](Box& b) -> absl::Status {
    v1::FolderStatusRequest fs;
    inbox(b, &fs);
    fs.set_claim_recent(true);
    fs.set_include_uids(true);
    auto st = c.FolderStatus(0, fs);
    if (!st.ok()) return st.status();
    auto ch = c.ChangesSince(0, changes(b));
    if (!ch.ok()) return ch.status();
    b.modseq = ch->highest_modseq();
    return absl::OkStatus();
  });
  ok &= phase("select_1call", [&](Box& b) -> absl::Status {
    v1::SelectFolderRequest sel;
    inbox(b, &sel);
    sel.set_claim_recent(true);
    sel.set_include_uids(true);
    *sel.mutable_changes() = changes(b);
    auto got = c.SelectFolder(0, sel);
    if (!got.ok()) return got.status();
    b.modseq = got->changes().highest_modseq();
    return absl::OkStatus();
  });
  ok &= phase("folder_status", [&](Box& b) -> absl::Status {
    v1::FolderStatusRequest fs;
    inbox(b, &fs);
    fs.set_claim_recent(true);
    fs.set_include_uids(true);
    return c.FolderStatus(0, fs).status();
  });
  ok &= phase("changes_since", [&](Box& b) -> absl::Status {
    return c.ChangesSince(0, changes(b)).status();
  });
  ok &= phase("fetch_body", [&](Box& b) -> absl::Status {
    v1::FetchRequest f;
    inbox(b, &f);
    auto* r = f.mutable_messages()->mutable_uids()->add_ranges();
    r->set_first(b.last_uid);
    r->set_last(b.last_uid);
    f.mutable_items()->set_raw(true);
    f.mutable_items()->set_flags(true);
    return c.FetchAll(0, f).status();
  });
  std::atomic<int> flips{0};
  ok &= phase("store_flags", [&](Box& b) -> absl::Status {
    v1::StoreFlagsRequest sf;
    inbox(b, &sf);
    auto* r = sf.mutable_messages()->mutable_uids()->add_ranges();
    r->set_first(b.last_uid);
    r->set_last(b.last_uid);
    sf.set_mode(flips++ % 2 ? v1::STORE_MODE_REMOVE : v1::STORE_MODE_ADD);
    sf.add_flags("\\Flagged");
    return c.StoreFlags(0, sf).status();
  });
  // An inbound delivery's mailstored call (relayd -> DeliverBatch, one
  // recipient, a 5 KB message with a prepended line), distinct bytes each:
  // the leader's CPU per delivery (ingest, postings, UID map, the write).
  std::atomic<int> delivered{0};
  ok &= phase("deliver_5k", [&](Box& b) -> absl::Status {
    int n = delivered++;
    std::mt19937_64 rng(100000 + n);
    v1::DeliverBatchRequest d;
    d.set_delivery_id(absl::StrCat(a.prefix, "-d", n));
    d.set_message(mailgrid::bench::Body(rng, 5120, absl::StrCat("inbound ", n), absl::StrCat(b.id, "-d", n)));
    auto* t = d.add_recipients();
    t->set_mailbox_id(b.id);
    t->set_prepend_headers(absl::StrCat("Delivered-To: ", b.id, "@example.com\r\n"));
    auto got = c.DeliverBatch(0, d);
    if (!got.ok()) return got.status();
    if (got->results(0).status() != v1::DELIVERY_STATUS_DELIVERED)
      return absl::InternalError(got->results(0).detail());
    return absl::OkStatus();
  });
  // IMAP APPEND's call: a distinct 5 KB message each.
  std::atomic<int> appended{0};
  ok &= phase("append_5k", [&](Box& b) -> absl::Status {
    int n = appended++;
    std::mt19937_64 rng(200000 + n);
    v1::AppendRequest ap;
    inbox(b, &ap);
    ap.set_message(
        mailgrid::bench::Body(rng, 5120, absl::StrCat("append ", n), absl::StrCat(b.id, "-a", n)));
    return c.Append(0, ap).status();
  });
  // STORE +FLAGS (\Seen) on a message that has it: IMAP's steady-state
  // STORE, which writes nothing.
  ok &= phase("store_noop", [&](Box& b) -> absl::Status {
    v1::StoreFlagsRequest sf;
    inbox(b, &sf);
    auto* r = sf.mutable_messages()->mutable_uids()->add_ranges();
    r->set_first(1);
    r->set_last(1);
    sf.set_mode(v1::STORE_MODE_ADD);
    sf.add_flags("\\Seen");
    return c.StoreFlags(0, sf).status();
  });
  StopPerf(perf);
  return ok ? 0 : 1;
}
