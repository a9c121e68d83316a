// GrpcBackend's submission rate limit against a real redis-server: both
// hourly counters in one script, the room it reports, the refusal and the
// counters' expiry (smtp_session.cc decides from the room where to count).
// Its Resolve against DirectoryService servers on loopback (real gRPC):
// over ResolveStream, each caller its own answer and error, requests in
// batches only to a tenantd that announces them; falling back
// to unary Resolve when tenantd has no ResolveStream or a replica's stream
// breaks, and the stream opened again.
#include "services/relay/grpc_backend.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <map>
#include <memory>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "libs/rpc/errors.h"
#include "libs/redis/client.h"
#include "libs/redis/testing/redis_server.h"

namespace mailgrid::relay {
namespace {

class GrpcBackendRateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = redis::testing::RedisServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  std::unique_ptr<GrpcBackend> Backend(int user_limit, int tenant_limit) {
    Options o;
    o.redis = server_->url();
    o.rate_user_per_hour = user_limit;
    o.rate_tenant_per_hour = tenant_limit;
    auto b = GrpcBackend::Create(o, "", "");
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? *std::move(b) : nullptr;
  }
  std::unique_ptr<redis::testing::RedisServer> server_;
};

TEST_F(GrpcBackendRateTest, CountsBothLimitsInOneCallAndReportsTheSmallerRoom) {
  std::unique_ptr<GrpcBackend> b = Backend(3, 5);
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(b->CountsSubmissions());
  // The user's limit is the tighter one.
  auto r = b->CountSubmissionRoom("t1", "u1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 2);
  r = b->CountSubmissionRoom("t1", "u1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 1);
  // Another user of the tenant: the tenant's counter (3 of 5) is tighter.
  r = b->CountSubmissionRoom("t1", "u2");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 2);
  r = b->CountSubmissionRoom("t1", "u1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 0);
  // Over the user's limit.
  r = b->CountSubmissionRoom("t1", "u1");
  EXPECT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
  EXPECT_TRUE(absl::IsResourceExhausted(b->CountSubmission("t1", "u1")));
  // The counters are the keys relayd always used, and they expire.
  redis::Client c(server_->ClientOptions());
  int64_t hour = absl::ToUnixSeconds(absl::Now()) / 3600;
  for (const std::string& key :
       {absl::StrCat("relay:rate:u:u1:", hour), absl::StrCat("relay:rate:t:t1:", hour)}) {
    auto v = c.Get(key);
    ASSERT_TRUE(v.ok()) << v.status();
    ASSERT_TRUE(v->has_value()) << key;
    auto ttl = c.Ttl(key);
    ASSERT_TRUE(ttl.ok()) << ttl.status();
    ASSERT_TRUE(ttl->has_value()) << key;
    EXPECT_GT(**ttl, absl::ZeroDuration()) << key;
    EXPECT_LE(**ttl, absl::Hours(2)) << key;
  }
  auto u1 = c.Get(absl::StrCat("relay:rate:u:u1:", hour));
  ASSERT_TRUE(u1.ok() && u1->has_value());
  EXPECT_EQ(**u1, "5");  // every call counted, the refused ones too
}

TEST_F(GrpcBackendRateTest, OneLimitOnlyAndNoLimit) {
  std::unique_ptr<GrpcBackend> tenant_only = Backend(0, 2);
  ASSERT_NE(tenant_only, nullptr);
  auto r = tenant_only->CountSubmissionRoom("t9", "u9");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 1);
  std::unique_ptr<GrpcBackend> none = Backend(0, 0);
  ASSERT_NE(none, nullptr);
  EXPECT_FALSE(none->CountsSubmissions());
  r = none->CountSubmissionRoom("t9", "u9");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, std::numeric_limits<int64_t>::max());
}

TEST_F(GrpcBackendRateTest, RedisDownFailsOpen) {
  std::unique_ptr<GrpcBackend> b = Backend(3, 5);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(server_->Stop().ok());
  auto r = b->CountSubmissionRoom("t1", "u1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 0);  // no room known: the session counts at MAIL next time
}

// A tenantd stand-in: answers every address with itself as the canonical
// address ("nobody..." NOT_FOUND ADDRESS_NOT_FOUND, with the reason as
// tenantd sends it), over unary Resolve and (when `streams`) ResolveStream,
// counting which carried what. With `batches` it announces batched
// requests as tenantd does and answers a batched message in one message
// when the caller asked for batches; without, it is an older tenantd (one
// request per message, and it counts messages that carry more).
class FakeDirectory final : public tenant::v1::DirectoryService::Service {
 public:
  static constexpr char kBatchesHeader[] = "mailgrid-resolve-batches";
  explicit FakeDirectory(bool streams, bool batches = false)
      : streams_(streams), batches_(batches) {}

  static tenant::v1::ResolveResult Answer(const tenant::v1::ResolveRequest& req) {
    tenant::v1::ResolveResult r;
    if (absl::StartsWith(req.address(), "nobody")) {
      common::v1::ErrorDetail d;
      d.set_reason("ADDRESS_NOT_FOUND");
      r.mutable_status()->set_code(static_cast<int>(grpc::StatusCode::NOT_FOUND));
      r.mutable_status()->set_message("no mailbox here for " + req.address());
      r.mutable_status()->add_details()->PackFrom(d);
      return r;
    }
    r.mutable_response()->set_canonical_address(req.address());
    r.mutable_response()->set_tenant_id("t1");
    return r;
  }

  grpc::Status Resolve(grpc::ServerContext*, const tenant::v1::ResolveRequest* req,
                       tenant::v1::ResolveResponse* resp) override {
    unary.fetch_add(1);
    tenant::v1::ResolveResult r = Answer(*req);
    if (r.status().code() != 0) {
      return grpc::Status(static_cast<grpc::StatusCode>(r.status().code()), r.status().message(),
                          r.status().SerializeAsString());
    }
    *resp = r.response();
    return grpc::Status::OK;
  }

  grpc::Status ResolveStream(grpc::ServerContext* ctx,
                             grpc::ServerReaderWriter<tenant::v1::ResolveStreamResponse,
                                                      tenant::v1::ResolveStreamRequest>* rw) override {
    if (!streams_) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "an older tenantd");
    opened.fetch_add(1);
    auto asked = ctx->client_metadata().find(kBatchesHeader);
    const bool asked_batches = asked != ctx->client_metadata().end() && asked->second == "1";
    if (asked_batches) asked_for_batches.fetch_add(1);
    const bool batch_answers = batches_ && asked_batches;
    if (batches_) {
      ctx->AddInitialMetadata(kBatchesHeader, "1");
      rw->SendInitialMetadata();
    }
    tenant::v1::ResolveStreamRequest req;
    while (rw->Read(&req)) {
      messages.fetch_add(1);
      streamed.fetch_add(1 + req.more_size());
      if (req.more_size() > 0) batched_messages.fetch_add(1);
      tenant::v1::ResolveStreamResponse resp;
      resp.set_id(req.id());
      *resp.mutable_result() = Answer(req.request());
      bool ok = true;
      for (const tenant::v1::ResolveStreamRequest& m : req.more()) {
        tenant::v1::ResolveStreamResponse* one = batch_answers ? resp.add_more() : &resp;
        if (!batch_answers) ok = ok && rw->Write(resp);
        one->set_id(m.id());
        *one->mutable_result() = Answer(m.request());
      }
      if (!ok || !rw->Write(resp)) break;
    }
    return ctx->IsCancelled() ? grpc::Status::CANCELLED : grpc::Status::OK;
  }

  std::atomic<int> unary{0}, streamed{0}, opened{0};
  std::atomic<int> asked_for_batches{0};  // streams opened with kBatchesHeader
  // Request messages read, and those of them that carried several requests.
  std::atomic<int> messages{0}, batched_messages{0};

 private:
  const bool streams_, batches_;
};

class GrpcBackendResolveTest : public ::testing::Test {
 protected:
  struct Replica {
    std::unique_ptr<FakeDirectory> service;
    std::unique_ptr<grpc::Server> server;
    std::string address;
  };
  static std::unique_ptr<Replica> StartReplica(bool streams, bool batches = false) {
    auto r = std::make_unique<Replica>();
    r->service = std::make_unique<FakeDirectory>(streams, batches);
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(r->service.get());
    r->server = b.BuildAndStart();
    r->address = absl::StrCat("127.0.0.1:", port);
    return r;
  }
  static std::unique_ptr<GrpcBackend> Backend(const std::vector<std::string>& tenantd) {
    Options o;
    o.tenantd = tenantd;
    o.rpc_timeout = absl::Seconds(10);
    auto b = GrpcBackend::Create(o, "", "");
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? *std::move(b) : nullptr;
  }
  // `n` Resolve calls from each of `threads` threads, every answer checked
  // against its own request.
  static void ResolveFromThreads(GrpcBackend& b, int threads, int n, const std::string& tag) {
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        for (int i = 0; i < n; ++i) {
          tenant::v1::ResolveRequest req;
          req.set_address(absl::StrCat(i % 10 == 9 ? "nobody" : "user", t, "-", i, tag, "@acme.test"));
          absl::StatusOr<tenant::v1::ResolveResponse> r = b.Resolve(req);
          if (i % 10 == 9) {
            EXPECT_TRUE(absl::IsNotFound(r.status())) << r.status();
            EXPECT_EQ(rpc::ReasonOf(r.status()), "ADDRESS_NOT_FOUND");
            EXPECT_TRUE(absl::StrContains(r.status().message(), req.address())) << r.status();
          } else {
            ASSERT_TRUE(r.ok()) << r.status();
            EXPECT_EQ(r->canonical_address(), req.address());
          }
        }
      });
    }
    for (auto& th : ts) th.join();
  }
  // `n` requests started at once on `streams` ("nobody…" every tenth);
  // waits for every answer: address -> canonical address or error message.
  static std::map<std::string, std::string> StartAtOnce(ResolveStreams& streams, int n) {
    absl::Mutex mu;
    std::map<std::string, std::string> answers;
    for (int i = 0; i < n; ++i) {
      tenant::v1::ResolveRequest req;
      req.set_address(absl::StrCat(i % 10 == 9 ? "nobody" : "user", i, "@acme.test"));
      streams.Start(req, [&, address = req.address()](absl::StatusOr<tenant::v1::ResolveResult> a) {
        std::string got = !a.ok() ? a.status().ToString()
                          : a->status().code() != 0 ? a->status().message()
                                                    : a->response().canonical_address();
        absl::MutexLock lock(&mu);
        answers[address] = got;
      });
    }
    struct AllIn {
      const std::map<std::string, std::string>* answers;
      size_t n;
      bool Done() const { return answers->size() == n; }
    } all_in{&answers, static_cast<size_t>(n)};
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&all_in, &AllIn::Done));
    return answers;
  }
  // Every answer of StartAtOnce is its own request's.
  static void ExpectOwnAnswers(const std::map<std::string, std::string>& answers) {
    for (const auto& [address, got] : answers) {
      if (absl::StartsWith(address, "nobody")) {
        EXPECT_EQ(got, "no mailbox here for " + address);
      } else {
        EXPECT_EQ(got, address);
      }
    }
  }
  static ResolveStreams::ChannelFn ChannelsTo(const std::vector<Replica*>& replicas) {
    return [replicas](size_t i) -> absl::StatusOr<std::shared_ptr<grpc::Channel>> {
      return grpc::CreateChannel(replicas[i % replicas.size()]->address,
                                 grpc::InsecureChannelCredentials());
    };
  }
};

