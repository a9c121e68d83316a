// RelayService over a real in-process gRPC server and Outbound on a
// LocalStore queue with a fake directory/mailstore backend: who may call
// what (relay.proto), SubmitMessage (local now, remote queued, idempotent),
// the queue admin RPCs with tenant scoping, routes.
#include "services/relay/relay_service.h"

#include <filesystem>
#include <map>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "libs/auth/token.h"
#include "libs/mailauth/dns.h"
#include "libs/store/local_store.h"
#include "services/relay/audit_holds.h"
#include "services/relay/outbound.h"
#include "services/relay/testing/fake_backend.h"

namespace mailgrid::relay {
namespace {

class NoDns final : public mailauth::Resolver {
 public:
  mailauth::DnsResult Lookup(std::string_view, mailauth::RrType) override { return {}; }
};

class RelayServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/relay-service-" + std::to_string(absl::ToUnixMicros(absl::Now()));
    auto store = store::LocalStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    Options o;
    o.hostname = "mx.mailgrid.test";
    o.queue_threads = 0;  // entries stay queued for inspection
    outbound_ = Outbound::Create(o, &backend_, std::move(*store), std::make_unique<NoDns>(), nullptr);
    outbound_->Start();
    auto signer = auth::TokenSigner::Generate("k1");
    ASSERT_TRUE(signer.ok());
    signer_ = std::move(*signer);
    auto verifier = std::make_shared<auth::TokenVerifier>("mailgrid");
    ASSERT_TRUE(verifier->AddPublicPem("k1", *signer_->PublicPem()).ok());
    service_.Bind(outbound_.get(), verifier);
    policies_ = std::make_unique<PolicyCache>(&backend_, absl::ZeroDuration());
    audit_ = std::make_unique<AuditHolds>(outbound_.get(), &backend_, policies_.get(),
                                          "mx.mailgrid.test", absl::Hours(1));
    service_.BindAudit(audit_.get());
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(&service_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::RelayService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials()));
    for (int i = 0; i < 600 && !outbound_->available(); ++i) absl::SleepFor(absl::Milliseconds(20));
    ASSERT_TRUE(outbound_->available());
  }
  void TearDown() override {
    server_->Shutdown();
    outbound_->Stop();
    std::filesystem::remove_all(dir_);
  }
  // A client context carrying a token with `roles` (and `tenant`).
  std::unique_ptr<grpc::ClientContext> As(std::vector<std::string> roles, std::string tenant = "",
                                          std::string subject = "tester") {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (roles.empty()) return ctx;
    auth::Claims c;
    c.issuer = "mailgrid";
    c.subject = subject;
    c.tenant_id = tenant;
    c.roles = roles;
    c.service = "tenantd";
    c.issued_at = absl::Now();
    c.expires_at = absl::Now() + absl::Minutes(5);
    ctx->AddMetadata("authorization", "Bearer " + *signer_->Sign(c));
    return ctx;
  }
  v1::SubmitMessageRequest Notice(const std::string& key) {
    v1::SubmitMessageRequest r;
    r.set_envelope_from("notices@hosted.test");
    r.add_recipients("bob@hosted.test");
    r.add_recipients("x@far.example");
    r.set_message("From: notices@hosted.test\r\nTo: bob@hosted.test\r\nSubject: welcome\r\n\r\nhi\r\n");
    r.set_tenant_id("t1");
    r.set_kind(v1::SUBMISSION_KIND_WELCOME);
    r.set_idempotency_key(key);
    return r;
  }

  std::string dir_;
  testing::FakeBackend backend_;
  std::unique_ptr<Outbound> outbound_;
  std::unique_ptr<PolicyCache> policies_;
  std::unique_ptr<AuditHolds> audit_;
  std::unique_ptr<auth::TokenSigner> signer_;
  RelayServiceImpl service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::RelayService::Stub> stub_;
};

