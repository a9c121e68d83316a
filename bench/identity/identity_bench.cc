// identityd benchmarks (issue 6), printed as numbers, never asserted:
//   1. raw argon2id: crypto_pwhash_str_verify at the service's parameters on
//      N threads at once (the floor the service cannot beat);
//   2. Login through gRPC (AuthService on a loopback port, LocalStore, a real
//      redis-server, an in-memory directory) with N concurrent clients, and
//      the ratio login/s : raw verify/s;
//   3. access-token verification per core (libs/auth TokenVerifier), with
//      distinct tokens (every one a real Ed25519 check) and with the cache;
//   4. CheckSasl with an app password: latency percentiles.
// Usage: identity_bench [--clients 2] [--seconds 10] [--mem-kib 19456] [--ops 2]
#include <sodium.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "libs/auth/token.h"
#include "libs/redis/testing/redis_server.h"
#include "libs/store/local_store.h"
#include "services/identity/core.h"
#include "services/identity/services.h"
#include "services/identity/testing_fake_directory.h"

namespace mailgrid::identity {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

template <typename F>
double RunFor(int threads, double seconds, F body, std::atomic<int64_t>* count) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> pool;
  auto start = Clock::now();
  for (int i = 0; i < threads; ++i)
    pool.emplace_back([&, i] {
      while (!stop) {
        body(i);
        ++*count;
      }
    });
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : pool) t.join();
  return Seconds(Clock::now() - start);
}

