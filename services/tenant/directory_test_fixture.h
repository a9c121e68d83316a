// The DirectoryService test fixture (directory_service_test.cc,
// directory_policy_test.cc): real gRPC on loopback over LocalStore (real
// RocksDB), real tokens, TenantService/DomainService to build an ACTIVE
// tenant with a VERIFIED domain, and scripted peers (identityd/mailstored/
// relayd) that record calls and can be made to fail.
#pragma once

#include <set>
#include <vector>

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
#include "services/tenant/tenant_test_base.h"

namespace mailgrid::tenant::dirtest {

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
    if (!mailstore_status.ok()) return mailstore_status;
    mailboxes.erase(id);
    deleted.insert(id);
    return absl::OkStatus();
  }
  absl::Status DeleteCredentials(const std::string& user_id) override {
    absl::MutexLock l(&mu);
    passwords.erase(user_id);
    return absl::OkStatus();
  }
  absl::Status SetQuota(uint32_t, const mailstore::v1::SetQuotaRequest& r) override {
    absl::MutexLock l(&mu);
    if (!mailstore) return absl::UnavailableError("mailstored is not configured");
    if (!quota_status.ok()) return quota_status;
    quotas[r.mailbox_id()] = r.limit();
    return absl::OkStatus();
  }
  absl::StatusOr<int64_t> EndSessions(const std::string& user_id, const std::string&) override {
    absl::MutexLock l(&mu);
    if (!identity) return absl::UnavailableError("identityd is not configured");
    if (!sessions_status.ok()) return sessions_status;
    sessions_ended.push_back(user_id);
    return 2;
  }
  absl::Status NotifyRecoveryEmailChanged(
      const identity::v1::NotifyRecoveryEmailChangedRequest& r) override {
    absl::MutexLock l(&mu);
    if (!identity) return absl::UnavailableError("identityd is not configured");
    if (!recovery_status.ok()) return recovery_status;
    recovery_notices.push_back(r);
    return absl::OkStatus();
  }
  bool relay_configured() const override { return relay; }
  absl::Status SubmitMessage(const relay::v1::SubmitMessageRequest& r) override {
    absl::MutexLock l(&mu);
    if (!relay_status.ok()) return relay_status;
    submitted.push_back(r);
    return absl::OkStatus();
  }
  absl::Mutex mu;
  bool identity = true, mailstore = true, relay = true;
  absl::Status identity_status, mailstore_status, quota_status, sessions_status, relay_status,
      recovery_status;
  std::vector<identity::v1::NotifyRecoveryEmailChangedRequest> recovery_notices;
  std::map<std::string, common::v1::QuotaLimit> quotas;
  std::vector<std::string> sessions_ended;
  std::vector<relay::v1::SubmitMessageRequest> submitted;
  std::map<std::string, identity::v1::InitialPassword> passwords;
  std::map<std::string, uint32_t> mailboxes;
  std::set<std::string> deleted;
};

using tenanttest::Details;
using tenanttest::RpcError;

class DirectoryTest : public tenanttest::TenantStoreTest {
 protected:
  void SetUp() override {
    OpenStore("directory_test_");
    if (HasFatalFailure()) return;
    options_.mx_hosts_raw = {"mx1.mg.example:10"};
    options_.resolve_max_staleness = absl::Milliseconds(200);
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
  // TenantStoreTest::TearDown stops the server, then these, then closes
  // the store. Subclasses stop their own threads first.
  void ReleaseServices() override {
    directory_.reset();
    domains_.reset();
    tenants_.reset();
  }

  std::string Mint(const std::string& tenant, std::vector<std::string> roles,
                   const std::string& subject = "admin-1") {
    return Sign(tenant, std::move(roles), subject);
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
  // The ids of a group's direct members, in the order ListGroupMembers gives.
  std::vector<std::string> DirectMemberIds(const std::string& group) {
    v1::ListGroupMembersRequest r;
    r.set_group_id(group);
    v1::ListGroupMembersResponse out;
    grpc::Status s = dir_stub_->ListGroupMembers(Ctx(admin_).get(), r, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::vector<std::string> ids;
    for (const auto& m : out.members()) ids.push_back(m.id());
    return ids;
  }
  size_t KeysUnder(const std::string& prefix) { return store_->ScanAll(prefix, true)->size(); }
  size_t UserKeys() { return KeysUnder(dkeys::UserPrefix(tenant_)); }

  Options options_;
  FakePeers peers_;
  std::unique_ptr<TenantServiceImpl> tenants_;
  std::unique_ptr<DomainServiceImpl> domains_;
  std::unique_ptr<DirectoryServiceImpl> directory_;
  std::unique_ptr<v1::TenantService::Stub> ts_;
  std::unique_ptr<v1::DomainService::Stub> ds_;
  std::unique_ptr<v1::DirectoryService::Stub> dir_stub_;
  std::string operator_, service_, tenant_, admin_, other_, other_admin_;
};

}  // namespace mailgrid::tenant::dirtest
