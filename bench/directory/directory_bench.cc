// Directory benchmark (issue 5), numbers printed, never asserted. Against a
// running tenantd group (bench/directory/run starts 3 replicas and a
// tenant with a VERIFIED domain, then calls this):
//   1. ImportUsers: --users mailboxes in a 6-level department tree
//      (4 children per level: 4,096 leaves), in CSV chunks of --chunk rows;
//   2. --groups groups, each naming one department (with sub-departments);
//   3. Resolve of random user addresses, --inflight calls in flight over
//      --channels connections per replica (callback API: the client is not
//      the bottleneck), for --seconds: p50/p99/p999 and calls/s
//      (phase "floor", not run by default: the same load of health Checks,
//      the gRPC round trip alone, to tell tenantd's work from transport);
//   4. ResolveMany (phase "many", not run by default): --batch random
//      user addresses per call, at each --inflight;
//   4a. ResolveStream (phase "stream", not run by default): the same
//      random user addresses, one per request, through relayd's stream
//      client (relay::ResolveStreams) over --streams streams (relayd's
//      default, one, unless given; a list such as 1,3 measures each),
//      with batches or not (--stream-batches 1,0: each), at each
//      --inflight (every shape in turn at one --inflight before the
//      next: a same-run A/B), with the requests per stream message (above
//      1 when a tenantd that takes batches gets requests queued behind a
//      write); run it after "resolve" (which waits for the warm-up);
//   4b. GetPrincipal by address (phase "principal", not run by default):
//      what identityd asks at every login, several reads per call;
//   5. expansion of a group of about --big-group members (department
//      subtrees holding that many): cold (after a directory change: a
//      department renamed; then after a member disabled/enabled) and
//      indexed, with max_recipients 10,000.
// Usage: directory_bench --tenantd A,B,C --admin-token T --service-token S
//          --domain D [--users 100000] [--groups 1000] [--inflight 64] [--channels 2] [--seconds 10]
//          [--phases import,groups,floor,resolve,stream,many,principal,expand] [--from ROW]
//          [--batch N] [--streams N,...] [--stream-batches 1,0]
//          [--warm-seconds 60] [--spread N] [--server-pids P1,P2,P3]
// --inflight 1,8,64 runs floor and resolve once per value (the curve).
// --from ROW: the import starts at row ROW (a run cut short goes on).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "mailgrid/tenant/v1/directory.grpc.pb.h"
#include "services/relay/grpc_backend.h"

namespace {

namespace v1 = mailgrid::tenant::v1;
using Clock = std::chrono::steady_clock;

struct Flags {
  std::vector<std::string> tenantd;
  std::string admin, service, domain;
  int users = 100000, groups = 1000, chunk = 10000, big_group = 5000, from = 0;
  // Addresses per ResolveMany call (phase "many").
  int batch = 10;
  // Longest the resolve phase waits for the replicas' index warm-up.
  double warm_seconds = 60;
  // Load shape of the floor/resolve phases: calls in flight (a list such as
  // "1,8,64" measures each in turn: the latency/throughput curve), channels
  // per replica.
  std::vector<int> inflight = {64};
  int channels = 2;
  // The floor/resolve/many load goes to the first --spread replicas only
  // (0: all): one replica's process against three sharing the cores.
  int spread = 0;
  // The servers' pids (run passes the replicas'): each load line then says
  // the CPU the servers and this client spent per call, which is what
  // splits a floor between gRPC, tenantd and the load generator.
  std::vector<int> server_pids;
  // How the load generator calls: "callback" (stub->async(), gRPC's callback
  // threads) or "cq" (generated async stubs on --cq-threads completion
  // queues, one thread each, a completed call starting the next: gRPC's own
  // benchmark client's shape). Both send the same calls.
  std::string client = "callback";
  int cq_threads = 2;
  // Phase "stream": how many ResolveStream streams (empty: relayd's
  // default, ResolveStreamsOptions), and with batches (1) or without (0);
  // each combination is measured.
  std::vector<int> streams;
  std::vector<int> stream_batches = {1};
  // Extra integer channel arguments for the load channels ("name=value,..."),
  // e.g. grpc.enable_retries=0.
  std::vector<std::pair<std::string, int>> channel_args;
  double seconds = 10;
  bool deadlock_detection = false;
  // Which steps run ("import,groups,resolve,expand"): with `run --hold` a
  // loaded tenant can be measured again without importing it again.
  std::string phases = "import,groups,resolve,expand";
  bool Has(std::string_view p) const { return absl::StrContains(phases, absl::string_view(p.data(), p.size())); }
};

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Pct(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(std::ceil(p * v.size())) - 1);
  return v[i];
}