TEST_F(GrpcBackendResolveTest, ResolveGoesOverTheStreamEachCallerItsOwnAnswer) {
  std::unique_ptr<Replica> a = StartReplica(true), b = StartReplica(true);
  std::unique_ptr<GrpcBackend> backend = Backend({a->address, b->address});
  ASSERT_NE(backend, nullptr);
  ResolveFromThreads(*backend, 8, 100, "");
  EXPECT_EQ(a->service->unary.load() + b->service->unary.load(), 0);
  EXPECT_EQ(a->service->streamed.load() + b->service->streamed.load(), 800);
  // One stream shared by every caller, on one of the replicas.
  EXPECT_EQ(a->service->opened.load() + b->service->opened.load(), 1);
  EXPECT_EQ(std::max(a->service->streamed.load(), b->service->streamed.load()), 800);
  // These replicas do not announce batches: one request per message.
  EXPECT_EQ(a->service->batched_messages.load() + b->service->batched_messages.load(), 0);
  backend.reset();  // cancels its streams and waits for them
  for (Replica* r : {a.get(), b.get()}) r->server->Shutdown(absl::ToChronoTime(absl::Now()));
}

TEST_F(GrpcBackendResolveTest, RequestsGoInBatchesOnceTenantdTakesThemEachCallerItsOwnAnswer) {
  std::unique_ptr<Replica> r = StartReplica(true, /*batches=*/true);
  auto streams = std::make_unique<ResolveStreams>(ChannelsTo({r.get()}), nullptr, 1,
                                                  ResolveStreamsOptions{});
  tenant::v1::ResolveRequest first;
  first.set_address("first@acme.test");
  // The first answer comes after tenantd's initial metadata (batches taken).
  ASSERT_TRUE(streams->Resolve(first, absl::Now() + absl::Seconds(10)).ok());
  // Many callers at once: requests queue behind the write in flight and go
  // out together; every caller still gets its own answer.
  constexpr int kCalls = 500;
  ExpectOwnAnswers(StartAtOnce(*streams, kCalls));
  EXPECT_EQ(r->service->streamed.load(), kCalls + 1);
  EXPECT_EQ(r->service->asked_for_batches.load(), 1);
  EXPECT_GT(r->service->batched_messages.load(), 0);
  EXPECT_LT(r->service->messages.load(), kCalls + 1);
  EXPECT_EQ(streams->messages(), r->service->messages.load());  // the client's own count
  streams.reset();
  r->server->Shutdown(absl::ToChronoTime(absl::Now()));
}