TEST_F(RelayServiceTest, WhoMayCall) {
  v1::ListQueueResponse list;
  EXPECT_EQ(stub_->ListQueue(As({}).get(), {}, &list).error_code(), grpc::UNAUTHENTICATED);
  EXPECT_EQ(stub_->ListQueue(As({"user"}, "t1").get(), {}, &list).error_code(),
            grpc::PERMISSION_DENIED);
  EXPECT_TRUE(stub_->ListQueue(As({"tenant_admin"}, "t1").get(), {}, &list).ok());
  v1::SubmitMessageResponse sub;
  EXPECT_EQ(stub_->SubmitMessage(As({"platform_operator"}).get(), Notice("a"), &sub).error_code(),
            grpc::PERMISSION_DENIED);
  v1::Route route;
  v1::SetRouteRequest set;
  set.mutable_route()->mutable_match()->set_domain_pattern("*.far.example");
  set.mutable_route()->add_smart_hosts()->set_host("relay.isp.example");
  set.mutable_route()->set_enabled(true);
  EXPECT_EQ(stub_->SetRoute(As({"tenant_admin"}, "t1").get(), set, &route).error_code(),
            grpc::PERMISSION_DENIED);
}

TEST_F(RelayServiceTest, SubmitMessageDeliversLocallyQueuesRemoteOnce) {
  v1::SubmitMessageResponse first, again;
  grpc::Status s = stub_->SubmitMessage(As({"service"}).get(), Notice("welcome-1"), &first);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(first.delivered_locally_size(), 1);
  EXPECT_EQ(first.delivered_locally(0), "bob@hosted.test");
  ASSERT_EQ(first.queued_size(), 1);
  EXPECT_EQ(first.queued(0), "x@far.example");
  EXPECT_FALSE(first.queue_id().empty());
  EXPECT_EQ(backend_.Delivered(), 1u);
  // The same key: the first answer, nothing sent again.
  ASSERT_TRUE(stub_->SubmitMessage(As({"service"}).get(), Notice("welcome-1"), &again).ok());
  EXPECT_EQ(again.queue_id(), first.queue_id());
  EXPECT_EQ(backend_.Delivered(), 1u);
  v1::ListQueueResponse list;
  ASSERT_TRUE(stub_->ListQueue(As({"platform_operator"}).get(), {}, &list).ok());
  EXPECT_EQ(list.entries_size(), 1);
  // Bad input.
  v1::SubmitMessageRequest bad = Notice("");
  bad.set_envelope_from("a@b>\r\nBcc: x@y");
  EXPECT_EQ(stub_->SubmitMessage(As({"service"}).get(), bad, &again).error_code(),
            grpc::INVALID_ARGUMENT);
  bad = Notice("");
  bad.add_recipients("ghost@hosted.test");
  EXPECT_EQ(stub_->SubmitMessage(As({"service"}).get(), bad, &again).error_code(),
            grpc::INVALID_ARGUMENT);
  bad = Notice("");
  bad.clear_recipients();
  EXPECT_EQ(stub_->SubmitMessage(As({"service"}).get(), bad, &again).error_code(),
            grpc::INVALID_ARGUMENT);
}

TEST_F(RelayServiceTest, QueueAdminIsTenantScoped) {
  v1::SubmitMessageResponse sub;
  ASSERT_TRUE(stub_->SubmitMessage(As({"service"}).get(), Notice("k"), &sub).ok());
  const std::string id = sub.queue_id();
  v1::ListQueueResponse list;
  ASSERT_TRUE(stub_->ListQueue(As({"tenant_admin"}, "t2").get(), {}, &list).ok());
  EXPECT_EQ(list.entries_size(), 0);
  v1::GetQueueEntryRequest get;
  get.set_queue_id(id);
  v1::QueueEntry e;
  EXPECT_EQ(stub_->GetQueueEntry(As({"tenant_admin"}, "t2").get(), get, &e).error_code(),
            grpc::NOT_FOUND);
  ASSERT_TRUE(stub_->GetQueueEntry(As({"tenant_admin"}, "t1").get(), get, &e).ok());
  EXPECT_EQ(e.tenant_id(), "t1");

  v1::HoldRequest hold;
  hold.set_queue_id(id);
  ASSERT_TRUE(stub_->Hold(As({"tenant_admin"}, "t1").get(), hold, &e).ok());
  EXPECT_EQ(e.state(), v1::QUEUE_STATE_HELD);
  v1::RetryNowRequest retry;
  retry.set_queue_id(id);
  EXPECT_EQ(stub_->RetryNow(As({"platform_operator"}).get(), retry, &e).error_code(),
            grpc::FAILED_PRECONDITION);
  v1::ReleaseRequest release;
  release.set_queue_id(id);
  ASSERT_TRUE(stub_->Release(As({"platform_operator"}).get(), release, &e).ok());
  EXPECT_NE(e.state(), v1::QUEUE_STATE_HELD);

  v1::DeleteQueueEntryRequest del;
  del.set_queue_id(id);
  v1::DeleteQueueEntryResponse dr;
  EXPECT_EQ(stub_->DeleteQueueEntry(As({"platform_operator"}).get(), del, &dr).error_code(),
            grpc::INVALID_ARGUMENT);  // reason required
  // Bounce: the sender (notices@hosted.test) gets a failure DSN, queued.
  v1::BounceQueueEntryRequest bounce;
  bounce.set_queue_id(id);
  bounce.set_reason("operator gave up");
  ASSERT_TRUE(stub_->BounceQueueEntry(As({"platform_operator"}).get(), bounce, &e).ok());
  ASSERT_TRUE(stub_->ListQueue(As({"platform_operator"}).get(), {}, &list).ok());
  ASSERT_EQ(list.entries_size(), 1);
  EXPECT_EQ(list.entries(0).envelope_from(), "");
  EXPECT_EQ(list.entries(0).recipients(0).address(), "notices@hosted.test");
}

