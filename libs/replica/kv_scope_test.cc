#include "libs/replica/kv_scope.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "libs/kv/keys.h"
#include "libs/rpc/client.h"
#include "libs/rpc/server.h"
#include "mailgrid/kv/v1/kv.grpc.pb.h"

namespace mailgrid::replica {
namespace {

const std::vector<std::string> kRelayd = {"relayd"};
const std::vector<std::string> kTenantd = {"tenantd"};

KvScope RelaydQueueOnly() {
  absl::StatusOr<KvScope> scope = KvScope::Parse("relayd=global:outq*; ops = global:ops, hex:ff00");
  EXPECT_TRUE(scope.ok()) << scope.status();
  return *std::move(scope);
}

std::string QueueKey(const std::string& id) {
  return kv::KeyBuilder(kv::GlobalPrefix("outq")).Str(id).Build();
}
std::string BodyKey(const std::string& id) {
  return kv::KeyBuilder(kv::GlobalPrefix("outq_body")).Str(id).U64(0).Build();
}
std::string DomainKey(const std::string& domain) {
  return kv::KeyBuilder(kv::GlobalPrefix("domain")).Str(domain).Build();
}
std::string UserKey() {
  return kv::KeyBuilder(kv::TenantPrefix("t1")).Str("user").Str("alice").Build();
}

kv::v1::GetRequest Get(const std::string& key) {
  kv::v1::GetRequest r;
  r.set_key(key);
  return r;
}

TEST(KvScopeTest, GetInsideAndOutside) {
  KvScope scope = RelaydQueueOnly();
  std::string bad;
  EXPECT_TRUE(scope.Allows(kRelayd, Get(QueueKey("q1")), &bad));
  EXPECT_TRUE(scope.Allows(kRelayd, Get(BodyKey("q1")), &bad));  // global:outq* = all outq_ spaces
  EXPECT_FALSE(scope.Allows(kRelayd, Get(DomainKey("example.com")), &bad));
  EXPECT_NE(bad.find("domain"), std::string::npos) << bad;  // the error shows the key
  EXPECT_FALSE(scope.Allows(kRelayd, Get(UserKey()), &bad));
  // An unscoped name (tenantd itself) is not restricted by the scope.
  EXPECT_TRUE(scope.Allows(kTenantd, Get(UserKey()), &bad));
  EXPECT_TRUE(scope.Allows({}, Get(UserKey()), &bad));
  // A certificate with a scoped name among others is scoped.
  EXPECT_FALSE(scope.Allows({"mail.example.com", "relayd"}, Get(UserKey()), &bad));
}

TEST(KvScopeTest, ExactSpaceIsNotItsSiblings) {
  KvScope scope = RelaydQueueOnly();
  std::string bad;
  EXPECT_TRUE(
      scope.Allows({"ops"}, Get(kv::KeyBuilder(kv::GlobalPrefix("ops")).Str("x").Build()), &bad));
  // global:ops (no '*') ends at the space name's terminator.
  EXPECT_FALSE(
      scope.Allows({"ops"}, Get(kv::KeyBuilder(kv::GlobalPrefix("ops_x")).Str("x").Build()), &bad));
  EXPECT_TRUE(scope.Allows({"ops"}, Get(std::string("\xff\x00\x01", 3)), &bad));
  // Union of two scoped names.
  EXPECT_TRUE(scope.Allows({"ops", "relayd"}, Get(QueueKey("q")), &bad));
}

TEST(KvScopeTest, Scans) {
  KvScope scope = RelaydQueueOnly();
  std::string bad;
  kv::v1::ScanRequest s;
  s.set_prefix(kv::GlobalPrefix("outq_due"));
  EXPECT_TRUE(scope.Allows(kRelayd, s, &bad));
  s.set_prefix(kv::GlobalPrefix("outq"));
  EXPECT_TRUE(scope.Allows(kRelayd, s, &bad));
  // Sibling spaces share the raw bytes "\x01out" but not "\x01outq".
  s.set_prefix(std::string("\x01out", 4));
  EXPECT_FALSE(scope.Allows(kRelayd, s, &bad));
  kv::v1::ScanRequest whole;  // no range at all = the empty prefix = everything
  EXPECT_FALSE(scope.Allows(kRelayd, whole, &bad));

  kv::v1::ScanRequest r;
  std::string due = kv::GlobalPrefix("outq_due");
  r.mutable_key_range()->set_start(due);
  r.mutable_key_range()->set_end(kv::KeyBuilder(due).I64(1000).Build());
  EXPECT_TRUE(scope.Allows(kRelayd, r, &bad));
  r.mutable_key_range()->set_end("");  // unbounded: runs past the queue
  EXPECT_FALSE(scope.Allows(kRelayd, r, &bad));
  r.mutable_key_range()->set_end(kv::PrefixEnd(std::string("\x01outq", 5)));
  EXPECT_TRUE(scope.Allows(kRelayd, r, &bad));
  r.mutable_key_range()->set_end(kv::Successor(kv::PrefixEnd(std::string("\x01outq", 5))));
  EXPECT_FALSE(scope.Allows(kRelayd, r, &bad));
  r.mutable_key_range()->set_start(std::string("\x01", 1));  // starts before the queue
  r.mutable_key_range()->set_end(due);
  EXPECT_FALSE(scope.Allows(kRelayd, r, &bad));
}

TEST(KvScopeTest, WritesCheckEveryKeyAndCondition) {
  KvScope scope = RelaydQueueOnly();
  std::string bad;
  kv::v1::WriteRequest w;
  w.add_ops()->mutable_put()->set_key(QueueKey("q1"));
  w.add_ops()->mutable_put()->set_key(BodyKey("q1"));
  w.add_ops()->mutable_delete_()->set_key(QueueKey("q0"));
  auto* c = w.add_conditions();
  c->set_key(QueueKey("q1"));
  c->set_kind(kv::v1::Condition::MUST_NOT_EXIST);
  EXPECT_TRUE(scope.Allows(kRelayd, w, &bad));

  kv::v1::WriteRequest put_outside = w;
  put_outside.add_ops()->mutable_put()->set_key(DomainKey("example.com"));
  EXPECT_FALSE(scope.Allows(kRelayd, put_outside, &bad));

  kv::v1::WriteRequest delete_outside = w;
  delete_outside.add_ops()->mutable_delete_()->set_key(UserKey());
  EXPECT_FALSE(scope.Allows(kRelayd, delete_outside, &bad));

  // A condition reads a key (ConditionFailed returns its value).
  kv::v1::WriteRequest probe = w;
  probe.add_conditions()->set_key(UserKey());
  EXPECT_FALSE(scope.Allows(kRelayd, probe, &bad));

  kv::v1::WriteRequest range = w;
  auto* dr = range.add_ops()->mutable_delete_range();
  dr->set_start(kv::PrefixRange(kv::GlobalPrefix("outq_body")).start);
  dr->set_end(kv::PrefixRange(kv::GlobalPrefix("outq_body")).end);
  EXPECT_TRUE(scope.Allows(kRelayd, range, &bad));
  dr->set_end(kv::PrefixEnd(std::string("\x01", 1)));  // every global space
  EXPECT_FALSE(scope.Allows(kRelayd, range, &bad));

  EXPECT_TRUE(scope.Allows(kTenantd, put_outside, &bad));
}

TEST(KvScopeTest, ParseErrorsNameTheRule) {
  for (const char* spec :
       {"relayd", "=global:outq", "relayd=", "relayd=outq", "relayd=global:", "relayd=hex:f",
        "relayd=hex:zz", "relayd=tenant:", "relayd=global:a;relayd=global:b"}) {
    absl::StatusOr<KvScope> scope = KvScope::Parse(spec);
    ASSERT_FALSE(scope.ok()) << spec;
    EXPECT_NE(scope.status().message().find("--kv-scope"), absl::string_view::npos);
  }
  absl::StatusOr<KvScope> empty = KvScope::Parse("  ");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

// Through gRPC with real client certificates: the names come from the TLS
// auth context. The service answers like KvServiceImpl's first line does
// (RefuseOutsideKvScope), then OK: the replica itself is not the point.
class ScopedKv final : public kv::v1::KvService::CallbackService {
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx, const kv::v1::GetRequest* req,
                                kv::v1::GetResponse* resp) override {
    if (auto* refused = RefuseOutsideKvScope(ctx, *req)) return refused;
    resp->set_found(true);
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
  grpc::ServerUnaryReactor* Write(grpc::CallbackServerContext* ctx, const kv::v1::WriteRequest* req,
                                  kv::v1::WriteResponse*) override {
    if (auto* refused = RefuseOutsideKvScope(ctx, *req)) return refused;
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
};

void RunShell(const std::string& cmd) {
  ASSERT_EQ(std::system((cmd + " >/dev/null 2>&1").c_str()), 0) << cmd;
}

TEST(KvScopeGrpcTest, CertificateNamesDecide) {
  namespace fs = std::filesystem;
  std::string root = ::testing::TempDir() + "/kv_scope_pki";
  fs::remove_all(root);
  fs::create_directories(root);
  std::ofstream(root + "/ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                  "extendedKeyUsage=serverAuth,clientAuth\n";
  RunShell("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + root +
           "/ca.key -out " + root + "/ca.pem -days 2 -subj /CN=test-ca");
  for (const char* cn : {"tenantd", "relayd"}) {
    std::string d = root + "/" + cn;
    RunShell("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + d +
             ".key -out " + d + ".csr -subj /CN=" + cn);
    RunShell("openssl x509 -req -in " + d + ".csr -CA " + root + "/ca.pem -CAkey " + root +
             "/ca.key -CAcreateserial -out " + d + ".pem -days 2 -extfile " + root + "/ext");
  }
  SetProcessKvScope(*KvScope::Parse("relayd=global:outq*"));

  ScopedKv service;
  rpc::ServerOptions so;
  so.tls_cert_file = root + "/tenantd.pem";
  so.tls_key_file = root + "/tenantd.key";
  so.tls_client_ca_file = root + "/ca.pem";
  auto server = rpc::Server::Start(so, {&service});
  ASSERT_TRUE(server.ok()) << server.status();

  auto stub_as = [&](const std::string& cn) {
    rpc::ClientOptions co;
    co.target = (*server)->address();
    co.tls_ca_file = root + "/ca.pem";
    co.tls_cert_file = root + "/" + cn + ".pem";
    co.tls_key_file = root + "/" + cn + ".key";
    auto channel = rpc::MakeChannel(co);
    EXPECT_TRUE(channel.ok()) << channel.status();
    return kv::v1::KvService::NewStub(*channel);
  };
  auto get = [](kv::v1::KvService::Stub& stub, const std::string& key) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    kv::v1::GetResponse resp;
    return stub.Get(&ctx, Get(key), &resp);
  };
  auto relayd = stub_as("relayd");
  auto tenantd = stub_as("tenantd");

  grpc::Status s = get(*relayd, QueueKey("q1"));
  EXPECT_TRUE(s.ok()) << s.error_message();
  s = get(*relayd, UserKey());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_NE(s.error_message().find("certificate relayd may not use key"), std::string::npos)
      << s.error_message();
  s = get(*tenantd, UserKey());
  EXPECT_TRUE(s.ok()) << s.error_message();

  kv::v1::WriteRequest w;
  w.add_ops()->mutable_put()->set_key(QueueKey("q1"));
  w.add_ops()->mutable_put()->set_key(DomainKey("example.com"));
  grpc::ClientContext ctx;
  kv::v1::WriteResponse resp;
  s = relayd->Write(&ctx, w, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();

  (*server)->Shutdown(absl::Seconds(5));
  SetProcessKvScope(KvScope());
}

}  // namespace
}  // namespace mailgrid::replica
