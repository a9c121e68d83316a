// AsyncMailstore against two in-process MailboxServices, a follower that
// refuses (`mailgrid-not-leader`, with or without a `mailgrid-leader` hint)
// and a leader that answers: the refusal asks for the fallback and moves the
// next call to the hinted replica, the user's authorization travels, and
// which failures are final (a non-idempotent call that may have run, a
// NOT_FOUND) or fall back (UNIMPLEMENTED: an older mailstored).
#include "services/access/async_mailstore.h"

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace mailgrid::access {
namespace {

class FakeReplica final : public ms::MailboxService::Service {
 public:
  // What StoreFlags/SelectFolder answer; `hint`: the leader to name in the
  // trailers of an UNAVAILABLE answer ("" none), with `not_leader` set.
  grpc::StatusCode code = grpc::StatusCode::OK;
  bool not_leader = false;
  std::string hint;

  grpc::Status StoreFlags(grpc::ServerContext* ctx, const ms::StoreFlagsRequest*,
                          ms::StoreFlagsResponse* out) override {
    Record(ctx);
    if (code != grpc::StatusCode::OK) return Refuse(ctx);
    out->set_highest_modseq(7);
    return grpc::Status::OK;
  }
  grpc::Status SelectFolder(grpc::ServerContext* ctx, const ms::SelectFolderRequest*,
                            ms::SelectFolderResponse* out) override {
    Record(ctx);
    if (code != grpc::StatusCode::OK) return Refuse(ctx);
    out->mutable_status()->mutable_folder()->set_uidnext(42);
    return grpc::Status::OK;
  }

  int calls() {
    std::lock_guard<std::mutex> l(mu_);
    return calls_;
  }
  std::string authorization() {
    std::lock_guard<std::mutex> l(mu_);
    return authorization_;
  }

 private:
  void Record(grpc::ServerContext* ctx) {
    std::lock_guard<std::mutex> l(mu_);
    ++calls_;
    auto it = ctx->client_metadata().find("authorization");
    if (it != ctx->client_metadata().end()) {
      authorization_.assign(it->second.data(), it->second.size());
    }
  }
  grpc::Status Refuse(grpc::ServerContext* ctx) {
    if (not_leader) ctx->AddTrailingMetadata("mailgrid-not-leader", "1");
    if (!hint.empty()) ctx->AddTrailingMetadata("mailgrid-leader", hint);
    return grpc::Status(code, "refused");
  }

  std::mutex mu_;
  int calls_ = 0;
  std::string authorization_;
};

// One completion, waited for.
template <typename Resp>
struct Outcome {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<std::pair<absl::StatusOr<Resp>, bool>> got;

  AsyncMailstore::Done<Resp> Callback() {
    return [this](absl::StatusOr<Resp> r, bool fall_back) {
      std::lock_guard<std::mutex> l(mu);
      got.emplace(std::move(r), fall_back);
      cv.notify_all();
    };
  }
  std::pair<absl::StatusOr<Resp>, bool> Wait() {
    std::unique_lock<std::mutex> l(mu);
    // Generous: the machine is shared; the call's own deadline is 15 s.
    cv.wait_for(l, std::chrono::seconds(60), [this] { return got.has_value(); });
    if (!got) return {absl::DeadlineExceededError("no completion"), false};
    return *got;
  }
};

class AsyncMailstoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 2; ++i) {
      grpc::ServerBuilder b;
      int port = 0;
      b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
      b.RegisterService(&replicas_[i]);
      servers_[i] = b.BuildAndStart();
      ASSERT_NE(port, 0);
      addresses_[i] = absl::StrCat("127.0.0.1:", port);
    }
    mailstore_client::ShardMap shards;
    shards.shards[3] = {addresses_[0], addresses_[1]};  // 0 is tried first
    auto a = AsyncMailstore::Create(shards);
    ASSERT_TRUE(a.ok()) << a.status();
    async_ = std::move(*a);
  }
  void TearDown() override {
    for (int i = 0; i < 200 && async_->in_flight() > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(async_->in_flight(), 0);
    for (auto& s : servers_) s->Shutdown();
  }

  std::pair<absl::StatusOr<ms::StoreFlagsResponse>, bool> Store() {
    Outcome<ms::StoreFlagsResponse> o;
    async_->StoreFlags(3, "Bearer user-token", ms::StoreFlagsRequest(), o.Callback());
    return o.Wait();
  }

  FakeReplica replicas_[2];
  std::unique_ptr<grpc::Server> servers_[2];
  std::string addresses_[2];
  std::shared_ptr<AsyncMailstore> async_;
};