TEST_F(RelayServiceTest, Routes) {
  v1::SetRouteRequest set;
  set.mutable_route()->mutable_match()->set_domain_pattern("*.far.example");
  auto* h = set.mutable_route()->add_smart_hosts();
  h->set_host("relay.isp.example");
  h->set_port(2525);
  set.mutable_route()->set_enabled(true);
  v1::Route route;
  ASSERT_TRUE(stub_->SetRoute(As({"platform_operator"}).get(), set, &route).ok());
  EXPECT_FALSE(route.route_id().empty());
  // The same match again: ALREADY_EXISTS; a bad pattern: INVALID_ARGUMENT.
  v1::Route dup;
  EXPECT_EQ(stub_->SetRoute(As({"platform_operator"}).get(), set, &dup).error_code(),
            grpc::ALREADY_EXISTS);
  v1::SetRouteRequest bad = set;
  bad.mutable_route()->mutable_match()->set_domain_pattern("bad pattern!");
  EXPECT_EQ(stub_->SetRoute(As({"platform_operator"}).get(), bad, &dup).error_code(),
            grpc::INVALID_ARGUMENT);
  EXPECT_TRUE(outbound_->routes()->table().Match("a.far.example").has_value());
  v1::ListRoutesResponse list;
  ASSERT_TRUE(stub_->ListRoutes(As({"platform_operator"}).get(), {}, &list).ok());
  ASSERT_EQ(list.routes_size(), 1);
  v1::DeleteRouteRequest del;
  del.set_route_id(route.route_id());
  v1::DeleteRouteResponse dr;
  ASSERT_TRUE(stub_->DeleteRoute(As({"platform_operator"}).get(), del, &dr).ok());
  EXPECT_EQ(stub_->DeleteRoute(As({"platform_operator"}).get(), del, &dr).error_code(),
            grpc::NOT_FOUND);
  EXPECT_FALSE(outbound_->routes()->table().Match("a.far.example").has_value());
}

