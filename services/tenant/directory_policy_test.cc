// DirectoryService mail policies and inbox rules (directory_policies.cc):
// audit and monitoring policies (plan feature, validation with the field
// named, versions, who may read), Sieve scripts (own/admin/service, size,
// UTF-8, version reported by Resolve), and their admin audit entries.
#include "services/tenant/directory_test_fixture.h"
#include "services/tenant/errors.h"

namespace mailgrid::tenant {
namespace {

using namespace dirtest;  // NOLINT: the fixture and its helpers

class PolicyTest : public DirectoryTest {
 protected:
  // Moves the tenant to a plan with mail audit and monitoring.
  void GrantPolicyFeatures() {
    v1::CreatePlanRequest plan;
    plan.mutable_plan()->set_name("plan-policies");
    plan.mutable_plan()->mutable_mailboxes()->set_value(5);
    plan.mutable_plan()->mutable_domains()->set_value(3);
    plan.mutable_plan()->add_features(v1::PLAN_FEATURE_MAIL_AUDIT);
    plan.mutable_plan()->add_features(v1::PLAN_FEATURE_MONITORING);
    v1::Plan created;
    ASSERT_TRUE(ts_->CreatePlan(Ctx(operator_).get(), plan, &created).ok());
    v1::SetTenantPlanRequest set;
    set.set_tenant_id(tenant_);
    set.set_plan_id(created.plan_id());
    v1::Tenant t;
    grpc::Status s = ts_->SetTenantPlan(Ctx(operator_).get(), set, &t);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  std::string Auditor(const std::string& address) {
    v1::CreateUserRequest r;
    r.set_address(address);
    r.set_display_name("Auditor");
    r.add_roles(common::v1::ROLE_AUDITOR);
    v1::CreateUserResponse out;
    grpc::Status s = dir_stub_->CreateUser(Ctx(admin_).get(), r, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out.user().user_id();
  }
  grpc::Status SetAudit(const v1::AuditPolicy& p, v1::AuditPolicy* out, int64_t expected = 0,
                        const std::string& token = "") {
    v1::SetAuditPolicyRequest r;
    *r.mutable_policy() = p;
    r.set_expected_version(expected);
    return dir_stub_->SetAuditPolicy(Ctx(token.empty() ? admin_ : token).get(), r, out);
  }
  grpc::Status SetMonitor(const v1::MonitoringPolicy& p, v1::MonitoringPolicy* out,
                          int64_t expected = 0) {
    v1::SetMonitoringPolicyRequest r;
    *r.mutable_policy() = p;
    r.set_expected_version(expected);
    return dir_stub_->SetMonitoringPolicy(Ctx(admin_).get(), r, out);
  }
  grpc::Status SetSieve(const std::string& token, const std::string& user_id,
                        const std::string& script, v1::SieveScript* out, int64_t expected = 0) {
    v1::SetSieveScriptRequest r;
    r.set_user_id(user_id);
    r.set_script(script);
    r.set_expected_version(expected);
    return dir_stub_->SetSieveScript(Ctx(token).get(), r, out);
  }
  std::vector<v1::AdminAuditEntry> AuditLog(const std::string& prefix) {
    v1::ListAdminAuditLogRequest r;
    r.set_action_prefix(prefix);
    v1::ListAdminAuditLogResponse log;
    EXPECT_TRUE(dir_stub_->ListAdminAuditLog(Ctx(admin_).get(), r, &log).ok());
    return {log.entries().begin(), log.entries().end()};
  }
};

TEST_F(PolicyTest, AuditPolicyNeedsThePlanFeatureAndIsValidatedVersionedAndAudited) {
  v1::AuditPolicy empty;
  v1::GetAuditPolicyRequest get;
  ASSERT_TRUE(dir_stub_->GetAuditPolicy(Ctx(admin_).get(), get, &empty).ok());
  EXPECT_EQ(empty.version(), 0);
  EXPECT_EQ(empty.tenant_id(), tenant_);

  const std::string alice = User("alice@acme.test");
  v1::AddAliasRequest alias;
  alias.set_address("ali@acme.test");
  alias.set_user_id(alice);
  v1::Alias made;
  ASSERT_TRUE(dir_stub_->AddAlias(Ctx(admin_).get(), alias, &made).ok());
  const std::string sales = Dept("Sales");
  const std::string auditor = Auditor("audit@acme.test");

  v1::AuditPolicy p;
  p.set_enabled(true);
  auto* rule = p.add_rules();
  rule->set_name("external with attachments");
  rule->set_enabled(true);
  rule->add_sender_addresses("ALI@acme.test");
  rule->add_sender_department_ids(sales);
  rule->set_has_external_recipient(true);
  rule->add_keywords("机密");
  p.add_auditor_user_ids(auditor);
  v1::AuditPolicy out;
  RpcError e = Details(SetAudit(p, &out));
  EXPECT_EQ(e.code, grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(e.reason, "PLAN_FEATURE_MISSING");

  GrantPolicyFeatures();
  grpc::Status s = SetAudit(p, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.version(), 1);
  ASSERT_EQ(out.rules_size(), 1);
  EXPECT_FALSE(out.rules(0).rule_id().empty());
  // The alias is stored as its user's primary address.
  EXPECT_EQ(out.rules(0).sender_addresses(0), "alice@acme.test");
  EXPECT_EQ(out.updated_by().user_id(), "admin-1");

  // Stale expected_version: ABORTED, nothing changed.
  p.set_enabled(false);
  EXPECT_EQ(SetAudit(p, &out, /*expected=*/7).error_code(), grpc::StatusCode::ABORTED);
  ASSERT_TRUE(SetAudit(p, &out, /*expected=*/1).ok());
  EXPECT_EQ(out.version(), 2);
  EXPECT_FALSE(out.enabled());

  // Bad input names the field; nothing is written.
  v1::AuditPolicy bad = p;
  bad.mutable_rules(0)->add_sender_department_ids("d-nope");
  e = Details(SetAudit(bad, &out));
  EXPECT_EQ(e.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(e.field, "rules[0].sender_department_ids[1]");
  bad = p;
  bad.add_auditor_user_ids(alice);
  e = Details(SetAudit(bad, &out));
  EXPECT_EQ(e.reason, "NOT_AN_AUDITOR");
  EXPECT_EQ(e.field, "auditor_user_ids[1]");
  bad = p;
  for (int i = 0; i < 101; ++i) bad.mutable_rules(0)->add_keywords(absl::StrCat("k", i));
  e = Details(SetAudit(bad, &out));
  EXPECT_EQ(e.field, "rules[0].keywords");
  EXPECT_EQ(e.reason, "TOO_MANY");
  bad = p;
  bad.mutable_rules(0)->add_sender_addresses("someone@other.test");
  e = Details(SetAudit(bad, &out));
  EXPECT_EQ(e.reason, "NOT_IN_TENANT");
  bad = p;
  bad.mutable_rules(0)->set_rule_id("r-1");
  bad.add_rules()->set_rule_id("r-1");
  e = Details(SetAudit(bad, &out));
  EXPECT_EQ(e.reason, "DUPLICATE");
  EXPECT_EQ(e.field, "rules[1].rule_id");

  v1::AuditPolicy now;
  ASSERT_TRUE(dir_stub_->GetAuditPolicy(Ctx(admin_).get(), get, &now).ok());
  EXPECT_EQ(now.version(), 2);

  // Who reads: auditors and relayd (naming the tenant); not a plain user,
  // not another tenant (NOT_FOUND alike).
  const std::string auditor_token = Mint(tenant_, {auth::kRoleUser, auth::kRoleAuditor}, auditor);
  EXPECT_TRUE(dir_stub_->GetAuditPolicy(Ctx(auditor_token).get(), get, &now).ok());
  EXPECT_EQ(SetAudit(p, &out, 0, auditor_token).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::GetAuditPolicyRequest for_service;
  for_service.set_tenant_id(tenant_);
  EXPECT_TRUE(dir_stub_->GetAuditPolicy(Ctx(service_).get(), for_service, &now).ok());
  EXPECT_EQ(now.version(), 2);
  EXPECT_EQ(dir_stub_->GetAuditPolicy(Ctx(Mint(tenant_, {auth::kRoleUser}, alice)).get(), get, &now)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(dir_stub_->GetAuditPolicy(Ctx(other_admin_).get(), for_service, &now).error_code(),
            grpc::StatusCode::NOT_FOUND);

  auto log = AuditLog("policy.audit.");
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].target_kind(), "policy");
  EXPECT_NE(log[0].summary().find("version 2"), std::string::npos);
}

TEST_F(PolicyTest, MonitoringPolicyRefusesForeignSupervisorsAndCycles) {
  GrantPolicyFeatures();
  const std::string legal = Dept("Legal");
  const std::string team = Dept("Team", legal);
  const std::string boss = User("boss@acme.test", {team});
  const std::string eve = User("eve@acme.test");
  Group("all@acme.test", {Member(v1::MEMBER_KIND_USER, eve)});

  v1::MonitoringPolicy p;
  auto* r = p.add_rules();
  r->set_name("case 42");
  r->set_enabled(true);
  r->add_monitored_user_ids(eve);
  r->set_supervisor_address("someone@other.test");
  r->set_justification("court order 42");
  v1::MonitoringPolicy out;
  RpcError e = Details(SetMonitor(p, &out));
  EXPECT_EQ(e.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(e.field, "rules[0].supervisor_address");
  EXPECT_EQ(e.reason, "NOT_IN_TENANT");
  r->set_supervisor_address("all@acme.test");
  EXPECT_EQ(Details(SetMonitor(p, &out)).reason, "NOT_A_MAILBOX");
  r->set_supervisor_address("eve@acme.test");
  EXPECT_EQ(Details(SetMonitor(p, &out)).reason, "CYCLE");
  // The supervisor sits below a monitored department.
  r->set_supervisor_address("BOSS@acme.test");
  r->add_monitored_department_ids(legal);
  e = Details(SetMonitor(p, &out));
  EXPECT_EQ(e.reason, "CYCLE");
  EXPECT_EQ(e.field, "rules[0].supervisor_address");
  r->clear_monitored_department_ids();
  r->add_monitored_user_ids("u-nope");
  EXPECT_EQ(Details(SetMonitor(p, &out)).field, "rules[0].monitored_user_ids[1]");
  r->clear_monitored_user_ids();
  EXPECT_EQ(Details(SetMonitor(p, &out)).reason, "EMPTY");
  r->add_monitored_user_ids(eve);

  grpc::Status s = SetMonitor(p, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.version(), 1);
  EXPECT_EQ(out.rules(0).supervisor_address(), "boss@acme.test");
  EXPECT_EQ(SetMonitor(p, &out, 3).error_code(), grpc::StatusCode::ABORTED);
  v1::GetMonitoringPolicyRequest get;
  get.set_tenant_id(tenant_);
  v1::MonitoringPolicy read;
  ASSERT_TRUE(dir_stub_->GetMonitoringPolicy(Ctx(service_).get(), get, &read).ok());
  EXPECT_EQ(read.version(), 1);
  EXPECT_EQ(read.rules(0).monitored_user_ids(0), eve);
  (void)boss;

  auto log = AuditLog("policy.monitor.");
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].reason().find("court order 42"), std::string::npos);
}

TEST_F(PolicyTest, MonitoringNeedsThePlanFeature) {
  const std::string eve = User("eve@acme.test");
  User("boss@acme.test");
  v1::MonitoringPolicy p;
  auto* r = p.add_rules();
  r->add_monitored_user_ids(eve);
  r->set_supervisor_address("boss@acme.test");
  v1::MonitoringPolicy out;
  EXPECT_EQ(Details(SetMonitor(p, &out)).reason, "PLAN_FEATURE_MISSING");
  // Clearing the policy needs no feature.
  EXPECT_TRUE(SetMonitor(v1::MonitoringPolicy(), &out).ok());
}

TEST_F(PolicyTest, SieveScriptsOwnAdminServiceAndResolveReportsTheVersion) {
  const std::string alice = User("alice@acme.test");
  const std::string bob = User("bob@acme.test");
  const std::string alice_token = Mint(tenant_, {auth::kRoleUser}, alice);
  const std::string bob_token = Mint(tenant_, {auth::kRoleUser}, bob);
  const std::string script =
      "require [\"fileinto\"];\nif header :contains \"subject\" \"发票\" { fileinto \"Invoices\"; "
      "}\n";

  v1::GetSieveScriptRequest get;
  get.set_user_id(alice);
  v1::SieveScript read;
  ASSERT_TRUE(dir_stub_->GetSieveScript(Ctx(alice_token).get(), get, &read).ok());
  EXPECT_EQ(read.version(), 0);
  EXPECT_TRUE(read.script().empty());

  v1::SieveScript out;
  grpc::Status s = SetSieve(alice_token, alice, script, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.version(), 1);
  v1::ResolveResponse res;
  ASSERT_TRUE(Resolve("alice@acme.test", &res).ok());
  ASSERT_EQ(res.recipients_size(), 1);
  EXPECT_EQ(res.recipients(0).sieve_version(), 1);

  // relayd reads it; bob may neither read nor write alice's.
  get.set_user_id(alice);
  ASSERT_TRUE(dir_stub_->GetSieveScript(Ctx(service_).get(), get, &read).ok());
  EXPECT_EQ(read.script(), script);
  EXPECT_EQ(dir_stub_->GetSieveScript(Ctx(bob_token).get(), get, &read).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(SetSieve(bob_token, alice, "", &out).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(SetSieve(service_, alice, "", &out).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(SetSieve(other_admin_, alice, "", &out).error_code(), grpc::StatusCode::NOT_FOUND);

  // Size, UTF-8, versions.
  RpcError e = Details(SetSieve(alice_token, alice, std::string(64 * 1024 + 1, '#'), &out));
  EXPECT_EQ(e.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(e.reason, "TOO_LARGE");
  EXPECT_EQ(e.field, "script");
  // (The proto field is a string: gRPC itself refuses bad UTF-8 on the wire;
  // the server checks again for callers that do not.)
  auto bad_utf8 = ErrorDetailOf(ValidateSieveScript("keep; # \xff\xfe\n"));
  ASSERT_TRUE(bad_utf8.has_value());
  EXPECT_EQ(bad_utf8->reason(), "NOT_UTF8");
  EXPECT_EQ(SetSieve(alice_token, alice, "keep;", &out, 5).error_code(), grpc::StatusCode::ABORTED);

  // The admin clears it: no rules, Resolve says 0.
  ASSERT_TRUE(SetSieve(admin_, alice, "", &out, 1).ok());
  EXPECT_EQ(out.version(), 2);
  ASSERT_TRUE(Resolve("alice@acme.test", &res).ok());
  EXPECT_EQ(res.recipients(0).sieve_version(), 0);

  // Through a department group the version travels too.
  const std::string d = Dept("Ops");
  v1::UpdateUserRequest up;
  up.mutable_user()->set_user_id(bob);
  up.mutable_user()->add_department_ids(d);
  up.mutable_update_mask()->add_paths("department_ids");
  v1::User u;
  ASSERT_TRUE(dir_stub_->UpdateUser(Ctx(admin_).get(), up, &u).ok());
  ASSERT_TRUE(SetSieve(bob_token, bob, "keep;\n", &out).ok());
  Group("ops@acme.test", {Member(v1::MEMBER_KIND_DEPARTMENT, d)});
  ASSERT_TRUE(Resolve("ops@acme.test", &res).ok());
  ASSERT_EQ(res.recipients_size(), 1);
  EXPECT_EQ(res.recipients(0).sieve_version(), 1);

  std::vector<v1::AdminAuditEntry> log;
  v1::ListAdminAuditLogRequest lr;
  lr.set_action_prefix("user.sieve.");
  v1::ListAdminAuditLogResponse lresp;
  ASSERT_TRUE(dir_stub_->ListAdminAuditLog(Ctx(admin_).get(), lr, &lresp).ok());
  EXPECT_EQ(lresp.entries_size(), 3);
}

#ifdef MAILGRID_HAVE_SIEVE
TEST_F(PolicyTest, SieveScriptsThatDoNotCompileAreRefusedWithTheirPosition) {
  const std::string alice = User("alice@acme.test");
  v1::SieveScript out;
  RpcError e = Details(SetSieve(admin_, alice, "if header :contains \"subject\" {\n", &out));
  EXPECT_EQ(e.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(e.reason, "SYNTAX");
  EXPECT_EQ(e.field, "script");
  e = Details(SetSieve(admin_, alice, "require [\"x-nonsense\"];\nkeep;\n", &out));
  EXPECT_EQ(e.reason, "UNSUPPORTED_EXTENSION");
}
#endif

}  // namespace
}  // namespace mailgrid::tenant