TEST_F(AsyncMailstoreTest, FollowerRefusalFallsBackAndTheHintMovesTheNextCall) {
  replicas_[0].code = grpc::StatusCode::UNAVAILABLE;
  replicas_[0].not_leader = true;
  replicas_[0].hint = addresses_[1];
  auto [first, fall_back] = Store();
  EXPECT_TRUE(fall_back);
  EXPECT_FALSE(first.ok());
  EXPECT_EQ(replicas_[0].calls(), 1);
  auto [second, again] = Store();
  EXPECT_FALSE(again);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->highest_modseq(), 7u);
  EXPECT_EQ(replicas_[1].calls(), 1);
  EXPECT_EQ(replicas_[1].authorization(), "Bearer user-token");
  // And it stays there.
  ASSERT_TRUE(Store().first.ok());
  EXPECT_EQ(replicas_[0].calls(), 1);
  EXPECT_EQ(replicas_[1].calls(), 2);
}

TEST_F(AsyncMailstoreTest, RefusalWithoutHintTriesTheNextReplica) {
  replicas_[0].code = grpc::StatusCode::UNAVAILABLE;
  replicas_[0].not_leader = true;
  EXPECT_TRUE(Store().second);
  auto [r, fall_back] = Store();
  EXPECT_FALSE(fall_back);
  EXPECT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(replicas_[1].calls(), 1);
}

TEST_F(AsyncMailstoreTest, WhichFailuresAreFinal) {
  // SELECT claiming \Recent may have run when the answer is a plain
  // UNAVAILABLE: not repeated, the error is the answer.
  replicas_[0].code = grpc::StatusCode::UNAVAILABLE;
  ms::SelectFolderRequest claim;
  claim.set_claim_recent(true);
  Outcome<ms::SelectFolderResponse> o1;
  async_->SelectFolder(3, "", claim, o1.Callback());
  auto [r1, fb1] = o1.Wait();
  EXPECT_FALSE(fb1);
  EXPECT_EQ(r1.status().code(), absl::StatusCode::kUnavailable);
  // That moved the shard on to replica 1. EXAMINE (no claim) is safe to
  // repeat: fallback (and replica 0 is next).
  replicas_[1].code = grpc::StatusCode::UNAVAILABLE;
  Outcome<ms::SelectFolderResponse> o2;
  async_->SelectFolder(3, "", ms::SelectFolderRequest(), o2.Callback());
  EXPECT_TRUE(o2.Wait().second);
  EXPECT_EQ(replicas_[1].calls(), 1);
  replicas_[0].code = grpc::StatusCode::NOT_FOUND;
  auto [r3, fb3] = Store();
  EXPECT_FALSE(fb3);
  EXPECT_EQ(r3.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(replicas_[0].calls(), 2);
  // An older mailstored: the full client knows what to do instead.
  replicas_[0].code = grpc::StatusCode::UNIMPLEMENTED;
  EXPECT_TRUE(Store().second);
  // A shard nobody configured: the full client's own error.
  Outcome<ms::StoreFlagsResponse> o4;
  async_->StoreFlags(9, "", ms::StoreFlagsRequest(), o4.Callback());
  EXPECT_TRUE(o4.Wait().second);
}

}  // namespace
}  // namespace mailgrid::access
