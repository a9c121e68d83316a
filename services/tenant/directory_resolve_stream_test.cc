// DirectoryService.ResolveStream over real gRPC on loopback (real RocksDB,
// real tokens): every answer equals unary Resolve's (users, +tags, aliases,
// groups, unknown and foreign addresses, bad input), many interleaved ids
// each answered once, the caller authorized as for Resolve (no token, a
// user's token, another tenant's admin), a token just past exp accepted
// within the verifier's leeway as unary Resolve accepts it, and the stream
// ended UNAUTHENTICATED once unary Resolve refuses its token.
#include <map>
#include <thread>

#include "services/tenant/directory_test_fixture.h"

namespace mailgrid::tenant {
namespace {

using dirtest::Details;
using StreamRW = grpc::ClientReaderWriter<v1::ResolveStreamRequest, v1::ResolveStreamResponse>;

class ResolveStreamTest : public dirtest::DirectoryTest {
 protected:
  void SetUp() override {
    DirectoryTest::SetUp();
    directory_->StartResolveIndex();  // index hits inline, the rest on the workers
  }
  void TearDown() override {
    directory_->StopResolveIndex();
    DirectoryTest::TearDown();
  }

  // A small company: a department, users in it, an alias, a group of the
  // department.
  void Company() {
    sales_ = Dept("Sales");
    ann_ = User("ann@acme.test", {sales_});
    User("bob@acme.test", {sales_});
    v1::AddAliasRequest al;
    al.set_address("sales@acme.test");
    al.set_user_id(ann_);
    v1::Alias alias;
    ASSERT_TRUE(dir_stub_->AddAlias(Ctx(admin_).get(), al, &alias).ok());
    Group("team@acme.test", {Member(v1::MEMBER_KIND_DEPARTMENT, sales_)});
  }

  static std::string ReasonOf(const v1::ResolveResult& r) {
    for (const auto& any : r.status().details()) {
      common::v1::ErrorDetail d;
      if (any.UnpackTo(&d)) return d.reason();
    }
    return "";
  }

  // Unary Resolve's answer to `address` as a ResolveResult-comparable pair:
  // (code, serialized response or reason).
  std::pair<int, std::string> Unary(const std::string& address, const std::string& token) {
    v1::ResolveRequest r;
    r.set_address(address);
    v1::ResolveResponse out;
    grpc::Status s = dir_stub_->Resolve(Ctx(token).get(), r, &out);
    if (s.ok()) return {0, out.SerializeAsString()};
    return {static_cast<int>(s.error_code()), Details(s).reason};
  }
  static grpc::StatusCode CodeOf(const v1::ResolveResult& r) {
    return static_cast<grpc::StatusCode>(r.status().code());
  }
  static std::pair<int, std::string> FromStream(const v1::ResolveResult& r) {
    if (r.status().code() == 0) return {0, r.response().SerializeAsString()};
    return {r.status().code(), ReasonOf(r)};
  }

  // Sends every (id, address), half-closes, and returns the answers read
  // (by id, a second answer to one id fails the test) and the stream's status.
  struct Exchange {
    std::map<uint64_t, v1::ResolveResult> answers;
    grpc::Status status;
  };
  Exchange Run(const std::string& token, const std::vector<std::pair<uint64_t, std::string>>& reqs) {
    grpc::ClientContext ctx;
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    std::unique_ptr<StreamRW> rw = dir_stub_->ResolveStream(&ctx);
    Exchange x;
    std::thread reader([&] {
      v1::ResolveStreamResponse resp;
      while (rw->Read(&resp)) {
        EXPECT_TRUE(x.answers.emplace(resp.id(), resp.result()).second) << "id " << resp.id();
        EXPECT_EQ(resp.more_size(), 0);  // this caller did not ask for batches
      }
    });
    for (const auto& [id, address] : reqs) {
      v1::ResolveStreamRequest r;
      r.set_id(id);
      r.mutable_request()->set_address(address);
      if (!rw->Write(r)) break;  // the server ended the stream (refused caller)
    }
    rw->WritesDone();
    reader.join();
    x.status = rw->Finish();
    return x;
  }

