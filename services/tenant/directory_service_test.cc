// DirectoryService end to end in one process (directory_test_fixture.h):
// users, departments, groups, aliases, shared mailboxes, import, Resolve.
#include "services/tenant/directory_test_fixture.h"

namespace mailgrid::tenant {
namespace {

using namespace dirtest;  // NOLINT: the fixture and its helpers

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

// Deleting a nested group: its parents lose it as a member (their other
// members stay), its address is free again, no member-of key names it.
TEST_F(DirectoryTest, DeletedGroupLeavesItsParentsAndFreesItsAddress) {
  std::string carl = User("carl@acme.test");
  std::string dana = User("dana@acme.test");
  std::string inner = Group("inner@acme.test", {Member(v1::MEMBER_KIND_USER, carl)});
  std::string outer = Group("outer@acme.test", {Member(v1::MEMBER_KIND_GROUP, inner),
                                                Member(v1::MEMBER_KIND_USER, dana)});
  EXPECT_EQ(Recipients("outer@acme.test"),
            (std::set<std::string>{"carl@acme.test", "dana@acme.test"}));
  v1::DeleteGroupRequest del;
  del.set_group_id(inner);
  v1::DeleteGroupResponse deleted;
  ASSERT_TRUE(dir_stub_->DeleteGroup(Ctx(admin_).get(), del, &deleted).ok());
  EXPECT_EQ(Recipients("outer@acme.test"), (std::set<std::string>{"dana@acme.test"}));
  EXPECT_EQ(DirectMemberIds(outer), std::vector<std::string>{dana});
  EXPECT_EQ(KeysUnder(dkeys::MemberOfPrefix(tenant_, inner)), 0u);
  EXPECT_EQ(KeysUnder(dkeys::MemberOfPrefix(tenant_, carl)), 0u);
  v1::ResolveResponse res;
  EXPECT_EQ(Resolve("inner@acme.test", &res).error_code(), grpc::StatusCode::NOT_FOUND);
  Group("inner@acme.test");  // the address can be taken again
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
  // A change through TenantService (no Invalidate here) is seen within the
  // staleness bound.
  std::string reason;
  for (int i = 0; i < 500 && reason != "TENANT_SUSPENDED"; ++i) {
    reason = Details(Resolve("eve@acme.test", &res)).reason;
    if (reason != "TENANT_SUSPENDED") absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(reason, "TENANT_SUSPENDED");
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
