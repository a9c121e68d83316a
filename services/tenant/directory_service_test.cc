// DirectoryService end to end in one process: real gRPC on loopback over
// LocalStore (real RocksDB), real tokens, TenantService/DomainService to
// build an ACTIVE tenant with a VERIFIED domain, and scripted peers
// (identityd/mailstored) that record calls and can be made to fail.
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "libs/kv/keys.h"
#include "libs/store/local_store.h"
#include "services/tenant/csv.h"
#include "services/tenant/directory_service.h"
#include "services/tenant/domain_service.h"
#include "services/tenant/tenant_service.h"

namespace mailgrid::tenant {
namespace {

class NoDns final : public Resolver {
 public:
  absl::StatusOr<Lookups> LookupAll(const std::vector<LookupKey>&) override {
    return absl::UnavailableError("no DNS in this test");
  }
};

class FakePeers final : public DirectoryPeers {
 public:
  bool identity_configured() const override { return identity; }
  bool mailstore_configured() const override { return mailstore; }
  uint32_t shards() const override { return 3; }
  absl::Status SetInitialPasswords(const identity::v1::SetInitialPasswordRequest& r) override {
    absl::MutexLock l(&mu);
    if (!identity_status.ok()) return identity_status;
    for (const auto& e : r.entries()) passwords[e.user_id()] = e;
    return absl::OkStatus();
  }
  absl::Status CreateMailbox(uint32_t shard, const mailstore::v1::CreateMailboxRequest& r) override {
    absl::MutexLock l(&mu);
    if (!mailstore_status.ok()) return mailstore_status;
    mailboxes[r.mailbox_id()] = shard;
    return absl::OkStatus();
  }
  absl::Status DeleteMailbox(uint32_t, const std::string& id) override {
    absl::MutexLock l(&mu);
    mailboxes.erase(id);
    deleted.insert(id);
    return absl::OkStatus();
  }
  absl::Status DeleteCredentials(const std::string& user_id) override {
    absl::MutexLock l(&mu);
    passwords.erase(user_id);
    return absl::OkStatus();
  }
  absl::Mutex mu;
  bool identity = true, mailstore = true;
  absl::Status identity_status, mailstore_status;
  std::map<std::string, identity::v1::InitialPassword> passwords;
  std::map<std::string, uint32_t> mailboxes;
  std::set<std::string> deleted;
};

struct RpcError {
  grpc::StatusCode code;
  std::string message, reason, field;
  std::vector<common::v1::LimitDetail> limits;
};

RpcError Details(const grpc::Status& s) {
  RpcError e{s.error_code(), s.error_message(), "", "", {}};
  common::v1::RpcStatus r;
  if (!s.error_details().empty() && r.ParseFromString(s.error_details())) {
    for (const auto& any : r.details()) {
      common::v1::ErrorDetail d;
      common::v1::LimitDetail l;
      if (any.UnpackTo(&d)) {
        e.reason = d.reason();
        e.field = d.field();
      } else if (any.UnpackTo(&l)) {
        e.limits.push_back(l);
      }
    }
  }
  return e;
}

class DirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/directory_test_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    kv_ = std::move(*store::LocalStore::Open(dir_));
    store_ = std::make_unique<TenantStore>(kv_.get());
    signer_ = *auth::TokenSigner::Generate("k1");
    auto verifier = std::make_unique<auth::TokenVerifier>("mailgrid");
    ASSERT_TRUE(verifier->AddPublicPem("k1", *signer_->PublicPem()).ok());
    auth_ = std::make_unique<Authenticator>(std::move(verifier), store_.get());
    options_.mx_hosts_raw = {"mx1.mg.example:10"};
    options_.resolve_cache_ttl = absl::Milliseconds(200);
    ASSERT_TRUE(Finish(options_).ok());
    tenants_ = std::make_unique<TenantServiceImpl>(store_.get(), auth_.get(), &options_);
    domains_ = std::make_unique<DomainServiceImpl>(store_.get(), auth_.get(), &options_,
                                                   std::make_unique<NoDns>(),
                                                   *KeySealer::Create(std::string(32, 'k')));
    directory_ =
        std::make_unique<DirectoryServiceImpl>(store_.get(), auth_.get(), &options_, &peers_);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(tenants_.get());
    builder.RegisterService(domains_.get());
    builder.RegisterService(directory_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    auto ch = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                  grpc::InsecureChannelCredentials());
    ts_ = v1::TenantService::NewStub(ch);
    ds_ = v1::DomainService::NewStub(ch);
    dir_stub_ = v1::DirectoryService::NewStub(ch);
    operator_ = Mint("", {auth::kRolePlatformOperator});
    service_ = Mint("", {auth::kRoleService}, "relayd");
    std::tie(tenant_, admin_) = ActiveTenant("Acme", "boss@acme.example", 3);
    Domain(admin_, "acme.test", true);
    Domain(admin_, "acme-alias.test", true);
    Domain(admin_, "pending.test", false);
    std::tie(other_, other_admin_) = ActiveTenant("Other", "boss@other.example", 3);
    Domain(other_admin_, "other.test", true);
  }
  void TearDown() override { server_->Shutdown(); }