int Main(int argc, char** argv) {
  int clients = 2;
  double seconds = 10;
  HashParams params;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    int64_t v = 0;
    if (!absl::SimpleAtoi(value, &v)) continue;
    if (flag == "--clients") clients = static_cast<int>(v);
    if (flag == "--seconds") seconds = static_cast<double>(v);
    if (flag == "--mem-kib") params.mem_kib = static_cast<uint64_t>(v);
    if (flag == "--ops") params.ops_limit = static_cast<uint64_t>(v);
  }
  if (sodium_init() < 0) return 1;
  std::printf(
      "machine: %u hardware threads; argon2id m=%llu KiB t=%llu p=1; %d clients; %.0f s per "
      "phase\n",
      std::thread::hardware_concurrency(), static_cast<unsigned long long>(params.mem_kib),
      static_cast<unsigned long long>(params.ops_limit), clients, seconds);

  // 1. Raw argon2id.
  PasswordHasher hasher(params, clients);
  const std::string password = "violet-kettle-orbit-42";
  std::string phc = *hasher.Hash(password);
  std::atomic<int64_t> raw_count{0};
  double raw_elapsed = RunFor(
      clients, seconds,
      [&](int) {
        if (crypto_pwhash_str_verify(phc.c_str(), password.data(), password.size()) != 0)
          std::abort();
      },
      &raw_count);
  double raw_rate = static_cast<double>(raw_count) / raw_elapsed;
  std::printf("raw argon2id verify, %d threads: %.1f/s (%.1f ms each per thread)\n", clients,
              raw_rate, 1000.0 * clients / raw_rate);

  // 2. Login through gRPC.
  auto redis_server = redis::testing::RedisServer::Start();
  if (!redis_server.ok()) {
    std::fprintf(stderr, "redis-server: %s\n",
                 std::string(redis_server.status().message()).c_str());
    return 1;
  }
  auto redis_options = (*redis_server)->ClientOptions();
  redis_options.pool_size = 16;
  redis::Client redis(redis_options);
  auto dir =
      std::filesystem::temp_directory_path() / ("identity_bench_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  auto local = store::LocalStore::Open(dir.string());
  if (!local.ok()) return 1;
  IdentityStore store(local->get());
  testing::FakeDirectory directory;
  directory.Add("t1", "u-ann", "ann@example.com");
  auto signer = *auth::TokenSigner::Generate("bench-key");
  auth::TokenVerifier verifier("mailgrid");
  (void)verifier.AddPublicPem("bench-key", *signer->PublicPem());
  SessionManager sessions(&redis, signer.get(), SessionOptions{});
  ThrottleOptions to;
  Throttler throttle(&redis, to);
  Core core(&store, &directory, &hasher, &sessions, &throttle, &redis, CommonPasswords::Builtin(),
            &verifier, CoreOptions{});
  Caller service;
  service.kind = Caller::Kind::kService;
  service.claims.roles = {"service"};
  v1::SetInitialPasswordRequest init;
  auto* e = init.add_entries();
  e->set_tenant_id("t1");
  e->set_user_id("u-ann");
  e->set_password(password);
  if (!core.SetInitialPassword(service, init).ok()) return 1;

  auto auth_service = MakeAuthService(&core);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(auth_service.get());
  auto server = builder.BuildAndStart();
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  auto stub = v1::AuthService::NewStub(channel);

  std::atomic<int64_t> logins{0}, failures{0};
  double login_elapsed = RunFor(
      clients, seconds,
      [&](int i) {
        grpc::ClientContext ctx;
        v1::LoginRequest r;
        r.set_address("ann@example.com");
        r.set_password(password);
        r.mutable_client()->set_ip("10.0.0." + std::to_string(i + 1));
        v1::LoginResult out;
        if (!stub->Login(&ctx, r, &out).ok() || !out.has_session()) ++failures;
      },
      &logins);
  double login_rate = static_cast<double>(logins) / login_elapsed;
  std::printf("Login over gRPC, %d clients: %.1f/s (%lld failed); ratio to raw argon2id: %.3f\n",
              clients, login_rate, static_cast<long long>(failures.load()), login_rate / raw_rate);

  // 3. Token verification.
  std::vector<std::string> tokens;
  for (int i = 0; i < 20000; ++i) {
    auth::Claims c;
    c.issuer = "mailgrid";
    c.subject = "u-" + std::to_string(i);
    c.tenant_id = "t1";
    c.roles = {"user"};
    c.mailbox_ids = {"mbx-1"};
    c.scope = "full";
    c.session_id = "s" + std::to_string(i);
    c.issued_at = absl::Now();
    c.expires_at = absl::Now() + absl::Minutes(15);
    tokens.push_back(*signer->Sign(c));
  }
  auth::TokenVerifier fresh("mailgrid", 1000000);
  (void)fresh.AddPublicPem("bench-key", *signer->PublicPem());
  auto start = Clock::now();
  for (const auto& t : tokens)
    if (!fresh.Verify(t).ok()) std::abort();
  double distinct_rate = tokens.size() / Seconds(Clock::now() - start);
  start = Clock::now();
  for (int round = 0; round < 5; ++round)
    for (const auto& t : tokens)
      if (!fresh.Verify(t).ok()) std::abort();
  double cached_rate = 5.0 * tokens.size() / Seconds(Clock::now() - start);
  std::printf(
      "token verification, 1 thread: %.0f/s distinct tokens (Ed25519 each), %.0f/s cached\n",
      distinct_rate, cached_rate);

  // 4. CheckSasl with an app password.
  v1::LoginRequest lr;
  lr.set_address("ann@example.com");
  lr.set_password(password);
  Caller anon;
  auto session = core.Login(anon, lr);
  auto user = core.AuthenticateBearer(session->session().access_token(), "127.0.0.1");
  v1::CreateAppPasswordRequest ar;
  ar.set_name("bench");
  auto app = core.CreateAppPassword(*user, ar);
  if (!app.ok()) return 1;
  std::vector<double> latencies;
  for (int i = 0; i < 500; ++i) {
    v1::CheckSaslRequest r;
    r.set_mechanism(v1::SASL_MECHANISM_PLAIN);
    r.set_authcid("ann@example.com");
    r.set_password(app->password());
    r.set_protocol(common::v1::PROTOCOL_IMAP);
    r.mutable_client()->set_ip("10.1.0.1");
    auto t0 = Clock::now();
    auto out = core.CheckSasl(service, r);
    latencies.push_back(1000 * Seconds(Clock::now() - t0));
    if (!out.ok()) std::abort();
  }
  std::sort(latencies.begin(), latencies.end());
  std::printf(
      "CheckSasl (app password, in process, 500 calls): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
      latencies[latencies.size() / 2], latencies[latencies.size() * 99 / 100], latencies.back());
  server->Shutdown();
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace mailgrid::identity

int main(int argc, char** argv) { return mailgrid::identity::Main(argc, argv); }