// A post to a MODERATED group waits HELD for a moderator: only the group's
// moderators may decide; approve releases it; reject drops it and tells
// the sender.
TEST_F(RelayServiceTest, ModerationHolds) {
  const std::string msg =
      "From: notices@hosted.test\r\nTo: group@hosted.test\r\nSubject: for the team\r\n\r\nhi\r\n";
  auto id = outbound_->HoldForModeration({"t1", "group@hosted.test", "g1", {"u-mod"}},
                                         "notices@hosted.test", msg);
  ASSERT_TRUE(id.ok()) << id.status();
  auto id2 = outbound_->HoldForModeration({"t1", "group@hosted.test", "g1", {"u-mod"}},
                                          "notices@hosted.test", msg);
  ASSERT_TRUE(id2.ok()) << id2.status();
  // Held: no due key, so a runner would not take it.
  auto due = outbound_->queue()->DueIds(absl::Now() + absl::Hours(1), 10);
  ASSERT_TRUE(due.ok());
  EXPECT_TRUE(due->empty());

  v1::ListHeldMessagesResponse list;
  ASSERT_TRUE(stub_->ListHeldMessages(As({"user"}, "t1", "u-mod").get(), {}, &list).ok());
  ASSERT_EQ(list.messages_size(), 2);
  EXPECT_EQ(list.messages(0).kind(), v1::HOLD_KIND_MODERATION);
  EXPECT_EQ(list.messages(0).state(), v1::HELD_STATE_HELD);
  EXPECT_EQ(list.messages(0).subject(), "for the team");
  list.Clear();
  ASSERT_TRUE(stub_->ListHeldMessages(As({"user"}, "t1", "u-other").get(), {}, &list).ok());
  EXPECT_EQ(list.messages_size(), 0);
  v1::GetHeldMessageRequest get;
  get.set_held_id(*id);
  v1::HeldMessage h;
  ASSERT_TRUE(stub_->GetHeldMessage(As({"tenant_admin"}, "t1").get(), get, &h).ok());
  EXPECT_NE(h.preview_headers().find("Subject: for the team"), std::string::npos);
  EXPECT_EQ(h.preview_text(), "hi\r\n");

  v1::ApproveHeldMessageRequest approve;
  approve.set_held_id(*id);
  EXPECT_EQ(stub_->ApproveHeldMessage(As({"user"}, "t1", "u-other").get(), approve, &h).error_code(),
            grpc::NOT_FOUND);
  EXPECT_EQ(stub_->ApproveHeldMessage(As({"tenant_admin"}, "t1").get(), approve, &h).error_code(),
            grpc::PERMISSION_DENIED);
  ASSERT_TRUE(stub_->ApproveHeldMessage(As({"user"}, "t1", "u-mod").get(), approve, &h).ok());
  EXPECT_EQ(h.state(), v1::HELD_STATE_APPROVED);
  EXPECT_EQ(h.decided_by().user_id(), "u-mod");
  EXPECT_EQ(stub_->ApproveHeldMessage(As({"user"}, "t1", "u-mod").get(), approve, &h).error_code(),
            grpc::FAILED_PRECONDITION);
  due = outbound_->queue()->DueIds(absl::Now() + absl::Seconds(1), 10);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);  // released: a runner delivers it now
  EXPECT_EQ((*due)[0], *id);

  v1::RejectHeldMessageRequest reject;
  reject.set_held_id(*id2);
  EXPECT_EQ(stub_->RejectHeldMessage(As({"user"}, "t1", "u-mod").get(), reject, &h).error_code(),
            grpc::INVALID_ARGUMENT);
  reject.set_reason("off topic");
  size_t before = backend_.Delivered();
  ASSERT_TRUE(stub_->RejectHeldMessage(As({"user"}, "t1", "u-mod").get(), reject, &h).ok());
  EXPECT_EQ(h.state(), v1::HELD_STATE_REJECTED);
  EXPECT_EQ(h.decision_reason(), "off topic");
  v1::GetQueueEntryRequest gq;
  gq.set_queue_id(*id2);
  v1::QueueEntry e;
  EXPECT_EQ(stub_->GetQueueEntry(As({"platform_operator"}).get(), gq, &e).error_code(), grpc::NOT_FOUND);
  // The sender (local here) got the notice with the reason.
  ASSERT_EQ(backend_.Delivered(), before + 1);
  absl::MutexLock l(&backend_.mu);
  const std::string& notice = backend_.delivered.back().message();
  EXPECT_NE(notice.find("was not approved"), std::string::npos) << notice;
  EXPECT_NE(notice.find("Reason: off topic"), std::string::npos) << notice;
  EXPECT_NE(notice.find("Return-Path: <>"), std::string::npos) << notice;
}