  std::string Mint(const std::string& tenant, std::vector<std::string> roles,
                   const std::string& subject = "admin-1") {
    auth::Claims c;
    c.issuer = "mailgrid";
    c.subject = subject;
    c.tenant_id = tenant;
    c.roles = std::move(roles);
    c.issued_at = absl::Now();
    c.expires_at = absl::Now() + absl::Hours(1);
    return *signer_->Sign(c);
  }
  std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  }

  // ACTIVE tenant, plan with 5 mailboxes and 2 seats; returns (id, admin token).
  std::pair<std::string, std::string> ActiveTenant(const std::string& name,
                                                   const std::string& email, int domains) {
    v1::RegisterTenantRequest r;
    r.set_company_name(name);
    r.mutable_address()->set_street("1 Road");
    r.mutable_address()->set_country_code("cn");
    r.mutable_contact()->set_name("Boss");
    r.mutable_contact()->set_phone("+86 138 0013 8000");
    r.mutable_contact()->set_email(email);
    v1::RegisterTenantResponse reg;
    EXPECT_TRUE(ts_->RegisterTenant(Ctx("").get(), r, &reg).ok());
    const std::string id = reg.tenant().tenant_id();
    // Straight to ACTIVE through the store (documents/review are issue 4's tests).
    auto rec = *store_->Read<storage::TenantRecord>(keys::Tenant(id));
    rec.value.mutable_tenant()->set_state(v1::TENANT_STATE_ACTIVE);
    EXPECT_TRUE(*store_->Commit(Batch().Put(keys::Tenant(id), rec.value)));
    v1::CreatePlanRequest plan;
    plan.mutable_plan()->set_name("plan-" + name);
    plan.mutable_plan()->mutable_mailboxes()->set_value(5);
    plan.mutable_plan()->mutable_domains()->set_value(domains);
    plan.mutable_plan()->mutable_shared_mailbox_seats()->set_value(2);
    plan.mutable_plan()->add_features(v1::PLAN_FEATURE_SHARED_MAILBOXES);
    v1::Plan created;
    EXPECT_TRUE(ts_->CreatePlan(Ctx(operator_).get(), plan, &created).ok());
    v1::SetTenantPlanRequest set;
    set.set_tenant_id(id);
    set.set_plan_id(created.plan_id());
    v1::Tenant t;
    EXPECT_TRUE(ts_->SetTenantPlan(Ctx(operator_).get(), set, &t).ok());
    return {id, Mint(id, {auth::kRoleUser, auth::kRoleTenantAdmin})};
  }

  void Domain(const std::string& token, const std::string& name, bool verified) {
    v1::AddDomainRequest add;
    add.set_name(name);
    v1::Domain d;
    grpc::Status s = ds_->AddDomain(Ctx(token).get(), add, &d);
    ASSERT_TRUE(s.ok()) << s.error_message();
    if (!verified) return;
    v1::OverrideVerificationRequest ov;
    ov.set_name(name);
    ov.set_reason("test");
    ASSERT_TRUE(ds_->OverrideVerification(Ctx(operator_).get(), ov, &d).ok());
  }

  grpc::Status CreateUser(const std::string& address, v1::CreateUserResponse* out,
                          std::vector<std::string> depts = {},
                          const std::string& token = "") {
    v1::CreateUserRequest r;
    r.set_address(address);
    r.set_display_name("User " + address);
    for (auto& d : depts) r.add_department_ids(d);
    return dir_stub_->CreateUser(Ctx(token.empty() ? admin_ : token).get(), r, out);
  }
  std::string User(const std::string& address, std::vector<std::string> depts = {}) {
    v1::CreateUserResponse out;
    grpc::Status s = CreateUser(address, &out, depts);
    EXPECT_TRUE(s.ok()) << address << ": " << s.error_message();
    return out.user().user_id();
  }
  grpc::Status Resolve(const std::string& address, v1::ResolveResponse* out,
                       v1::SenderContext sender = {}) {
    v1::ResolveRequest r;
    r.set_address(address);
    *r.mutable_sender() = sender;
    return dir_stub_->Resolve(Ctx(service_).get(), r, out);
  }
  std::set<std::string> Recipients(const std::string& address) {
    v1::ResolveResponse out;
    grpc::Status s = Resolve(address, &out);
    EXPECT_TRUE(s.ok()) << address << ": " << s.error_message();
    std::set<std::string> r;
    for (const auto& x : out.recipients()) r.insert(x.address());
    return r;
  }
  std::string Dept(const std::string& name, const std::string& parent = "") {
    v1::CreateDepartmentRequest r;
    r.set_name(name);
    r.set_parent_id(parent);
    v1::Department d;
    grpc::Status s = dir_stub_->CreateDepartment(Ctx(admin_).get(), r, &d);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return d.department_id();
  }
  std::string Group(const std::string& address, std::vector<v1::GroupMember> members = {}) {
    v1::CreateGroupRequest r;
    r.set_name(address);
    r.set_address(address);
    r.set_posting_policy(v1::POSTING_POLICY_ANYONE);
    for (auto& m : members) *r.add_members() = m;
    v1::Group g;
    grpc::Status s = dir_stub_->CreateGroup(Ctx(admin_).get(), r, &g);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return g.group_id();
  }
  static v1::GroupMember Member(v1::MemberKind kind, const std::string& id) {
    v1::GroupMember m;
    m.set_kind(kind);
    m.set_id(id);
    return m;
  }
  size_t KeysUnder(const std::string& prefix) { return store_->ScanAll(prefix, true)->size(); }
  size_t UserKeys() { return KeysUnder(dkeys::UserPrefix(tenant_)); }

  std::string dir_;
  std::unique_ptr<store::LocalStore> kv_;
  std::unique_ptr<TenantStore> store_;
  std::unique_ptr<auth::TokenSigner> signer_;
  std::unique_ptr<Authenticator> auth_;
  Options options_;
  FakePeers peers_;
  std::unique_ptr<TenantServiceImpl> tenants_;
  std::unique_ptr<DomainServiceImpl> domains_;
  std::unique_ptr<DirectoryServiceImpl> directory_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::TenantService::Stub> ts_;
  std::unique_ptr<v1::DomainService::Stub> ds_;
  std::unique_ptr<v1::DirectoryService::Stub> dir_stub_;
  std::string operator_, service_, tenant_, admin_, other_, other_admin_;
};