TEST_F(GrpcBackendResolveTest, WithoutBatchesEveryRequestIsAMessageOfItsOwn) {
  std::unique_ptr<Replica> r = StartReplica(true, /*batches=*/true);
  ResolveStreamsOptions o;
  o.batches = false;
  auto streams = std::make_unique<ResolveStreams>(ChannelsTo({r.get()}), nullptr, 1, o);
  constexpr int kCalls = 300;
  ExpectOwnAnswers(StartAtOnce(*streams, kCalls));
  // Neither asked for batched answers nor sent batched requests, although
  // this tenantd announces it takes them.
  EXPECT_EQ(r->service->asked_for_batches.load(), 0);
  EXPECT_EQ(r->service->batched_messages.load(), 0);
  EXPECT_EQ(r->service->messages.load(), kCalls);
  EXPECT_EQ(streams->messages(), kCalls);
  streams.reset();
  r->server->Shutdown(absl::ToChronoTime(absl::Now()));
}

TEST_F(GrpcBackendResolveTest, StreamsOpenFromTheFirstReplicaOnRoundRobin) {
  std::unique_ptr<Replica> a = StartReplica(true), b = StartReplica(true), c = StartReplica(true);
  ResolveStreamsOptions o;
  o.streams = 2;
  o.first_replica = 2;  // c, then a
  auto streams = std::make_unique<ResolveStreams>(ChannelsTo({a.get(), b.get(), c.get()}), nullptr,
                                                  3, o);
  ExpectOwnAnswers(StartAtOnce(*streams, 100));
  EXPECT_EQ(c->service->opened.load(), 1);
  EXPECT_EQ(a->service->opened.load(), 1);
  EXPECT_EQ(b->service->opened.load(), 0);
  EXPECT_EQ(a->service->streamed.load() + c->service->streamed.load(), 100);
  EXPECT_GT(a->service->streamed.load(), 0);
  EXPECT_GT(c->service->streamed.load(), 0);
  streams.reset();
  for (Replica* r : {a.get(), b.get(), c.get()}) r->server->Shutdown(absl::ToChronoTime(absl::Now()));
}