  // Opens a stream asking for batched answers, sends every (id, address)
  // in one message, and returns the answers (flattened), how many
  // messages carried them and whether tenantd announced batched requests.
  struct Batched {
    Exchange x;
    int messages = 0;
    bool announced = false;
  };
  Batched RunBatched(const std::vector<std::pair<uint64_t, std::string>>& reqs) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + service_);
    ctx.AddMetadata("mailgrid-resolve-batches", "1");
    std::unique_ptr<StreamRW> rw = dir_stub_->ResolveStream(&ctx);
    v1::ResolveStreamRequest msg;
    for (const auto& [id, address] : reqs) {
      v1::ResolveStreamRequest* r = msg.has_request() ? msg.add_more() : &msg;
      r->set_id(id);
      r->mutable_request()->set_address(address);
    }
    Batched b;
    EXPECT_TRUE(rw->Write(msg));
    rw->WritesDone();
    v1::ResolveStreamResponse resp;
    while (rw->Read(&resp)) {
      ++b.messages;
      EXPECT_TRUE(b.x.answers.emplace(resp.id(), resp.result()).second) << "id " << resp.id();
      for (const v1::ResolveStreamResponse& m : resp.more()) {
        EXPECT_EQ(m.more_size(), 0);
        EXPECT_TRUE(b.x.answers.emplace(m.id(), m.result()).second) << "id " << m.id();
      }
    }
    auto it = ctx.GetServerInitialMetadata().find("mailgrid-resolve-batches");
    b.announced = it != ctx.GetServerInitialMetadata().end() && it->second == "1";
    b.x.status = rw->Finish();
    return b;
  }

  std::string sales_, ann_;
};

const std::vector<std::string> kAddresses = {
    "ann@acme.test",  "BOB+tag@acme.test", "sales@acme.test", "team@acme.test",
    "nobody@acme.test", "x@unknown.test",  "not an address"};