// The department path of user i: 6 levels, 4 branches each.
std::string PathOf(int i) {
  std::string p;
  int leaf = i % 4096;
  for (int level = 5; level >= 0; --level) {
    int branch = (leaf >> (2 * level)) & 3;
    absl::StrAppend(&p, p.empty() ? "" : "/", "L", 6 - level, "-", branch);
  }
  return p;
}

std::string Address(int i, const std::string& domain) { return absl::StrCat("user", i, "@", domain); }

class Client {
 public:
  explicit Client(const Flags& f) {
    for (const auto& a : f.tenantd)
      stubs_.push_back(v1::DirectoryService::NewStub(
          grpc::CreateChannel(a, grpc::InsecureChannelCredentials())));
  }
  v1::DirectoryService::Stub& Stub(size_t i) { return *stubs_[i % stubs_.size()]; }
  size_t size() const { return stubs_.size(); }

 private:
  std::vector<std::unique_ptr<v1::DirectoryService::Stub>> stubs_;
};

std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token, double timeout_s = 600) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->AddMetadata("authorization", "Bearer " + token);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  return ctx;
}

// CPU seconds (user + system) a process has used so far; 0 if unreadable.
double ProcessCpuSeconds(int pid) {
  std::FILE* f = std::fopen(absl::StrCat("/proc/", pid, "/stat").c_str(), "r");
  if (f == nullptr) return 0;
  char buf[1024] = {0};
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  std::string_view line(buf, n);
  size_t paren = line.rfind(')');  // the command name may hold spaces
  if (paren == std::string_view::npos) return 0;
  std::vector<std::string> fields =
      absl::StrSplit(absl::string_view(line.data() + paren + 2, line.size() - paren - 2), ' ');
  // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
  long long ut = 0, st = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &ut) || !absl::SimpleAtoi(fields[12], &st))
    return 0;
  return static_cast<double>(ut + st) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double ServersCpuSeconds(const Flags& f) {
  double sum = 0;
  for (int pid : f.server_pids) sum += ProcessCpuSeconds(pid);
  return sum;
}

std::string LoadAverage() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  char buf[128] = {0};
  if (f != nullptr) {
    if (std::fgets(buf, sizeof buf, f) == nullptr) buf[0] = 0;
    std::fclose(f);
  }
  std::string s(buf);
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// Closed-loop load with many calls in flight: --inflight calls at all
// times, spread over --channels channels per replica (each its own TCP
// connection), driven by gRPC's callback API so no client thread blocks per
// call; a completed call starts the next one from its callback. (One
// blocking call per client thread measured the client, not tenantd: 4
// threads x ~1.5 ms is ~2.7k/s whatever the server does.) `start(slot,
// rng, channel, done)` issues one call; done(ok) must be called once.
using Done = std::function<void(bool)>;
using Starter = std::function<void(size_t channel, std::mt19937& rng, Done done)>;