TEST_F(GrpcBackendResolveTest, OlderTenantdWithoutTheStreamGetsUnaryResolve) {
  std::unique_ptr<Replica> old = StartReplica(false);
  std::unique_ptr<GrpcBackend> backend = Backend({old->address});
  ASSERT_NE(backend, nullptr);
  ResolveFromThreads(*backend, 4, 50, "");
  EXPECT_EQ(old->service->streamed.load(), 0);
  EXPECT_EQ(old->service->unary.load(), 200);  // every answer, none lost
  backend.reset();
  old->server->Shutdown(absl::ToChronoTime(absl::Now()));
}

TEST_F(GrpcBackendResolveTest, BrokenStreamFallsBackThenReopensOnAnotherReplica) {
  std::unique_ptr<Replica> a = StartReplica(true), b = StartReplica(true);
  std::unique_ptr<GrpcBackend> backend = Backend({a->address, b->address});
  ASSERT_NE(backend, nullptr);
  ResolveFromThreads(*backend, 4, 20, "-before");
  // The stream opened on a replica picked at random: that one goes away.
  ASSERT_EQ(a->service->opened.load() + b->service->opened.load(), 1);
  if (b->service->opened.load() == 1) std::swap(a, b);
  // Replica a goes away with its stream: every call still gets its answer
  // (unary, through the next replica, while the slot waits to reopen).
  a->server->Shutdown(absl::ToChronoTime(absl::Now()));
  const int unary_before = b->service->unary.load();
  ResolveFromThreads(*backend, 4, 20, "-during");
  EXPECT_GT(b->service->unary.load(), unary_before);
  // After the pause, the broken slot's stream is opened on b.
  absl::SleepFor(ResolveStreams::kReopenAfter + absl::Milliseconds(200));
  const int streamed_before = b->service->streamed.load(), unary_after = b->service->unary.load();
  ResolveFromThreads(*backend, 4, 20, "-after");
  EXPECT_EQ(b->service->opened.load(), 1);
  EXPECT_EQ(b->service->streamed.load() - streamed_before, 80);
  EXPECT_EQ(b->service->unary.load(), unary_after);
  backend.reset();
  b->server->Shutdown(absl::ToChronoTime(absl::Now()));
}

}  // namespace
}  // namespace mailgrid::relay
