// Directory benchmark (issue 5), numbers printed, never asserted. Against a
// running tenantd group (bench/directory/run starts 3 replicas and a
// tenant with a VERIFIED domain, then calls this):
//   1. ImportUsers: --users mailboxes in a 6-level department tree
//      (4 children per level: 4,096 leaves), in CSV chunks of --chunk rows;
//   2. --groups groups, each naming one department (with sub-departments);
//   3. Resolve of random user addresses from --clients threads for
//      --seconds, round-robin over the replicas: p50/p99/p999 and calls/s
//      (phase "floor", not run by default: the same load of health Checks,
//      the gRPC round trip alone, to tell tenantd's work from transport);
//   4. expansion of a group of about --big-group members (a department
//      whose subtree holds that many): cold (after a directory change) and
//      warm (cached), with max_recipients 10,000.
// Usage: directory_bench --tenantd A,B,C --admin-token T --service-token S
//          --domain D [--users 100000] [--groups 1000] [--clients 4] [--seconds 10]
//          [--phases import,groups,floor,resolve,expand]
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

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "mailgrid/tenant/v1/directory.grpc.pb.h"

namespace {

namespace v1 = mailgrid::tenant::v1;
using Clock = std::chrono::steady_clock;

struct Flags {
  std::vector<std::string> tenantd;
  std::string admin, service, domain;
  int users = 100000, groups = 1000, clients = 4, chunk = 10000, big_group = 5000;
  double seconds = 10;
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

// --clients threads call `one(call_number, rng)` for --seconds, round-robin
// over the replicas; prints calls/s and latency percentiles.
void Hammer(const Flags& f, const char* what,
            const std::function<bool(size_t, std::mt19937&)>& one) {
  std::atomic<bool> stop{false};
  std::vector<std::vector<double>> lat(f.clients);
  std::atomic<int64_t> errors{0};
  std::vector<std::thread> pool;
  const std::string load_before = LoadAverage();
  auto start = Clock::now();
  for (int t = 0; t < f.clients; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937 rng(t + 1);
      size_t n = t;
      while (!stop.load(std::memory_order_relaxed)) {
        auto a = Clock::now();
        bool ok = one(n++, rng);
        lat[t].push_back(Ms(Clock::now() - a));
        if (!ok) ++errors;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(f.seconds));
  stop = true;
  for (auto& th : pool) th.join();
  double elapsed = Ms(Clock::now() - start) / 1000;
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  size_t calls = all.size();
  std::printf("%s, %d client threads, %zu replicas: %zu calls in %.1f s = %.0f/s; "
              "p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms; errors %lld; loadavg before [%s] after [%s]\n",
              what, f.clients, f.tenantd.size(), calls, elapsed, calls / elapsed, Pct(all, 0.5),
              Pct(all, 0.99), Pct(all, 0.999), static_cast<long long>(errors.load()),
              load_before.c_str(), LoadAverage().c_str());
  std::fflush(stdout);
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
    else if (k == "--clients") (void)absl::SimpleAtoi(v, &f.clients);
    else if (k == "--chunk") (void)absl::SimpleAtoi(v, &f.chunk);
    else if (k == "--big-group") (void)absl::SimpleAtoi(v, &f.big_group);
    else if (k == "--seconds") (void)absl::SimpleAtod(v, &f.seconds);
    else if (k == "--phases") f.phases = v;
  }
  if (f.tenantd.empty() || f.admin.empty() || f.service.empty() || f.domain.empty()) {
    std::fprintf(stderr, "usage: directory_bench --tenantd A,B,C --admin-token T --service-token S "
                         "--domain D [--users N] [--groups N] [--clients N] [--seconds S]\n");
    return 2;
  }
  Client c(f);

  // 1. Import.
  if (f.Has("import")) {
  std::printf("import: %d users, 6-level tree (4,096 leaf departments), chunks of %d rows\n",
              f.users, f.chunk);
  auto t0 = Clock::now();
  double first_chunk_ms = 0;
  for (int start = 0; start < f.users; start += f.chunk) {
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
    if (start == 0) first_chunk_ms = ms;
    if (!s.ok() || resp.errors_size() > 0) {
      std::fprintf(stderr, "import failed at row %d: %s %s\n", start, s.error_message().c_str(),
                   resp.errors_size() ? resp.errors(0).message().c_str() : "");
      return 1;
    }
    std::printf("  rows %6d-%6d: %8.0f ms (%.0f rows/s)\n", start, end - 1, ms, (end - start) / ms * 1000);
    std::fflush(stdout);
  }
  double import_s = Ms(Clock::now() - t0) / 1000;
  std::printf("import total: %.1f s, %.0f rows/s; first %d-row chunk %.1f s\n", import_s,
              f.users / import_s, std::min(f.chunk, f.users), first_chunk_ms / 1000);
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
  }

  // 3. Resolve of user addresses; "floor": the same load as health Checks
  // (no work in tenantd), the gRPC round trip's ceiling on this machine.
  if (f.Has("floor")) {
    std::vector<std::unique_ptr<grpc::health::v1::Health::Stub>> health;
    for (const auto& a : f.tenantd)
      health.push_back(grpc::health::v1::Health::NewStub(
          grpc::CreateChannel(a, grpc::InsecureChannelCredentials())));
    Hammer(f, "floor: grpc.health.v1.Health/Check", [&](size_t n, std::mt19937&) {
      grpc::health::v1::HealthCheckRequest req;
      grpc::health::v1::HealthCheckResponse resp;
      return health[n % health.size()]->Check(Ctx(f.service, 10).get(), req, &resp).ok();
    });
  }
  if (f.Has("resolve")) {
    std::uniform_int_distribution<int> pick(0, f.users - 1);
    Hammer(f, "resolve (user address)", [&](size_t n, std::mt19937& rng) {
      v1::ResolveRequest req;
      req.set_address(Address(pick(rng), f.domain));
      v1::ResolveResponse resp;
      grpc::Status s = c.Stub(n).Resolve(Ctx(f.service, 10).get(), req, &resp);
      return s.ok() && resp.recipients_size() == 1;
    });
  }
  if (!f.Has("expand")) return 0;

  // 4. Expansion of a big group: a department subtree of ~big_group users.
  int level = 1;
  while (level < 6 && f.users / std::pow(4, level) > f.big_group) ++level;
  std::vector<std::string> parts = absl::StrSplit(PathOf(0), '/');
  parts.resize(level);
  v1::ResolveDepartmentPathRequest rp;
  rp.set_path(absl::StrJoin(parts, "/"));
  v1::Department d;
  if (!c.Stub(0).ResolveDepartmentPath(Ctx(f.admin).get(), rp, &d).ok()) return 1;
  v1::CreateGroupRequest big;
  big.set_name("big");
  big.set_address(absl::StrCat("big@", f.domain));
  big.set_posting_policy(v1::POSTING_POLICY_ANYONE);
  big.add_members()->set_kind(v1::MEMBER_KIND_DEPARTMENT);
  big.mutable_members(0)->set_id(d.department_id());
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
  for (int round = 0; round < 5; ++round) {
    // A directory change makes every cached answer of the tenant stale.
    v1::RenameDepartmentRequest rn;
    rn.set_department_id(d.department_id());
    rn.set_new_name(absl::StrCat(parts.back(), round % 2 ? "" : "x"));
    v1::Department out;
    (void)c.Stub(0).RenameDepartment(Ctx(f.admin).get(), rn, &out);
    for (int k = 0; k < 2; ++k) {
      v1::ResolveRequest req;
      req.set_address(big.address());
      req.set_max_recipients(10000);
      v1::ResolveResponse resp;
      auto a = Clock::now();
      grpc::Status s = c.Stub(0).Resolve(Ctx(f.service, 60).get(), req, &resp);
      (k == 0 ? cold : warm).push_back(Ms(Clock::now() - a));
      if (!s.ok()) std::fprintf(stderr, "big group: %s\n", s.error_message().c_str());
      members = resp.recipients_size();
    }
  }
  std::printf("group expansion (%s, %d members): cold median %.1f ms (max %.1f), cached median %.2f ms\n",
              rp.path().c_str(), members, Pct(cold, 0.5), Pct(cold, 1.0), Pct(warm, 0.5));
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