TEST_F(DirectoryTest, CreateUserPlacesMailboxHandsPasswordAndResolves) {
  v1::CreateUserResponse created;
  ASSERT_TRUE(CreateUser("Alice@ACME.test", &created).ok());
  const v1::User& u = created.user();
  EXPECT_EQ(u.address(), "Alice@acme.test");
  EXPECT_FALSE(created.generated_password().empty());
  EXPECT_LT(u.shard(), 3u);
  {
    absl::MutexLock l(&peers_.mu);
    ASSERT_EQ(peers_.passwords.count(u.user_id()), 1u);
    EXPECT_TRUE(peers_.passwords[u.user_id()].must_change());
    EXPECT_EQ(peers_.passwords[u.user_id()].password(), created.generated_password());
    ASSERT_EQ(peers_.mailboxes.count(u.mailbox_id()), 1u);
    EXPECT_EQ(peers_.mailboxes[u.mailbox_id()], u.shard());
  }
  // Least-loaded placement: three users land on three different shards.
  std::set<uint32_t> shards = {u.shard()};
  for (const char* a : {"bob@acme.test", "carol@acme.test"}) {
    v1::CreateUserResponse r;
    ASSERT_TRUE(CreateUser(a, &r).ok());
    shards.insert(r.user().shard());
  }
  EXPECT_EQ(shards.size(), 3u);

  v1::ResolveResponse res;
  ASSERT_TRUE(Resolve("alice+news@acme.test", &res).ok());
  EXPECT_EQ(res.kind(), v1::ADDRESS_KIND_USER);
  EXPECT_EQ(res.detail(), "news");
  EXPECT_EQ(res.canonical_address(), "Alice@acme.test");
  ASSERT_EQ(res.recipients_size(), 1);
  EXPECT_EQ(res.recipients(0).mailbox_id(), u.mailbox_id());
  EXPECT_EQ(res.recipients(0).shard(), u.shard());
  EXPECT_EQ(res.posting_decision(), v1::POSTING_DECISION_ALLOWED);

  RpcError e = Details(Resolve("nobody@acme.test", &res));
  EXPECT_EQ(e.code, grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(e.reason, "ADDRESS_NOT_FOUND");
  e = Details(Resolve("alice@elsewhere.example", &res));
  EXPECT_EQ(e.reason, "DOMAIN_NOT_HOSTED");
  e = Details(Resolve("alice@pending.test", &res));  // claimed but not verified
  EXPECT_EQ(e.reason, "DOMAIN_NOT_HOSTED");

  // GetPrincipal (identityd): service tokens only.
  v1::GetPrincipalRequest gp;
  gp.set_address("ALICE@acme.test");
  v1::Principal pr;
  ASSERT_TRUE(dir_stub_->GetPrincipal(Ctx(service_).get(), gp, &pr).ok());
  EXPECT_EQ(pr.user().user_id(), u.user_id());
  EXPECT_EQ(pr.tenant_state(), v1::TENANT_STATE_ACTIVE);
  ASSERT_EQ(pr.mailboxes_size(), 1);
  EXPECT_EQ(pr.mailboxes(0).mailbox_id(), u.mailbox_id());
  EXPECT_EQ(dir_stub_->GetPrincipal(Ctx(admin_).get(), gp, &pr).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Resolve: anonymous refused; the other tenant's admin sees "not hosted".
  v1::ResolveRequest rr;
  rr.set_address("alice@acme.test");
  EXPECT_EQ(dir_stub_->Resolve(Ctx("").get(), rr, &res).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  e = Details(dir_stub_->Resolve(Ctx(other_admin_).get(), rr, &res));
  EXPECT_EQ(e.reason, "DOMAIN_NOT_HOSTED");
  ASSERT_TRUE(dir_stub_->Resolve(Ctx(admin_).get(), rr, &res).ok());

  // The audit log has the creation.
  v1::ListAdminAuditLogRequest al;
  v1::ListAdminAuditLogResponse log;
  al.set_action_prefix("user.");
  ASSERT_TRUE(dir_stub_->ListAdminAuditLog(Ctx(admin_).get(), al, &log).ok());
  EXPECT_EQ(log.entries_size(), 3);
}

TEST_F(DirectoryTest, BadAddressesAreRefusedPreciselyAndNothingIsWritten) {
  User("Ünal@acme.test");  // NFC
  const size_t users = UserKeys();
  const size_t addresses = KeysUnder(kv::GlobalPrefix("addr"));
  v1::CreateUserResponse out;
  RpcError e = Details(CreateUser("x@pending.test", &out));
  EXPECT_EQ(e.code, grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(e.reason, "DOMAIN_NOT_VERIFIED");
  e = Details(CreateUser("x@other.test", &out));  // another tenant's domain
  EXPECT_EQ(e.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(e.reason, "DOMAIN_NOT_IN_TENANT");
  EXPECT_EQ(e.field, "address");
  RpcError nobody = Details(CreateUser("x@nobody.example", &out));  // nobody's domain
  EXPECT_EQ(nobody.code, e.code);
  EXPECT_EQ(nobody.reason, "DOMAIN_NOT_IN_TENANT");
  EXPECT_NE(nobody.message.find("is not a domain of this tenant"), std::string::npos);
  EXPECT_NE(e.message.find("is not a domain of this tenant"), std::string::npos);
  e = Details(CreateUser("not an address", &out));
  EXPECT_EQ(e.reason, "BAD_ADDRESS");
  e = Details(CreateUser("ÜNAL@ACME.TEST", &out));  // case
  EXPECT_EQ(e.code, grpc::StatusCode::ALREADY_EXISTS);
  e = Details(CreateUser("U\xCC\x88nal@acme.test", &out));  // NFD spelling of Ü
  EXPECT_EQ(e.code, grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(UserKeys(), users);
  EXPECT_EQ(KeysUnder(kv::GlobalPrefix("addr")), addresses);
  {
    absl::MutexLock l(&peers_.mu);
    EXPECT_EQ(peers_.mailboxes.size(), 1u);  // no mailbox for a refused user
  }
  // A group cannot take a user's address either.
  v1::CreateGroupRequest g;
  g.set_name("x");
  g.set_address("unal@acme.test");  // different: allowed
  v1::Group group;
  ASSERT_TRUE(dir_stub_->CreateGroup(Ctx(admin_).get(), g, &group).ok());
  g.set_address("ünal@acme.test");
  EXPECT_EQ(dir_stub_->CreateGroup(Ctx(admin_).get(), g, &group).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(DirectoryTest, PeersDownMeansUnavailableAndNothingHalfWritten) {
  peers_.mailstore_status = absl::UnavailableError("shard down");
  v1::CreateUserResponse out;
  EXPECT_EQ(CreateUser("dana@acme.test", &out).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(UserKeys(), 0u);
  peers_.mailstore_status = absl::OkStatus();
  peers_.identity_status = absl::InvalidArgumentError("entries[0].password: TOO_COMMON");
  EXPECT_EQ(CreateUser("dana@acme.test", &out).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(UserKeys(), 0u);
  // Not configured: created, marked pending; the background round creates
  // the mailbox once mailstored is there.
  peers_.identity_status = absl::OkStatus();
  peers_.identity = false;
  peers_.mailstore = false;
  ASSERT_TRUE(CreateUser("dana@acme.test", &out).ok());
  auto rec = *ReadUser(*store_, tenant_, out.user().user_id());
  EXPECT_TRUE(rec.value.mailbox_pending());
  EXPECT_TRUE(rec.value.credential_pending());
  peers_.mailstore = true;
  ASSERT_TRUE(directory_->BackgroundRound(absl::Now()).ok());
  rec = *ReadUser(*store_, tenant_, out.user().user_id());
  EXPECT_FALSE(rec.value.mailbox_pending());
  absl::MutexLock l(&peers_.mu);
  EXPECT_EQ(peers_.mailboxes.count(out.user().mailbox_id()), 1u);
}

TEST_F(DirectoryTest, PlanMailboxLimit) {
  for (int i = 0; i < 5; ++i) User(absl::StrCat("u", i, "@acme.test"));
  v1::CreateUserResponse out;
  RpcError e = Details(CreateUser("u5@acme.test", &out));
  EXPECT_EQ(e.code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_EQ(e.limits.size(), 1u);
  EXPECT_EQ(e.limits[0].limit(), "plan.mailboxes");
  EXPECT_EQ(e.limits[0].usage(), 5);
  EXPECT_EQ(UserKeys(), 5u);
  // Deleting frees a mailbox; restoring needs room again.
  v1::DeleteUserRequest del;
  v1::ListUsersRequest lr;
  v1::ListUsersResponse users;
  ASSERT_TRUE(dir_stub_->ListUsers(Ctx(admin_).get(), lr, &users).ok());
  ASSERT_EQ(users.users_size(), 5);
  del.set_user_id(users.users(0).user_id());
  v1::User u;
  ASSERT_TRUE(dir_stub_->DeleteUser(Ctx(admin_).get(), del, &u).ok());
  EXPECT_EQ(u.state(), v1::USER_STATE_DELETED);
  User("u5@acme.test");
  v1::EnableUserRequest en;
  en.set_user_id(u.user_id());
  EXPECT_EQ(dir_stub_->EnableUser(Ctx(admin_).get(), en, &u).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  v1::ResolveResponse res;
  EXPECT_EQ(Details(Resolve(users.users(0).address(), &res)).reason, "ADDRESS_DELETED");
}

TEST_F(DirectoryTest, DepartmentTree) {
  std::string sales = Dept("Sales");
  std::string east = Dept("East", sales);
  std::string sh = Dept("Shanghai", east);
  v1::ResolveDepartmentPathRequest rp;
  rp.set_path("sales/EAST/Shanghai");
  v1::Department d;
  ASSERT_TRUE(dir_stub_->ResolveDepartmentPath(Ctx(admin_).get(), rp, &d).ok());
  EXPECT_EQ(d.department_id(), sh);
  EXPECT_EQ(d.path(), "Sales/East/Shanghai");
  EXPECT_EQ(d.depth(), 2);
  // Sibling names collide case-insensitively; '/' is refused.
  v1::CreateDepartmentRequest cr;
  cr.set_name("EAST");
  cr.set_parent_id(sales);
  EXPECT_EQ(dir_stub_->CreateDepartment(Ctx(admin_).get(), cr, &d).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  cr.set_name("a/b");
  EXPECT_EQ(Details(dir_stub_->CreateDepartment(Ctx(admin_).get(), cr, &d)).reason, "HAS_SLASH");
  // Moving under its own descendant is a CYCLE; nothing changes.
  v1::MoveDepartmentRequest mv;
  mv.set_department_id(sales);
  mv.set_new_parent_id(sh);
  RpcError e = Details(dir_stub_->MoveDepartment(Ctx(admin_).get(), mv, &d));
  EXPECT_EQ(e.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(e.reason, "CYCLE");
  EXPECT_EQ(e.field, "new_parent_id");
  mv.set_new_parent_id(sales);
  EXPECT_EQ(Details(dir_stub_->MoveDepartment(Ctx(admin_).get(), mv, &d)).reason, "CYCLE");
  ASSERT_TRUE(dir_stub_->ResolveDepartmentPath(Ctx(admin_).get(), rp, &d).ok());
  // Deleting a non-empty department needs recursive.
  User("sam@acme.test", {sh});
  v1::DeleteDepartmentRequest del;
  del.set_department_id(east);
  v1::DeleteDepartmentResponse dr;
  EXPECT_EQ(Details(dir_stub_->DeleteDepartment(Ctx(admin_).get(), del, &dr)).reason, "NOT_EMPTY");
  v1::ListDepartmentMembersRequest lm;
  lm.set_department_id(sales);
  lm.set_recursive(true);
  v1::ListDepartmentMembersResponse members;
  ASSERT_TRUE(dir_stub_->ListDepartmentMembers(Ctx(admin_).get(), lm, &members).ok());
  ASSERT_EQ(members.users_size(), 1);
  del.set_recursive(true);
  ASSERT_TRUE(dir_stub_->DeleteDepartment(Ctx(admin_).get(), del, &dr).ok());
  EXPECT_EQ(dr.departments_deleted(), 2);
  EXPECT_EQ(dr.members_detached(), 1);
  v1::GetUserRequest gu;
  gu.set_address("sam@acme.test");
  v1::User u;
  ASSERT_TRUE(dir_stub_->GetUser(Ctx(admin_).get(), gu, &u).ok());
  EXPECT_EQ(u.department_ids_size(), 0);
}

TEST_F(DirectoryTest, GroupsNestDepartmentsFollowMovesAndCyclesAreRefused) {
  std::string sales = Dept("Sales");
  std::string east = Dept("East", sales);
  std::string marketing = Dept("Marketing");
  User("ann@acme.test", {east});
  User("ben@acme.test", {sales});
  std::string carl = User("carl@acme.test");
  std::string inner = Group("inner@acme.test", {Member(v1::MEMBER_KIND_USER, carl)});
  std::string middle = Group("middle@acme.test", {Member(v1::MEMBER_KIND_GROUP, inner),
                                                  Member(v1::MEMBER_KIND_DEPARTMENT, sales)});
  std::string outer = Group("outer@acme.test", {Member(v1::MEMBER_KIND_GROUP, middle),
                                                Member(v1::MEMBER_KIND_USER, carl)});
  EXPECT_EQ(Recipients("outer@acme.test"),
            (std::set<std::string>{"ann@acme.test", "ben@acme.test", "carl@acme.test"}));
  // inner -> outer would close outer -> middle -> inner -> outer.
  v1::AddGroupMemberRequest add;
  add.set_group_id(inner);
  *add.mutable_member() = Member(v1::MEMBER_KIND_GROUP, outer);
  v1::Group g;
  RpcError e = Details(dir_stub_->AddGroupMember(Ctx(admin_).get(), add, &g));
  EXPECT_EQ(e.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(e.reason, "CYCLE");
  add.set_group_id(outer);
  *add.mutable_member() = Member(v1::MEMBER_KIND_GROUP, outer);
  EXPECT_EQ(Details(dir_stub_->AddGroupMember(Ctx(admin_).get(), add, &g)).reason, "CYCLE");
  // A loop that got into the store anyway (older data, a bug) is expanded once.
  auto rec = *ReadGroup(*store_, tenant_, inner);
  *rec.value.add_members() = Member(v1::MEMBER_KIND_GROUP, outer);
  Batch b;
  b.Put(dkeys::Group(tenant_, inner), rec.value);
  TouchDirectory(b, tenant_);
  ASSERT_TRUE(*store_->Commit(std::move(b)));
  EXPECT_EQ(Recipients("inner@acme.test"),
            (std::set<std::string>{"ann@acme.test", "ben@acme.test", "carl@acme.test"}));
  // Moving East (with ann) out of Sales: the group follows.
  v1::MoveDepartmentRequest mv;
  mv.set_department_id(east);
  mv.set_new_parent_id(marketing);
  v1::Department d;
  ASSERT_TRUE(dir_stub_->MoveDepartment(Ctx(admin_).get(), mv, &d).ok());
  EXPECT_EQ(d.path(), "Marketing/East");
  EXPECT_EQ(Recipients("outer@acme.test"),
            (std::set<std::string>{"ben@acme.test", "carl@acme.test"}));
  // Posting policy: MEMBERS.
  v1::SetGroupPolicyRequest pol;
  pol.set_group_id(outer);
  pol.set_posting_policy(v1::POSTING_POLICY_MEMBERS);
  ASSERT_TRUE(dir_stub_->SetGroupPolicy(Ctx(admin_).get(), pol, &g).ok());
  v1::ResolveResponse res;
  ASSERT_TRUE(Resolve("outer@acme.test", &res).ok());
  EXPECT_EQ(res.posting_decision(), v1::POSTING_DECISION_DENIED);
  v1::SenderContext member;
  member.set_authenticated(true);
  member.set_tenant_id(tenant_);
  member.set_user_id(carl);
  ASSERT_TRUE(Resolve("outer@acme.test", &res, member).ok());
  EXPECT_EQ(res.posting_decision(), v1::POSTING_DECISION_ALLOWED);
}

TEST_F(DirectoryTest, AliasesDomainAliasCatchAllAndSharedMailboxes) {
  std::string alice = User("alice@acme.test");
  v1::AddAliasRequest al;
  al.set_address("sales@acme.test");
  al.set_user_id(alice);
  v1::Alias alias;
  ASSERT_TRUE(dir_stub_->AddAlias(Ctx(admin_).get(), al, &alias).ok());
  v1::ResolveResponse res;
  ASSERT_TRUE(Resolve("sales@acme.test", &res).ok());
  EXPECT_EQ(res.kind(), v1::ADDRESS_KIND_ALIAS);
  // Domain alias and catch-all.
  v1::SetDomainMailSettingsRequest set;
  set.set_domain("acme-alias.test");
  set.mutable_settings()->set_alias_of("acme.test");
  v1::DomainMailSettings s;
  ASSERT_TRUE(dir_stub_->SetDomainMailSettings(Ctx(admin_).get(), set, &s).ok());
  ASSERT_TRUE(Resolve("alice@acme-alias.test", &res).ok());
  EXPECT_EQ(res.canonical_address(), "alice@acme.test");
  set.set_domain("acme.test");
  set.mutable_settings()->set_alias_of("acme-alias.test");
  EXPECT_EQ(Details(dir_stub_->SetDomainMailSettings(Ctx(admin_).get(), set, &s)).reason, "CHAIN");
  set.mutable_settings()->clear_alias_of();
  set.mutable_settings()->set_catch_all_address("alice@acme.test");
  ASSERT_TRUE(dir_stub_->SetDomainMailSettings(Ctx(admin_).get(), set, &s).ok());
  ASSERT_TRUE(Resolve("random@acme.test", &res).ok());
  EXPECT_EQ(res.kind(), v1::ADDRESS_KIND_CATCH_ALL);
  // Rename keeps the old address as an alias.
  v1::RenameUserRequest rn;
  rn.set_user_id(alice);
  rn.set_new_address("alice.w@acme.test");
  v1::User u;
  ASSERT_TRUE(dir_stub_->RenameUser(Ctx(admin_).get(), rn, &u).ok());
  ASSERT_TRUE(Resolve("alice@acme.test", &res).ok());
  EXPECT_EQ(res.kind(), v1::ADDRESS_KIND_ALIAS);
  EXPECT_EQ(res.recipients(0).address(), "alice.w@acme.test");
  // Shared mailbox with seats from the plan (2).
  v1::CreateSharedMailboxRequest cs;
  cs.set_address("support@acme.test");
  v1::SharedMailbox sm;
  ASSERT_TRUE(dir_stub_->CreateSharedMailbox(Ctx(admin_).get(), cs, &sm).ok());
  std::vector<std::string> agents = {alice, User("bo@acme.test"), User("cy@acme.test")};
  v1::AssignSeatRequest as;
  as.set_shared_mailbox_id(sm.shared_mailbox_id());
  as.set_can_send_as(true);
  v1::Seat seat;
  for (int i = 0; i < 2; ++i) {
    as.set_user_id(agents[i]);
    ASSERT_TRUE(dir_stub_->AssignSeat(Ctx(admin_).get(), as, &seat).ok());
  }
  as.set_user_id(agents[2]);
  RpcError e = Details(dir_stub_->AssignSeat(Ctx(admin_).get(), as, &seat));
  EXPECT_EQ(e.code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_EQ(e.limits.size(), 1u);
  EXPECT_EQ(e.limits[0].limit(), "plan.shared_mailbox_seats");
  v1::GetPrincipalRequest gp;
  gp.set_user_id(alice);
  v1::Principal pr;
  ASSERT_TRUE(dir_stub_->GetPrincipal(Ctx(service_).get(), gp, &pr).ok());
  ASSERT_EQ(pr.mailboxes_size(), 2);
  EXPECT_EQ(pr.mailboxes(1).mailbox_id(), sm.mailbox_id());
  v1::CanSendAsRequest csa;
  csa.set_user_id(alice);
  csa.set_address("support@acme.test");
  v1::CanSendAsResponse ca;
  ASSERT_TRUE(dir_stub_->CanSendAs(Ctx(service_).get(), csa, &ca).ok());
  EXPECT_TRUE(ca.allowed());
  EXPECT_EQ(ca.grant(), v1::SEND_AS_GRANT_SHARED_MAILBOX_SEAT);
  csa.set_user_id(agents[2]);
  ASSERT_TRUE(dir_stub_->CanSendAs(Ctx(service_).get(), csa, &ca).ok());
  EXPECT_FALSE(ca.allowed());
}

TEST_F(DirectoryTest, ImportIsAllOrNothingWithEveryBadRowReported) {
  User("taken@acme.test");
  const std::string bad =
      "address,name,department,phone,password\n"
      "ok1@acme.test,One,Sales/East,,\n"            // line 2: fine
      "not-an-address,Two,,,\n"                     // 3: BAD_ADDRESS
      "ok1@ACME.test,Three,,,\n"                    // 4: DUPLICATE_IN_FILE
      "taken@acme.test,Four,,,\n"                   // 5: ALREADY_EXISTS
      "five@other.test,Five,,,\n"                   // 6: DOMAIN_NOT_IN_TENANT
      "six@acme.test,Six,,12345,\n"                 // 7: NOT_E164
      "seven@acme.test,Seven,,,longenough1\n";      // 8: fine
  v1::ImportUsersRequest req;
  req.set_csv(bad);
  v1::ImportUsersResponse resp;
  ASSERT_TRUE(dir_stub_->ImportUsers(Ctx(admin_).get(), req, &resp).ok());
  std::map<int64_t, std::string> errors;
  for (const auto& e : resp.errors()) errors[e.line()] = e.reason();
  EXPECT_EQ(errors, (std::map<int64_t, std::string>{{3, "BAD_ADDRESS"},
                                                    {4, "DUPLICATE_IN_FILE"},
                                                    {5, "ALREADY_EXISTS"},
                                                    {6, "DOMAIN_NOT_IN_TENANT"},
                                                    {7, "NOT_E164"}}));
  EXPECT_EQ(resp.created_size(), 0);
  EXPECT_EQ(UserKeys(), 1u);
  EXPECT_EQ(KeysUnder(kv::KeyBuilder(kv::TenantPrefix(tenant_)).Str("dept").Build()), 0u);
  // Unknown columns are refused as a whole.
  req.set_csv("address,name,shoe_size\n");
  EXPECT_EQ(Details(dir_stub_->ImportUsers(Ctx(admin_).get(), req, &resp)).reason,
            "UNKNOWN_COLUMN");
  // A good file creates everyone, the departments and returns passwords.
  req.set_csv(
      "\xEF\xBB\xBF" "address,name,department,password\r\n"
      "ok1@acme.test,\"One, the first\",Sales/East,\r\n"
      "ok2@acme.test,Two,sales/east,longenough1\r\n");
  resp.Clear();
  ASSERT_TRUE(dir_stub_->ImportUsers(Ctx(admin_).get(), req, &resp).ok());
  ASSERT_EQ(resp.errors_size(), 0) << resp.errors(0).message();
  ASSERT_EQ(resp.created_size(), 2);
  EXPECT_EQ(resp.created(0).user().display_name(), "One, the first");
  EXPECT_FALSE(resp.created(0).initial_password().empty());
  EXPECT_EQ(resp.created(1).initial_password(), "longenough1");
  EXPECT_EQ(resp.departments_created_size(), 2);
  EXPECT_EQ(resp.created(0).user().department_ids(0), resp.created(1).user().department_ids(0));
  // Over the plan (5 mailboxes; 3 used): the whole import is refused.
  req.set_csv("address,name\na@acme.test,A\nb@acme.test,B\nc@acme.test,C\n");
  EXPECT_EQ(dir_stub_->ImportUsers(Ctx(admin_).get(), req, &resp).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(UserKeys(), 3u);
}

TEST_F(DirectoryTest, ResolveCacheSeesChangesMadeHere) {
  std::string u = User("eve@acme.test");
  EXPECT_EQ(Recipients("eve@acme.test").size(), 1u);
  EXPECT_EQ(Recipients("eve@acme.test").size(), 1u);  // cached
  v1::DeleteUserRequest del;
  del.set_user_id(u);
  v1::User out;
  ASSERT_TRUE(dir_stub_->DeleteUser(Ctx(admin_).get(), del, &out).ok());
  v1::ResolveResponse res;
  EXPECT_EQ(Details(Resolve("eve@acme.test", &res)).reason, "ADDRESS_DELETED");
  // Suspension answers "try later".
  v1::SuspendTenantRequest sus;
  sus.set_tenant_id(tenant_);
  sus.set_reason("test");
  v1::Tenant t;
  ASSERT_TRUE(ts_->SuspendTenant(Ctx(operator_).get(), sus, &t).ok());
  // A change through TenantService is seen within the cache TTL.
  absl::SleepFor(options_.resolve_cache_ttl + absl::Milliseconds(50));
  EXPECT_EQ(Details(Resolve("eve@acme.test", &res)).reason, "TENANT_SUSPENDED");
}

TEST(CsvTest, Rfc4180) {
  auto rows = ParseCsv("a,b\r\n\"x, \"\"y\"\"\",\"multi\nline\"\n\nlast,\n");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_EQ((*rows)[1].fields, (std::vector<std::string>{"x, \"y\"", "multi\nline"}));
  EXPECT_EQ((*rows)[1].line, 2);
  EXPECT_EQ((*rows)[2].line, 5);
  EXPECT_EQ((*rows)[2].fields, (std::vector<std::string>{"last", ""}));
  EXPECT_FALSE(ParseCsv("a,\"open\n").ok());
  EXPECT_FALSE(ParseCsv("a,\"x\"y\n").ok());
}

}  // namespace
}  // namespace mailgrid::tenant