TEST_F(ResolveStreamTest, AnswersEqualUnaryResolveForEveryKindOfAddress) {
  Company();
  for (int round = 0; round < 2; ++round) {  // computed first, then from the index
    std::vector<std::pair<uint64_t, std::string>> reqs;
    for (size_t i = 0; i < kAddresses.size(); ++i) reqs.emplace_back(100 + i, kAddresses[i]);
    Exchange x = Run(service_, reqs);
    ASSERT_TRUE(x.status.ok()) << x.status.error_message();
    ASSERT_EQ(x.answers.size(), kAddresses.size());
    for (size_t i = 0; i < kAddresses.size(); ++i) {
      const v1::ResolveResult& r = x.answers.at(100 + i);
      EXPECT_EQ(FromStream(r), Unary(kAddresses[i], service_)) << kAddresses[i];
    }
    // Errors travel in the answer, with Resolve's reasons.
    EXPECT_EQ(CodeOf(x.answers.at(104)), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(ReasonOf(x.answers.at(104)), "ADDRESS_NOT_FOUND");
    EXPECT_EQ(ReasonOf(x.answers.at(105)), "DOMAIN_NOT_HOSTED");
    EXPECT_EQ(CodeOf(x.answers.at(106)), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(x.answers.at(103).response().recipients_size(), 2);  // the department's two
  }
}

TEST_F(ResolveStreamTest, BatchedRequestsGetBatchedAnswersEqualToUnaryResolve) {
  Company();
  std::vector<std::pair<uint64_t, std::string>> reqs;
  for (uint64_t i = 0; i < 300; ++i) reqs.emplace_back(1000 + 7 * i, kAddresses[i % kAddresses.size()]);
  Run(service_, reqs);  // computed once (answers kept), one per message
  Batched b = RunBatched(reqs);
  ASSERT_TRUE(b.x.status.ok()) << b.x.status.error_message();
  EXPECT_TRUE(b.announced);
  ASSERT_EQ(b.x.answers.size(), reqs.size());
  std::map<std::string, std::pair<int, std::string>> unary;
  for (const std::string& a : kAddresses) unary[a] = Unary(a, service_);
  for (const auto& [id, address] : reqs) EXPECT_EQ(FromStream(b.x.answers.at(id)), unary[address]) << id;
  // Answered from the index together: several per message.
  EXPECT_LT(b.messages, static_cast<int>(reqs.size()));
}

TEST_F(ResolveStreamTest, MessageWithTooManyRequestsEndsTheStreamInvalidArgument) {
  Company();
  std::vector<std::pair<uint64_t, std::string>> reqs;
  for (uint64_t i = 0; i < 1025; ++i) reqs.emplace_back(i + 1, "ann@acme.test");
  Batched b = RunBatched(reqs);
  EXPECT_EQ(b.x.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Details(b.x.status).reason, "TOO_MANY");
  EXPECT_TRUE(b.x.answers.empty());
}

TEST_F(ResolveStreamTest, ManyInterleavedIdsEachAnsweredOnceWithItsOwnAnswer) {
  Company();
  // Ids out of order and far apart; addresses cycling through every kind,
  // so index hits (inline) and worker answers (store reads) interleave.
  std::vector<std::pair<uint64_t, std::string>> reqs;
  std::map<uint64_t, std::string> address_of;
  for (uint64_t i = 0; i < 600; ++i) {
    const uint64_t id = (i * 7919) % 600 * 1000003 + 1;
    const std::string address = i % 50 == 0 ? absl::StrCat("late", i, "@acme.test")
                                             : kAddresses[i % kAddresses.size()];
    reqs.emplace_back(id, address);
    address_of[id] = address;
  }
  Exchange x = Run(service_, reqs);
  ASSERT_TRUE(x.status.ok()) << x.status.error_message();
  // Unary Resolve after the stream: the stream computed the first answers.
  std::map<std::string, std::pair<int, std::string>> expected;
  for (const auto& [id, a] : address_of) {
    if (!expected.count(a)) expected[a] = Unary(a, service_);
  }
  ASSERT_EQ(x.answers.size(), reqs.size());
  for (const auto& [id, r] : x.answers) {
    ASSERT_TRUE(address_of.count(id)) << "an answer to an id never sent: " << id;
    EXPECT_EQ(FromStream(r), expected[address_of[id]]) << address_of[id];
  }
}

TEST_F(ResolveStreamTest, CallerAuthorizedAsForResolve) {
  Company();
  const std::vector<std::pair<uint64_t, std::string>> one = {{1, "ann@acme.test"}};
  // No token, a forged one, a plain user: the stream's own status.
  EXPECT_EQ(Run("", one).status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Run("forged", one).status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  Exchange user = Run(Mint(tenant_, {auth::kRoleUser}, ann_), one);
  EXPECT_EQ(user.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(user.answers.empty());
  // The tenant's own admin: its answers; another tenant's admin: "not hosted".
  Exchange own = Run(admin_, one);
  ASSERT_TRUE(own.status.ok()) << own.status.error_message();
  EXPECT_EQ(FromStream(own.answers.at(1)), Unary("ann@acme.test", admin_));
  EXPECT_EQ(own.answers.at(1).response().recipients(0).user_id(), ann_);
  Exchange other = Run(other_admin_, one);
  ASSERT_TRUE(other.status.ok()) << other.status.error_message();
  EXPECT_EQ(ReasonOf(other.answers.at(1)), "DOMAIN_NOT_HOSTED");
  EXPECT_EQ(FromStream(other.answers.at(1)), Unary("ann@acme.test", other_admin_));
}

// A relayd token whose exp is `from_now` away (negative: already past).
std::string ServiceTokenExpiring(auth::TokenSigner& signer, absl::Duration from_now) {
  auth::Claims c;
  c.issuer = "mailgrid";
  c.subject = "relayd";
  c.roles = {auth::kRoleService};
  c.issued_at = absl::Now() - absl::Minutes(5);
  c.expires_at = absl::Now() + from_now;
  return *signer.Sign(c);
}

// The verifier's leeway (unary calls accept a token that long past exp).
absl::Duration Leeway() { return auth::TokenVerifier("mailgrid").leeway; }

TEST_F(ResolveStreamTest, TokenJustPastExpIsAcceptedAsByUnaryResolve) {
  Company();
  ASSERT_GT(Leeway(), absl::Seconds(10));
  const std::string token = ServiceTokenExpiring(*signer_, -absl::Seconds(10));
  const std::pair<int, std::string> unary = Unary("ann@acme.test", token);
  ASSERT_EQ(unary.first, 0) << unary.second;
  Exchange x = Run(token, {{1, "ann@acme.test"}, {2, "sales@acme.test"}});
  ASSERT_TRUE(x.status.ok()) << x.status.error_message();
  EXPECT_EQ(FromStream(x.answers.at(1)), unary);
  EXPECT_EQ(FromStream(x.answers.at(2)), Unary("sales@acme.test", token));
}

TEST_F(ResolveStreamTest, StreamEndsUnauthenticatedWhenUnaryStartsRefusingItsToken) {
  Company();
  // Accepted for about 2 s more (exp + leeway), by unary and stream alike.
  const absl::Duration left = absl::Seconds(2);
  const std::string token = ServiceTokenExpiring(*signer_, left - Leeway());
  const absl::Time refused_after = absl::Now() + left;

  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + token);
  std::unique_ptr<StreamRW> rw = dir_stub_->ResolveStream(&ctx);
  v1::ResolveStreamRequest r;
  r.set_id(1);
  r.mutable_request()->set_address("ann@acme.test");
  ASSERT_TRUE(rw->Write(r));
  v1::ResolveStreamResponse resp;
  ASSERT_TRUE(rw->Read(&resp));
  EXPECT_EQ(resp.id(), 1u);
  EXPECT_EQ(resp.result().response().recipients(0).user_id(), ann_);
  // Past exp + leeway (exp has one-second resolution): unary refuses the
  // token, and the stream's next request ends the stream.
  absl::SleepFor(refused_after - absl::Now() + absl::Seconds(1.5));
  EXPECT_EQ(Unary("ann@acme.test", token).first,
            static_cast<int>(grpc::StatusCode::UNAUTHENTICATED));
  r.set_id(2);
  (void)rw->Write(r);
  EXPECT_FALSE(rw->Read(&resp));
  rw->WritesDone();
  grpc::Status st = rw->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
}

}  // namespace
}  // namespace mailgrid::tenant