// Returns calls/s.
double Hammer(const Flags& f, int inflight, size_t channels, const char* what,
              const Starter& start) {
  struct Slot {
    std::mt19937 rng;
    std::vector<double> lat;
    int64_t errors = 0;
    Clock::time_point at;
    size_t channel = 0;
  };
  std::atomic<bool> stop{false};
  std::atomic<int> running{0};
  std::vector<Slot> slots(static_cast<size_t>(inflight));
  std::function<void(size_t)> issue;
  issue = [&](size_t i) {
    Slot& s = slots[i];
    s.at = Clock::now();
    start(s.channel, s.rng, [&, i](bool ok) {
      Slot& t = slots[i];
      t.lat.push_back(Ms(Clock::now() - t.at));
      if (!ok) ++t.errors;
      if (stop.load(std::memory_order_relaxed)) {
        running.fetch_sub(1);
        return;
      }
      issue(i);
    });
  };
  const std::string load_before = LoadAverage();
  const double server_cpu0 = ServersCpuSeconds(f), client_cpu0 = ProcessCpuSeconds(getpid());
  auto t0 = Clock::now();
  for (size_t i = 0; i < slots.size(); ++i) {
    slots[i].rng.seed(static_cast<uint32_t>(i + 1));
    slots[i].channel = i % channels;
    running.fetch_add(1);
    issue(i);
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(f.seconds));
  stop = true;
  double elapsed = Ms(Clock::now() - t0) / 1000;
  const double server_cpu = ServersCpuSeconds(f) - server_cpu0;
  const double client_cpu = ProcessCpuSeconds(getpid()) - client_cpu0;
  while (running.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::vector<double> all;
  int64_t errors = 0;
  for (auto& s : slots) {
    all.insert(all.end(), s.lat.begin(), s.lat.end());
    errors += s.errors;
  }
  size_t calls = all.size();
  std::printf("%s, %d in flight over %zu channels (%d per replica): %zu calls in %.1f s = %.0f/s; "
              "p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms; errors %lld; loadavg before [%s] after [%s]\n",
              what, inflight, channels, f.channels, calls, elapsed, calls / elapsed,
              Pct(all, 0.5), Pct(all, 0.99), Pct(all, 0.999), static_cast<long long>(errors),
              load_before.c_str(), LoadAverage().c_str());
  if (calls > 0)
    std::printf("  cpu per call: servers %.3f ms (%zu pids), client %.3f ms\n",
                f.server_pids.empty() ? 0.0 : 1000 * server_cpu / static_cast<double>(calls),
                f.server_pids.size(), 1000 * client_cpu / static_cast<double>(calls));
  std::fflush(stdout);
  return calls / elapsed;
}

// One expansion of the big group through replica 0, timed; returns the
// milliseconds and sets `members` to the recipients it resolved to.
double TimedGroupResolve(Client& c, const Flags& f, const std::string& address, int* members) {
  v1::ResolveRequest req;
  req.set_address(address);
  req.set_max_recipients(10000);
  v1::ResolveResponse resp;
  auto a = Clock::now();
  grpc::Status s = c.Stub(0).Resolve(Ctx(f.service, 60).get(), req, &resp);
  double ms = Ms(Clock::now() - a);
  if (!s.ok()) std::fprintf(stderr, "big group: %s\n", s.error_message().c_str());
  *members = resp.recipients_size();
  return ms;
}

// One call's state, freed by its completion callback.
template <typename Req, typename Resp>
struct AsyncCall {
  grpc::ClientContext ctx;
  Req req;
  Resp resp;
};

// The "cq" client: calls on generated async stubs, completions taken by
// one thread per completion queue, each running the call's continuation.
struct CqCall {
  virtual ~CqCall() = default;
  virtual void Complete() = 0;
};

template <typename Req, typename Resp>
struct CqUnary final : CqCall {
  grpc::ClientContext ctx;
  Req req;
  Resp resp;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Resp>> reader;
  std::function<void(CqUnary*)> finish;
  void Complete() override {
    finish(this);
    delete this;
  }
};

class CqPool {
 public:
  explicit CqPool(int threads) {
    for (int i = 0; i < std::max(1, threads); ++i) {
      cqs_.push_back(std::make_unique<grpc::CompletionQueue>());
      grpc::CompletionQueue* cq = cqs_.back().get();
      threads_.emplace_back([cq] {
        void* tag = nullptr;
        bool ok = false;
        while (cq->Next(&tag, &ok)) static_cast<CqCall*>(tag)->Complete();
      });
    }
  }
  ~CqPool() {
    for (auto& cq : cqs_) cq->Shutdown();
    for (auto& t : threads_) t.join();
  }
  grpc::CompletionQueue* For(size_t channel) { return cqs_[channel % cqs_.size()].get(); }

 private:
  std::vector<std::unique_ptr<grpc::CompletionQueue>> cqs_;
  std::vector<std::thread> threads_;
};

// "1,8,64": the integers of a comma-separated list that are at least `min`.
std::vector<int> IntList(absl::string_view v, int min) {
  std::vector<int> out;
  for (absl::string_view n : absl::StrSplit(v, ',')) {
    int x = 0;
    if (absl::SimpleAtoi(n, &x) && x >= min) out.push_back(x);
  }
  return out;
}

int Main(int argc, char** argv) {
  Flags f;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--tenantd") f.tenantd = absl::StrSplit(v, ',');
    else if (k == "--admin-token") f.admin = v;
    else if (k == "--service-token") f.service = v;
    else if (k == "--domain") f.domain = v;
    else if (k == "--users") (void)absl::SimpleAtoi(v, &f.users);
    else if (k == "--groups") (void)absl::SimpleAtoi(v, &f.groups);
    else if (k == "--inflight") f.inflight = IntList(v, 1);
    else if (k == "--channels") (void)absl::SimpleAtoi(v, &f.channels);
    else if (k == "--spread") (void)absl::SimpleAtoi(v, &f.spread);
    else if (k == "--server-pids") {
      for (absl::string_view n : absl::StrSplit(v, ',')) {
        int x = 0;
        if (absl::SimpleAtoi(n, &x) && x > 0) f.server_pids.push_back(x);
      }
    }
    else if (k == "--chunk") (void)absl::SimpleAtoi(v, &f.chunk);
    else if (k == "--from") (void)absl::SimpleAtoi(v, &f.from);
    else if (k == "--big-group") (void)absl::SimpleAtoi(v, &f.big_group);
    else if (k == "--batch") (void)absl::SimpleAtoi(v, &f.batch);
    else if (k == "--seconds") (void)absl::SimpleAtod(v, &f.seconds);
    else if (k == "--warm-seconds") (void)absl::SimpleAtod(v, &f.warm_seconds);
    else if (k == "--phases") f.phases = v;
    else if (k == "--client") f.client = v;
    else if (k == "--cq-threads") (void)absl::SimpleAtoi(v, &f.cq_threads);
    else if (k == "--streams") f.streams = IntList(v, 1);
    else if (k == "--stream-batches") f.stream_batches = IntList(v, 0);
    else if (k == "--channel-args") {
      for (absl::string_view kv : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        std::pair<std::string, std::string> p = absl::StrSplit(kv, '=');
        int x = 0;
        if (absl::SimpleAtoi(p.second, &x)) f.channel_args.emplace_back(p.first, x);
      }
    }
    else if (k == "--deadlock-detection") f.deadlock_detection = v == "1";
  }
  // As every daemon (rpc::RunService): Debian's Abseil is built with mutex
  // deadlock detection on, a global graph update on every gRPC lock.
  if (!f.deadlock_detection) absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (f.tenantd.empty() || f.admin.empty() || f.service.empty() || f.domain.empty()) {
    std::fprintf(stderr, "usage: directory_bench --tenantd A,B,C --admin-token T --service-token S "
                         "--domain D [--users N] [--groups N] [--inflight N] [--channels N] [--seconds S]\n");
    return 2;
  }
  Client c(f);

  // 1. Import.
  if (f.Has("import")) {
  std::printf("import: %d users, 6-level tree (4,096 leaf departments), chunks of %d rows\n",
              f.users, f.chunk);
  auto t0 = Clock::now();
  double first_chunk_ms = 0;
  for (int start = f.from; start < f.users; start += f.chunk) {
    int end = std::min(f.users, start + f.chunk);
    std::string csv = "address,name,department,password\n";
    for (int i = start; i < end; ++i)
      absl::StrAppend(&csv, Address(i, f.domain), ",User ", i, ",", PathOf(i), ",bench-pass-", i, "\n");
    v1::ImportUsersRequest req;
    req.set_csv(csv);
    req.set_skip_welcome_mail(true);
    v1::ImportUsersResponse resp;
    auto t = Clock::now();
    grpc::Status s = c.Stub(start / f.chunk).ImportUsers(Ctx(f.admin).get(), req, &resp);
    double ms = Ms(Clock::now() - t);
    if (start == f.from) first_chunk_ms = ms;
    if (!s.ok() || resp.errors_size() > 0) {
      std::fprintf(stderr, "import failed at row %d: %s %s\n", start, s.error_message().c_str(),
                   resp.errors_size() ? resp.errors(0).message().c_str() : "");
      return 1;
    }
    std::printf("  rows %6d-%6d: %8.0f ms (%.0f rows/s)\n", start, end - 1, ms, (end - start) / ms * 1000);
    std::fflush(stdout);
  }
  double import_s = Ms(Clock::now() - t0) / 1000;
  std::printf("import total: %.1f s, %.0f rows/s; first %d-row chunk %.1f s; loadavg [%s]\n",
              import_s, (f.users - f.from) / import_s, std::min(f.chunk, f.users),
              first_chunk_ms / 1000, LoadAverage().c_str());
  std::fflush(stdout);
  }

  // 2. Groups: each names one department (levels 3..6, round robin).
  if (f.Has("groups")) {
  auto t0 = Clock::now();
  for (int g = 0; g < f.groups; ++g) {
    int depth = 3 + g % 4;
    std::string path = PathOf(g * 37 % std::min(f.users, 4096));
    std::vector<std::string> parts = absl::StrSplit(path, '/');
    parts.resize(depth);
    v1::ResolveDepartmentPathRequest rp;
    rp.set_path(absl::StrJoin(parts, "/"));
    v1::Department d;
    grpc::Status s = c.Stub(g).ResolveDepartmentPath(Ctx(f.admin).get(), rp, &d);
    if (!s.ok()) {
      std::fprintf(stderr, "dept %s: %s\n", rp.path().c_str(), s.error_message().c_str());
      return 1;
    }
    v1::CreateGroupRequest req;
    req.set_name(absl::StrCat("group ", g));
    req.set_address(absl::StrCat("group", g, "@", f.domain));
    req.set_posting_policy(v1::POSTING_POLICY_ANYONE);
    auto* m = req.add_members();
    m->set_kind(v1::MEMBER_KIND_DEPARTMENT);
    m->set_id(d.department_id());
    v1::Group out;
    s = c.Stub(g).CreateGroup(Ctx(f.admin).get(), req, &out);
    if (!s.ok()) {
      std::fprintf(stderr, "group %d: %s\n", g, s.error_message().c_str());
      return 1;
    }
  }
  std::printf("groups: %d created in %.1f s\n", f.groups, Ms(Clock::now() - t0) / 1000);
  std::fflush(stdout);
  }

  // 3. Resolve of user addresses; "floor": the same load as health Checks
  // (no work in tenantd), the gRPC round trip's ceiling on this machine.
  std::vector<std::shared_ptr<grpc::Channel>> chans;
  const size_t spread = f.spread > 0 ? std::min<size_t>(f.spread, f.tenantd.size()) : f.tenantd.size();
  for (size_t r = 0; r < spread; ++r) {
    const std::string& a = f.tenantd[r];
    for (int k = 0; k < f.channels; ++k) {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // its own connection
      args.SetInt("mailgrid.bench.channel", k);
      for (const auto& [name, value] : f.channel_args) args.SetInt(name, value);
      chans.push_back(grpc::CreateCustomChannel(a, grpc::InsecureChannelCredentials(), args));
    }
  }
  auto deadline = [] { return std::chrono::system_clock::now() + std::chrono::seconds(10); };
  std::unique_ptr<CqPool> cq_pool;
  if (f.client == "cq") cq_pool = std::make_unique<CqPool>(f.cq_threads);
  if (f.Has("floor")) {
    std::vector<std::unique_ptr<grpc::health::v1::Health::Stub>> health;
    for (auto& ch : chans) health.push_back(grpc::health::v1::Health::NewStub(ch));
    auto floor_cq = [&](size_t ch, std::mt19937&, Done done) {
      using Call = CqUnary<grpc::health::v1::HealthCheckRequest, grpc::health::v1::HealthCheckResponse>;
      auto* call = new Call;
      call->ctx.AddMetadata("authorization", "Bearer " + f.service);
      call->ctx.set_deadline(deadline());
      call->finish = [done](Call* c) { done(c->status.ok()); };
      call->reader = health[ch]->AsyncCheck(&call->ctx, call->req, cq_pool->For(ch));
      call->reader->Finish(&call->resp, &call->status, static_cast<CqCall*>(call));
    };
    for (int inflight : f.inflight)
    if (cq_pool) Hammer(f, inflight, chans.size(), "floor: grpc.health.v1.Health/Check (cq client)", floor_cq);
    else Hammer(f, inflight, chans.size(), "floor: grpc.health.v1.Health/Check",
           [&](size_t ch, std::mt19937&, Done done) {
             using Call = AsyncCall<grpc::health::v1::HealthCheckRequest,
                                    grpc::health::v1::HealthCheckResponse>;
             auto* call = new Call;
             call->ctx.AddMetadata("authorization", "Bearer " + f.service);
             call->ctx.set_deadline(deadline());
             health[ch]->async()->Check(&call->ctx, &call->req, &call->resp,
                                        [call, done](grpc::Status s) {
                                          delete call;
                                          done(s.ok());
                                        });
           });
  }
  if (f.Has("resolve")) {
    std::vector<std::unique_ptr<v1::DirectoryService::Stub>> dir;
    for (auto& ch : chans) dir.push_back(v1::DirectoryService::NewStub(ch));
    std::uniform_int_distribution<int> pick(0, f.users - 1);
    auto resolve = [&](size_t ch, std::mt19937& rng, Done done) {
      using Call = AsyncCall<v1::ResolveRequest, v1::ResolveResponse>;
      auto* call = new Call;
      call->ctx.AddMetadata("authorization", "Bearer " + f.service);
      call->ctx.set_deadline(deadline());
      call->req.set_address(Address(pick(rng), f.domain));
      dir[ch]->async()->Resolve(&call->ctx, &call->req, &call->resp, [call, done](grpc::Status s) {
        bool ok = s.ok() && call->resp.recipients_size() == 1;
        delete call;
        done(ok);
      });
    };
    auto resolve_cq = [&](size_t ch, std::mt19937& rng, Done done) {
      using Call = CqUnary<v1::ResolveRequest, v1::ResolveResponse>;
      auto* call = new Call;
      call->ctx.AddMetadata("authorization", "Bearer " + f.service);
      call->ctx.set_deadline(deadline());
      call->req.set_address(Address(pick(rng), f.domain));
      call->finish = [done](Call* c) { done(c->status.ok() && c->resp.recipients_size() == 1); };
      call->reader = dir[ch]->AsyncResolve(&call->ctx, call->req, cq_pool->For(ch));
      call->reader->Finish(&call->resp, &call->status, static_cast<CqCall*>(call));
    };
    const Starter resolve_with = cq_pool ? Starter(resolve_cq) : Starter(resolve);
    // The tenant's first Resolve calls on each replica start its warm-up
    // (every user answered in advance); until it is done they are computed.
    // Warm-up of 100k users on 3 replicas sharing 2 cores takes tens of
    // seconds: measuring during it measured the warm-up. Windows of 3 s
    // until the rate stops rising (within 10% of the best twice running),
    // at most --warm-seconds.
    Flags first = f;
    first.seconds = 3;
    double best = 0;
    int flat = 0;
    for (double spent = 0; spent < f.warm_seconds && flat < 2; spent += first.seconds) {
      double rate = Hammer(first, f.inflight.back(), chans.size(),
                           "resolve, first calls (index warming)", resolve_with);
      flat = rate < 1.1 * best ? flat + 1 : 0;
      best = std::max(best, rate);
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));
    for (int inflight : f.inflight)
      Hammer(f, inflight, chans.size(),
             cq_pool ? "resolve (user address, cq client)" : "resolve (user address)", resolve_with);
  }
  if (f.Has("stream")) {
    // ResolveStream through relayd's own client (relay::ResolveStreams):
    // each shape (--streams x --stream-batches) its own client, stream i
    // on replica i % spread (over that replica's load channels in turn),
    // each request one user address with its own answer and latency;
    // --inflight requests outstanding across the streams. At each
    // --inflight every shape runs in turn (alternated, same run).
    const size_t per_replica = static_cast<size_t>(std::max(1, f.channels));
    auto channel = [&](size_t i) -> absl::StatusOr<std::shared_ptr<grpc::Channel>> {
      return chans[(i % spread) * per_replica + (i / spread) % per_replica];
    };
    auto authorization = [&]() -> absl::StatusOr<std::string> { return "Bearer " + f.service; };
    struct Shape {
      std::string what;
      std::unique_ptr<mailgrid::relay::ResolveStreams> streams;
    };
    std::vector<Shape> shapes;
    const int relayd_streams = static_cast<int>(mailgrid::relay::ResolveStreamsOptions{}.streams);
    const std::vector<int> counts =
        f.streams.empty() ? std::vector<int>{relayd_streams} : f.streams;
    for (int n : counts) {
      for (int batches : f.stream_batches) {
        mailgrid::relay::ResolveStreamsOptions o;
        o.streams = static_cast<size_t>(n);
        o.batches = batches != 0;
        shapes.push_back({absl::StrCat("resolve-stream (user address, ", n, " streams",
                                       o.batches ? "" : ", no batches", ")"),
                          std::make_unique<mailgrid::relay::ResolveStreams>(channel, authorization,
                                                                            chans.size(), o)});
      }
    }
    std::uniform_int_distribution<int> pick(0, f.users - 1);
    for (int inflight : f.inflight) {
      for (Shape& shape : shapes) {
        mailgrid::relay::ResolveStreams& streams = *shape.streams;
        auto stream = [&](size_t, std::mt19937& rng, Done done) {
          v1::ResolveRequest req;
          req.set_address(Address(pick(rng), f.domain));
          streams.Start(req, [done](absl::StatusOr<v1::ResolveResult> r) {
            done(r.ok() && r->response().recipients_size() == 1);
          });
        };
        const int64_t sent0 = streams.sent(), messages0 = streams.messages();
        Hammer(f, inflight, chans.size(), shape.what.c_str(), stream);
        const int64_t messages = streams.messages() - messages0;
        // Above 1 once tenantd takes batched requests (relayd's client
        // batches what queues behind a write in flight).
        if (messages > 0)
          std::printf("  requests per stream message: %.2f\n",
                      static_cast<double>(streams.sent() - sent0) / static_cast<double>(messages));
      }
    }
    for (const Shape& shape : shapes)
      std::printf("  %s: stream requests sent %lld, streams opened %lld\n", shape.what.c_str(),
                  static_cast<long long>(shape.streams->sent()),
                  static_cast<long long>(shape.streams->opened()));
  }
  if (f.Has("many")) {
    // ResolveMany: --batch random user addresses per call (relayd asking
    // for every recipient of a message at once). Each call's latency is
    // measured; addresses/s = calls/s x batch.
    std::vector<std::unique_ptr<v1::DirectoryService::Stub>> dir;
    for (auto& ch : chans) dir.push_back(v1::DirectoryService::NewStub(ch));
    std::uniform_int_distribution<int> pick(0, f.users - 1);
    const int batch = std::max(1, f.batch);
    auto many = [&](size_t ch, std::mt19937& rng, Done done) {
      using Call = AsyncCall<v1::ResolveManyRequest, v1::ResolveManyResponse>;
      auto* call = new Call;
      call->ctx.AddMetadata("authorization", "Bearer " + f.service);
      call->ctx.set_deadline(deadline());
      for (int i = 0; i < batch; ++i)
        call->req.add_requests()->set_address(Address(pick(rng), f.domain));
      dir[ch]->async()->ResolveMany(&call->ctx, &call->req, &call->resp,
                                    [call, batch, done](grpc::Status s) {
                                      bool ok = s.ok() && call->resp.results_size() == batch;
                                      for (const auto& r : call->resp.results())
                                        ok &= r.response().recipients_size() == 1;
                                      delete call;
                                      done(ok);
                                    });
    };
    std::printf("resolve-many: %d addresses per call (addresses/s = calls/s x %d)\n", batch, batch);
    for (int inflight : f.inflight)
      Hammer(f, inflight, chans.size(), absl::StrCat("resolve-many (", batch, " user addresses)").c_str(),
             many);
  }
  if (f.Has("principal")) {
    // GetPrincipal by address (identityd asks at every login): several
    // reads per call, so this is where per-read Raft rounds show.
    std::vector<std::unique_ptr<v1::DirectoryService::Stub>> dir;
    for (auto& ch : chans) dir.push_back(v1::DirectoryService::NewStub(ch));
    std::uniform_int_distribution<int> pick(0, f.users - 1);
    auto principal = [&](size_t ch, std::mt19937& rng, Done done) {
      using Call = AsyncCall<v1::GetPrincipalRequest, v1::Principal>;
      auto* call = new Call;
      call->ctx.AddMetadata("authorization", "Bearer " + f.service);
      call->ctx.set_deadline(deadline());
      call->req.set_address(Address(pick(rng), f.domain));
      dir[ch]->async()->GetPrincipal(&call->ctx, &call->req, &call->resp,
                                     [call, done](grpc::Status s) {
                                       bool ok = s.ok() && call->resp.user().address() ==
                                                               call->req.address();
                                       delete call;
                                       done(ok);
                                     });
    };
    for (int inflight : f.inflight)
      Hammer(f, inflight, chans.size(), "principal (GetPrincipal by address)", principal);
  }
  if (!f.Has("expand")) return 0;

  // 4. Expansion of a big group of about --big-group members: whole
  // department subtrees, the largest that fit first (a level-l subtree
  // holds users / 4^l), each from its own top-level branch so none overlap.
  auto subtree = [&](int level) { return f.users / std::pow(4, level); };
  int level = 1;
  while (level < 6 && subtree(level) > f.big_group) ++level;
  v1::CreateGroupRequest big;
  big.set_name("big");
  big.set_address(absl::StrCat("big@", f.domain));
  big.set_posting_policy(v1::POSTING_POLICY_ANYONE);
  double remaining = f.big_group;
  std::string first_dept, first_name;
  for (int l = level, branch = 0; l <= 6 && branch < 4 && remaining >= subtree(6); ++l, ++branch) {
    int k = std::min<int>(static_cast<int>(remaining / subtree(l)), static_cast<int>(std::pow(4, l - 1)));
    for (int j = 0; j < k; ++j) {
      int leaf = (branch << 10) | (j << (2 * (6 - l)));
      std::vector<std::string> parts = absl::StrSplit(PathOf(leaf), '/');
      parts.resize(l);
      v1::ResolveDepartmentPathRequest rp;
      rp.set_path(absl::StrJoin(parts, "/"));
      v1::Department d;
      grpc::Status s = c.Stub(0).ResolveDepartmentPath(Ctx(f.admin).get(), rp, &d);
      if (s.error_code() == grpc::StatusCode::NOT_FOUND && first_dept.empty()) {
        // A run on kept data cut short after renaming it below.
        rp.set_path(rp.path() + "x");
        s = c.Stub(0).ResolveDepartmentPath(Ctx(f.admin).get(), rp, &d);
      }
      if (!s.ok()) {
        std::fprintf(stderr, "dept %s: %s\n", rp.path().c_str(), s.error_message().c_str());
        return 1;
      }
      if (first_dept.empty()) {
        first_dept = d.department_id();
        first_name = parts.back();
      }
      auto* m = big.add_members();
      m->set_kind(v1::MEMBER_KIND_DEPARTMENT);
      m->set_id(d.department_id());
    }
    remaining -= k * subtree(l);
  }
  v1::Group bg;
  grpc::Status made = c.Stub(0).CreateGroup(Ctx(f.admin).get(), big, &bg);
  if (made.error_code() == grpc::StatusCode::ALREADY_EXISTS) {  // a second run on a held tenant
    v1::GetGroupRequest g;
    g.set_address(big.address());
    made = c.Stub(0).GetGroup(Ctx(f.admin).get(), g, &bg);
  }
  if (!made.ok()) {
    std::fprintf(stderr, "big group: %s\n", made.error_message().c_str());
    return 1;
  }
  std::vector<double> cold, warm;
  int members = 0;
  // An even number of renames: the department ends with its own name
  // (a later run on kept data finds it).
  for (int round = 0; round < 6; ++round) {
    // A directory change makes every cached answer of the tenant stale.
    v1::RenameDepartmentRequest rn;
    rn.set_department_id(first_dept);
    rn.set_new_name(absl::StrCat(first_name, round % 2 ? "" : "x"));
    v1::Department out;
    (void)c.Stub(0).RenameDepartment(Ctx(f.admin).get(), rn, &out);
    // Let every replica's index thread see the change (its period is 25 ms).
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    for (int k = 0; k < 2; ++k)
      (k == 0 ? cold : warm).push_back(TimedGroupResolve(c, f, big.address(), &members));
  }
  std::printf("group expansion (%d department subtrees, %d members): cold (after a directory "
              "change) median %.1f ms (max %.1f), indexed median %.2f ms; loadavg [%s]\n",
              big.members_size(), members, Pct(cold, 0.5), Pct(cold, 1.0), Pct(warm, 0.5),
              LoadAverage().c_str());
  std::fflush(stdout);
  // The same after a change of a member (disabled, then enabled again):
  // the department memberships themselves moved.
  std::string member_id;
  {
    v1::ResolveRequest req;
    req.set_address(Address(0, f.domain));
    v1::ResolveResponse resp;
    if (c.Stub(0).Resolve(Ctx(f.service, 60).get(), req, &resp).ok() && resp.recipients_size() == 1)
      member_id = resp.recipients(0).user_id();
  }
  std::vector<double> cold_member;
  for (int round = 0; round < 6 && !member_id.empty(); ++round) {
    v1::User u;
    if (round % 2 == 0) {
      v1::DisableUserRequest r;
      r.set_user_id(member_id);
      (void)c.Stub(0).DisableUser(Ctx(f.admin).get(), r, &u);
    } else {
      v1::EnableUserRequest r;
      r.set_user_id(member_id);
      (void)c.Stub(0).EnableUser(Ctx(f.admin).get(), r, &u);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    int expanded = 0;
    cold_member.push_back(TimedGroupResolve(c, f, big.address(), &expanded));
  }
  std::printf("group expansion, cold after a member's change (disable/enable, 300 ms before): "
              "median %.1f ms (max %.1f); loadavg [%s]\n",
              Pct(cold_member, 0.5), Pct(cold_member, 1.0), LoadAverage().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