// An audit hold: visible to the tenant's admins and auditors, decided only
// by the auditors the policy names, downloadable (recorded), rejected with
// a notice to the sender.
TEST_F(RelayServiceTest, AuditHoldsAreDecidedByTheTenantsAuditors) {
  {
    absl::MutexLock l(&backend_.mu);
    backend_.audit_policy.set_enabled(true);
    backend_.audit_policy.add_auditor_user_ids("u-aud1");
  }
  std::string big(200 * 1024, 'x');  // several chunks
  const std::string msg = "From: notices@hosted.test\r\nTo: bob@hosted.test\r\nSubject: q3 numbers\r\n\r\n" +
                          big + "\r\n";
  AuditHolds::Request hr;
  hr.tenant_id = "t1";
  hr.envelope_from = "notices@hosted.test";
  hr.recipients = {"bob@hosted.test", "x@far.example"};
  hr.message = msg;
  tenant::v1::AuditRule rule;
  rule.set_rule_id("ar-1");
  rule.set_name("numbers");
  hr.matched = {rule};
  auto id = audit_->Hold(hr);
  ASSERT_TRUE(id.ok()) << id.status();
  hr.message = "From: notices@hosted.test\r\nSubject: second\r\n\r\nhi\r\n";
  auto id2 = audit_->Hold(hr);
  ASSERT_TRUE(id2.ok()) << id2.status();

  v1::ListHeldMessagesResponse list;
  ASSERT_TRUE(stub_->ListHeldMessages(As({"auditor"}, "t1", "u-aud2").get(), {}, &list).ok());
  ASSERT_EQ(list.messages_size(), 2);
  EXPECT_EQ(list.messages(0).kind(), v1::HOLD_KIND_AUDIT);
  EXPECT_EQ(list.messages(0).matched_rules(0).rule_name(), "numbers");
  list.Clear();
  ASSERT_TRUE(stub_->ListHeldMessages(As({"tenant_admin"}, "t2").get(), {}, &list).ok());
  EXPECT_EQ(list.messages_size(), 0);  // another tenant's

  // Download: metadata first, then the bytes in chunks.
  v1::DownloadHeldMessageRequest dl;
  dl.set_held_id(*id);
  auto ctx = As({"tenant_admin"}, "t1");
  auto reader = stub_->DownloadHeldMessage(ctx.get(), dl);
  v1::DownloadHeldMessageResponse part;
  std::string bytes;
  int metadata = 0, chunks = 0;
  while (reader->Read(&part)) {
    if (part.has_metadata()) {
      ++metadata;
      EXPECT_EQ(part.metadata().held_id(), *id);
      EXPECT_EQ(chunks, 0) << "metadata comes first";
    } else {
      ++chunks;
      bytes += part.chunk();
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(metadata, 1);
  EXPECT_GT(chunks, 1);
  EXPECT_EQ(bytes, msg);  // not DKIM-signed here: the fake has no keys
  auto other = As({"tenant_admin"}, "t2");
  auto denied = stub_->DownloadHeldMessage(other.get(), dl);
  while (denied->Read(&part)) {
  }
  EXPECT_EQ(denied->Finish().error_code(), grpc::NOT_FOUND);

  v1::ApproveHeldMessageRequest approve;
  approve.set_held_id(*id);
  v1::HeldMessage h;
  EXPECT_EQ(stub_->ApproveHeldMessage(As({"tenant_admin"}, "t1").get(), approve, &h).error_code(),
            grpc::PERMISSION_DENIED);
  EXPECT_EQ(stub_->ApproveHeldMessage(As({"auditor"}, "t1", "u-aud2").get(), approve, &h).error_code(),
            grpc::PERMISSION_DENIED);  // not one the policy names
  EXPECT_EQ(stub_->ApproveHeldMessage(As({"auditor"}, "t2", "u-aud1").get(), approve, &h).error_code(),
            grpc::NOT_FOUND);
  ASSERT_TRUE(stub_->ApproveHeldMessage(As({"auditor"}, "t1", "u-aud1").get(), approve, &h).ok());
  EXPECT_EQ(h.state(), v1::HELD_STATE_APPROVED);
  EXPECT_EQ(h.decided_by().user_id(), "u-aud1");
  auto due = outbound_->queue()->DueIds(absl::Now() + absl::Seconds(1), 10);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0], *id);

  v1::RejectHeldMessageRequest reject;
  reject.set_held_id(*id2);
  reject.set_reason("not allowed");
  size_t before = backend_.Delivered();
  ASSERT_TRUE(stub_->RejectHeldMessage(As({"auditor"}, "t1", "u-aud1").get(), reject, &h).ok());
  EXPECT_EQ(h.state(), v1::HELD_STATE_REJECTED);
  ASSERT_EQ(backend_.Delivered(), before + 1);  // the notice to notices@hosted.test
  absl::MutexLock l(&backend_.mu);
  EXPECT_NE(backend_.delivered.back().message().find("Reason: not allowed"), std::string::npos);
  EXPECT_EQ(backend_.audit_actions,
            (std::vector<std::string>{"mail.held.hold", "mail.held.hold", "mail.held.download",
                                      "mail.held.approve", "mail.held.reject"}));
}

}  // namespace
}  // namespace mailgrid::relay
