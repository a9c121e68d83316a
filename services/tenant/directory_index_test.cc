// The Resolve index (resolve_cache.h, directory_resolve_index.cc): its
// warmed answers agree with the computed ones, it follows every kind of
// directory change (made through this service, or behind its back as on
// another replica), and postmaster@ reaches the tenant's admins.
#include "services/tenant/directory_test_fixture.h"

namespace mailgrid::tenant {
namespace {

using dirtest::Details;

class ResolveIndexTest : public dirtest::DirectoryTest {
 protected:
  void SetUp() override {
    DirectoryTest::SetUp();
    directory_->StartResolveIndex();
  }
  void TearDown() override {
    directory_->StopResolveIndex();
    DirectoryTest::TearDown();
  }
  // The answer as a comparable string ("" for an error, with its reason).
  std::string Answer(DirectoryServiceImpl& d, const std::string& address) {
    v1::ResolveRequest req;
    req.set_address(address);
    auto out = d.ResolveAddress(req);
    if (!out.ok()) return "error " + std::string(out.status().message());
    return out->SerializeAsString();
  }
  std::string Reason(const std::string& address) {
    v1::ResolveResponse res;
    return Details(Resolve(address, &res)).reason;
  }
  // A second service over the same store: a change through it is what a
  // change through another replica looks like to directory_ (no Invalidate).
  std::unique_ptr<DirectoryServiceImpl> Elsewhere() {
    return std::make_unique<DirectoryServiceImpl>(store_.get(), auth_.get(), &options_, &peers_);
  }
  void SetSettings(const std::string& domain, const v1::DomainMailSettings& settings) {
    v1::SetDomainMailSettingsRequest set;
    set.set_domain(domain);
    *set.mutable_settings() = settings;
    v1::DomainMailSettings s;
    grpc::Status st = dir_stub_->SetDomainMailSettings(Ctx(admin_).get(), set, &s);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
};

TEST_F(ResolveIndexTest, WarmedAnswersEqualComputedOnes) {
  std::string sales = Dept("Sales");
  std::vector<std::string> addresses = {"ann@acme.test", "bob@acme.test", "cy@acme.test"};
  std::string ann = User(addresses[0], {sales});
  User(addresses[1]);
  std::string cy = User(addresses[2]);
  v1::DisableUserRequest dis;
  dis.set_user_id(cy);
  v1::User u;
  ASSERT_TRUE(dir_stub_->DisableUser(Ctx(admin_).get(), dis, &u).ok());
  auto warmed = directory_->WarmTenant(tenant_);
  ASSERT_TRUE(warmed.ok()) << warmed.status();
  EXPECT_GE(*warmed, addresses.size());
  const uint64_t hits = directory_->resolve_cache().hits();
  auto fresh = Elsewhere();  // computes everything (no index entries yet)
  for (const auto& a : addresses) {
    EXPECT_EQ(Answer(*directory_, a), Answer(*fresh, a)) << a;
  }
  EXPECT_GE(directory_->resolve_cache().hits(), hits + addresses.size());
}

// A re-warm rebuilds only the users whose record changed, drops the ones
// gone or renamed away, and its answers still equal computed ones.
TEST_F(ResolveIndexTest, RewarmFollowsChangedUsersOnly) {
  std::string ann = User("ann@acme.test");
  std::string bob = User("bob@acme.test");
  User("cy@acme.test");
  auto first = directory_->WarmTenant(tenant_);
  ASSERT_TRUE(first.ok()) << first.status();
  const size_t held = *first;
  EXPECT_GE(held, 3u);
  EXPECT_GE(directory_->resolve_cache().warmed_size(), held);
  v1::RenameUserRequest rn;
  rn.set_user_id(ann);
  rn.set_new_address("anna@acme.test");
  v1::User u;
  ASSERT_TRUE(dir_stub_->RenameUser(Ctx(admin_).get(), rn, &u).ok());
  v1::DeleteUserRequest del;
  del.set_user_id(bob);
  ASSERT_TRUE(dir_stub_->DeleteUser(Ctx(admin_).get(), del, &u).ok());
  std::string dee = User("dee@acme.test");
  auto second = directory_->WarmTenant(tenant_);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, held);  // ann renamed (still one), bob gone, dee new
  auto fresh = Elsewhere();
  for (const char* a : {"anna@acme.test", "ann@acme.test", "bob@acme.test", "cy@acme.test",
                        "dee@acme.test"}) {
    EXPECT_EQ(Answer(*directory_, a), Answer(*fresh, a)) << a;
  }
  EXPECT_EQ(Reason("bob@acme.test"), "ADDRESS_DELETED");
  EXPECT_EQ(Recipients("ann@acme.test"), std::set<std::string>{"anna@acme.test"});
  EXPECT_EQ(Recipients("dee@acme.test"), std::set<std::string>{"dee@acme.test"});
  // Nothing changed: the same answers, still served from the index.
  auto third = directory_->WarmTenant(tenant_);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(*third, held);
  const uint64_t hits = directory_->resolve_cache().hits();
  EXPECT_EQ(Answer(*directory_, "cy@acme.test"), Answer(*fresh, "cy@acme.test"));
  EXPECT_GT(directory_->resolve_cache().hits(), hits);
}

TEST_F(ResolveIndexTest, FollowsEveryKindOfChangeMadeHere) {
  std::string ann = User("ann@acme.test");
  std::string bob = User("bob@acme.test");
  ASSERT_TRUE(directory_->WarmTenant(tenant_).ok());
  EXPECT_EQ(Recipients("ann@acme.test"), std::set<std::string>{"ann@acme.test"});
  // Rename: the new address answers, the old one is an alias of it.
  v1::RenameUserRequest rn;
  rn.set_user_id(ann);
  rn.set_new_address("anna@acme.test");
  v1::User u;
  ASSERT_TRUE(dir_stub_->RenameUser(Ctx(admin_).get(), rn, &u).ok());
  EXPECT_EQ(Recipients("anna@acme.test"), std::set<std::string>{"anna@acme.test"});
  EXPECT_EQ(Recipients("ann@acme.test"), std::set<std::string>{"anna@acme.test"});
  // Alias added, then removed.
  EXPECT_EQ(Reason("sales@acme.test"), "ADDRESS_NOT_FOUND");
  v1::AddAliasRequest al;
  al.set_address("sales@acme.test");
  al.set_user_id(bob);
  v1::Alias alias;
  ASSERT_TRUE(dir_stub_->AddAlias(Ctx(admin_).get(), al, &alias).ok());
  EXPECT_EQ(Recipients("sales@acme.test"), std::set<std::string>{"bob@acme.test"});
  v1::RemoveAliasRequest ra;
  ra.set_address("sales@acme.test");
  v1::RemoveAliasResponse rar;
  ASSERT_TRUE(dir_stub_->RemoveAlias(Ctx(admin_).get(), ra, &rar).ok());
  EXPECT_EQ(Reason("sales@acme.test"), "ADDRESS_NOT_FOUND");
  // Group membership.
  std::string g = Group("team@acme.test", {Member(v1::MEMBER_KIND_USER, bob)});
  EXPECT_EQ(Recipients("team@acme.test"), std::set<std::string>{"bob@acme.test"});
  v1::AddGroupMemberRequest add;
  add.set_group_id(g);
  *add.mutable_member() = Member(v1::MEMBER_KIND_USER, ann);
  v1::Group group;
  ASSERT_TRUE(dir_stub_->AddGroupMember(Ctx(admin_).get(), add, &group).ok());
  EXPECT_EQ(Recipients("team@acme.test"),
            (std::set<std::string>{"anna@acme.test", "bob@acme.test"}));
  v1::RemoveGroupMemberRequest rm;
  rm.set_group_id(g);
  rm.set_kind(v1::MEMBER_KIND_USER);
  rm.set_id(bob);
  ASSERT_TRUE(dir_stub_->RemoveGroupMember(Ctx(admin_).get(), rm, &group).ok());
  EXPECT_EQ(Recipients("team@acme.test"), std::set<std::string>{"anna@acme.test"});
  // Domain alias on, catch-all on, then both off.
  EXPECT_EQ(Reason("bob@acme-alias.test"), "ADDRESS_NOT_FOUND");
  v1::DomainMailSettings alias_of;
  alias_of.set_alias_of("acme.test");
  SetSettings("acme-alias.test", alias_of);
  EXPECT_EQ(Recipients("bob@acme-alias.test"), std::set<std::string>{"bob@acme.test"});
  EXPECT_EQ(Reason("nobody@acme.test"), "ADDRESS_NOT_FOUND");
  v1::DomainMailSettings catch_all;
  catch_all.set_catch_all_address("bob@acme.test");
  SetSettings("acme.test", catch_all);
  EXPECT_EQ(Recipients("nobody@acme.test"), std::set<std::string>{"bob@acme.test"});
  SetSettings("acme.test", v1::DomainMailSettings());
  SetSettings("acme-alias.test", v1::DomainMailSettings());
  EXPECT_EQ(Reason("nobody@acme.test"), "ADDRESS_NOT_FOUND");
  EXPECT_EQ(Reason("bob@acme-alias.test"), "ADDRESS_NOT_FOUND");
  // Delete.
  v1::DeleteUserRequest del;
  del.set_user_id(bob);
  ASSERT_TRUE(dir_stub_->DeleteUser(Ctx(admin_).get(), del, &u).ok());
  EXPECT_EQ(Reason("bob@acme.test"), "ADDRESS_DELETED");
}

TEST_F(ResolveIndexTest, FollowsChangesMadeElsewhereWithinTheBound) {
  std::string ann = User("ann@acme.test");
  std::string bob = User("bob@acme.test");
  ASSERT_TRUE(directory_->WarmTenant(tenant_).ok());
  EXPECT_EQ(Recipients("bob@acme.test"), std::set<std::string>{"bob@acme.test"});
  EXPECT_EQ(Reason("sales@acme.test"), "ADDRESS_NOT_FOUND");
  auto other = Elsewhere();
  v1::AddAliasRequest al;
  al.set_address("sales@acme.test");
  al.set_user_id(ann);
  v1::Alias alias;
  // Through the other instance directly (no gRPC server needed for it).
  auto server = grpc::ServerBuilder().RegisterService(other.get()).BuildAndStart();
  auto ch = server->InProcessChannel(grpc::ChannelArguments());
  auto stub = v1::DirectoryService::NewStub(ch);
  ASSERT_TRUE(stub->AddAlias(Ctx(admin_).get(), al, &alias).ok());
  v1::DeleteUserRequest del;
  del.set_user_id(bob);
  v1::User u;
  ASSERT_TRUE(stub->DeleteUser(Ctx(admin_).get(), del, &u).ok());
  // directory_ was not told: its index thread sees the stamp move.
  std::string sales, deleted;
  for (int i = 0; i < 500 && (sales != "ann@acme.test" || deleted != "ADDRESS_DELETED"); ++i) {
    v1::ResolveResponse res;
    sales = Resolve("sales@acme.test", &res).ok() && res.recipients_size() == 1
                ? res.recipients(0).address()
                : "";
    deleted = Reason("bob@acme.test");
    if (sales != "ann@acme.test" || deleted != "ADDRESS_DELETED")
      absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(sales, "ann@acme.test");
  EXPECT_EQ(deleted, "ADDRESS_DELETED");
  server->Shutdown();
}

TEST_F(ResolveIndexTest, PostmasterReachesTheAdminsUnlessTheAddressExists) {
  v1::CreateUserRequest r;
  r.set_address("boss@acme.test");
  r.set_display_name("Boss");
  r.add_roles(common::v1::ROLE_TENANT_ADMIN);
  v1::CreateUserResponse boss;
  ASSERT_TRUE(dir_stub_->CreateUser(Ctx(admin_).get(), r, &boss).ok());
  User("ann@acme.test");
  v1::ResolveResponse res;
  // Any case, any hosted domain (also one that is an alias of another).
  ASSERT_TRUE(Resolve("PostMaster@acme.test", &res).ok());
  EXPECT_EQ(res.kind(), v1::ADDRESS_KIND_ALIAS);
  ASSERT_EQ(res.recipients_size(), 1);
  EXPECT_EQ(res.recipients(0).address(), "boss@acme.test");
  ASSERT_TRUE(Resolve("postmaster@acme-alias.test", &res).ok());
  EXPECT_EQ(res.recipients(0).address(), "boss@acme.test");
  // Not on an unverified domain, nor on another tenant's (no admin mailbox there).
  EXPECT_EQ(Reason("postmaster@pending.test"), "DOMAIN_NOT_HOSTED");
  EXPECT_EQ(Reason("postmaster@other.test"), "ADDRESS_NOT_FOUND");
  // An explicit address wins.
  std::string ann_id;
  {
    v1::ResolveResponse a;
    ASSERT_TRUE(Resolve("ann@acme.test", &a).ok());
    ann_id = a.recipients(0).user_id();
  }
  v1::AddAliasRequest al;
  al.set_address("postmaster@acme.test");
  al.set_user_id(ann_id);
  v1::Alias alias;
  ASSERT_TRUE(dir_stub_->AddAlias(Ctx(admin_).get(), al, &alias).ok());
  ASSERT_TRUE(Resolve("postmaster@acme.test", &res).ok());
  ASSERT_EQ(res.recipients_size(), 1);
  EXPECT_EQ(res.recipients(0).address(), "ann@acme.test");
}

// ResolveMany answers each request exactly as Resolve does (answer, or
// error code and reason), from the store and then from the index; the call
// fails only for the caller.
TEST_F(ResolveIndexTest, ResolveManyAnswersEachAsResolveDoes) {
  std::string sales = Dept("Sales");
  std::string ann = User("ann@acme.test", {sales});
  User("bob@acme.test");
  Group("team@acme.test", {Member(v1::MEMBER_KIND_DEPARTMENT, sales)});
  const std::vector<std::string> addresses = {
      "ann@acme.test", "BOB+tag@acme.test", "team@acme.test", "nobody@acme.test",
      "x@unknown.test", "not an address"};
  v1::ResolveManyRequest req;
  for (const auto& a : addresses) req.add_requests()->set_address(a);
  auto reason_of = [](const v1::ResolveResult& r) {
    for (const auto& any : r.status().details()) {
      common::v1::ErrorDetail d;
      if (any.UnpackTo(&d)) return d.reason();
    }
    return std::string();
  };
  for (int round = 0; round < 2; ++round) {  // computed, then indexed
    v1::ResolveManyResponse resp;
    grpc::Status st = dir_stub_->ResolveMany(Ctx(service_).get(), req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_EQ(resp.results_size(), static_cast<int>(addresses.size()));
    for (size_t i = 0; i < addresses.size(); ++i) {
      v1::ResolveResponse one;
      grpc::Status s = Resolve(addresses[i], &one);
      const v1::ResolveResult& r = resp.results(static_cast<int>(i));
      EXPECT_EQ(r.status().code(), static_cast<int>(s.error_code())) << addresses[i];
      if (s.ok()) {
        EXPECT_EQ(r.response().SerializeAsString(), one.SerializeAsString()) << addresses[i];
      } else {
        EXPECT_EQ(reason_of(r), Details(s).reason) << addresses[i];
        EXPECT_FALSE(r.has_response()) << addresses[i];
      }
    }
    EXPECT_EQ(reason_of(resp.results(3)), "ADDRESS_NOT_FOUND");
    EXPECT_EQ(reason_of(resp.results(4)), "DOMAIN_NOT_HOSTED");
  }
  // Another tenant's admin sees none of it; no token, no answers at all.
  v1::ResolveManyResponse other;
  ASSERT_TRUE(dir_stub_->ResolveMany(Ctx(other_admin_).get(), req, &other).ok());
  EXPECT_EQ(reason_of(other.results(0)), "DOMAIN_NOT_HOSTED");
  EXPECT_EQ(dir_stub_->ResolveMany(Ctx("").get(), req, &other).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  v1::ResolveManyRequest too_many;
  for (int i = 0; i < 1001; ++i) too_many.add_requests()->set_address("ann@acme.test");
  grpc::Status big = dir_stub_->ResolveMany(Ctx(service_).get(), too_many, &other);
  EXPECT_EQ(big.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Details(big).reason, "TOO_MANY");
}

// Groups of whole departments expand from the in-memory department model
// while the tenant's memberships did not change (a department rename keeps
// it), and from the store as soon as they did.
TEST_F(ResolveIndexTest, DepartmentModelServesUntilMembershipsChange) {
  std::string sales = Dept("Sales");
  std::string east = Dept("East", sales);
  User("ann@acme.test", {sales});
  User("bob@acme.test", {east});
  Group("team@acme.test", {Member(v1::MEMBER_KIND_DEPARTMENT, sales)});
  auto model = directory_->RefreshDeptModel(tenant_);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->member_count, 2u);
  auto fresh = Elsewhere();  // no model: expands from the store
  EXPECT_EQ(Answer(*directory_, "team@acme.test"), Answer(*fresh, "team@acme.test"));
  // A member key written behind the model's back (memgen untouched): only
  // an expansion that reads the store sees it.
  v1::Recipient ghost;
  ghost.set_mailbox_id("mbx-ghost");
  ghost.set_address("ghost@acme.test");
  ghost.set_user_id("ghost");
  ghost.set_tenant_id(tenant_);
  Batch b;
  b.Put(dkeys::DeptMember(tenant_, east, "ghost"), ghost);
  ASSERT_TRUE(store_->Commit(std::move(b)).ok());
  v1::RenameDepartmentRequest rn;
  rn.set_department_id(east);
  rn.set_new_name("East Coast");
  v1::Department d;
  ASSERT_TRUE(dir_stub_->RenameDepartment(Ctx(admin_).get(), rn, &d).ok());
  auto kept = directory_->RefreshDeptModel(tenant_);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->get(), model->get()) << "a rename must keep the model";
  EXPECT_EQ(Recipients("team@acme.test"),
            (std::set<std::string>{"ann@acme.test", "bob@acme.test"}));  // from memory
  v1::ResolveRequest team;
  team.set_address("team@acme.test");
  // (a new instance: `fresh` keeps its own answers within the bound)
  auto from_store = Elsewhere()->ResolveAddress(team);
  ASSERT_TRUE(from_store.ok()) << from_store.status();
  EXPECT_EQ(from_store->recipients_size(), 3);  // ann, bob and the ghost
  // A membership change (a new member of East): the store again, at once.
  User("cy@acme.test", {east});
  EXPECT_EQ(Recipients("team@acme.test"),
            (std::set<std::string>{"ann@acme.test", "bob@acme.test", "cy@acme.test",
                                   "ghost@acme.test"}));
  auto reloaded = directory_->RefreshDeptModel(tenant_);
  ASSERT_TRUE(reloaded.ok());
  EXPECT_NE(reloaded->get(), model->get());
  EXPECT_EQ((*reloaded)->member_count, 4u);
  EXPECT_EQ(Answer(*directory_, "team@acme.test"), Answer(*Elsewhere(), "team@acme.test"));
}

// After a membership change the first expansion brings the model current by
// reading again only the departments whose T/deptgen moved (a disabled
// member: one department), shares the other lists with the previous model,
// and answers exactly what the store path answers, change by change: a
// member disabled, a new sub-department with a member, a recursive delete.
TEST_F(ResolveIndexTest, DepartmentModelRereadsOnlyTheChangedDepartments) {
  std::string sales = Dept("Sales");
  std::string east = Dept("East", sales);
  std::string west = Dept("West", sales);
  User("ann@acme.test", {sales});
  std::string bob = User("bob@acme.test", {east});
  User("cy@acme.test", {west});
  Group("team@acme.test", {Member(v1::MEMBER_KIND_DEPARTMENT, sales)});
  auto model = directory_->RefreshDeptModel(tenant_);
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ((*model)->member_count, 3u);
  EXPECT_EQ(Recipients("team@acme.test"),
            (std::set<std::string>{"ann@acme.test", "bob@acme.test", "cy@acme.test"}));
  v1::DisableUserRequest dis;
  dis.set_user_id(bob);
  v1::User u;
  ASSERT_TRUE(dir_stub_->DisableUser(Ctx(admin_).get(), dis, &u).ok());
  // Read-your-writes: the next Resolve shows bob disabled.
  v1::ResolveResponse team;
  ASSERT_TRUE(Resolve("team@acme.test", &team).ok());
  int disabled = 0;
  for (const auto& r : team.recipients()) disabled += r.disabled() ? 1 : 0;
  EXPECT_EQ(disabled, 1);
  EXPECT_EQ(Answer(*directory_, "team@acme.test"), Answer(*Elsewhere(), "team@acme.test"));
  auto updated = directory_->RefreshDeptModel(tenant_);
  ASSERT_TRUE(updated.ok());
  EXPECT_NE(updated->get(), model->get());
  EXPECT_EQ((*updated)->reread, 1u) << "only East's lists are read again";
  EXPECT_EQ((*updated)->member_count, 3u);
  EXPECT_EQ((*updated)->members.at(west).get(), (*model)->members.at(west).get());
  // A new department under East (East's children) with a member.
  std::string north = Dept("North", east);
  User("dee@acme.test", {north});
  EXPECT_EQ(Recipients("team@acme.test"), (std::set<std::string>{"ann@acme.test", "bob@acme.test",
                                                                  "cy@acme.test", "dee@acme.test"}));
  EXPECT_EQ(Answer(*directory_, "team@acme.test"), Answer(*Elsewhere(), "team@acme.test"));
  // A recursive delete (range deletes of each department's members).
  v1::DeleteDepartmentRequest del;
  del.set_department_id(east);
  del.set_recursive(true);
  v1::DeleteDepartmentResponse gone;
  grpc::Status st = dir_stub_->DeleteDepartment(Ctx(admin_).get(), del, &gone);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(Recipients("team@acme.test"),
            (std::set<std::string>{"ann@acme.test", "cy@acme.test"}));
  EXPECT_EQ(Answer(*directory_, "team@acme.test"), Answer(*Elsewhere(), "team@acme.test"));
  auto last = directory_->RefreshDeptModel(tenant_);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ((*last)->member_count, 2u);
  EXPECT_FALSE((*last)->members.contains(east));
  EXPECT_FALSE((*last)->children.contains(east));
  // The deleted departments' deptgen keys went in the same write; the
  // survivors' stay (Sales lost a child: its key was rewritten).
  EXPECT_FALSE(store_->GetRaw(dkeys::DeptGen(tenant_, east))->has_value());
  EXPECT_FALSE(store_->GetRaw(dkeys::DeptGen(tenant_, north))->has_value());
  EXPECT_TRUE(store_->GetRaw(dkeys::DeptGen(tenant_, sales))->has_value());
  EXPECT_FALSE((*last)->gens.contains(east));
  // Deleting the last departments leaves only the tree root's key (the
  // top-level list, parent "", lost Sales).
  del.set_department_id(sales);
  st = dir_stub_->DeleteDepartment(Ctx(admin_).get(), del, &gone);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(gone.departments_deleted(), 2);
  EXPECT_FALSE(store_->GetRaw(dkeys::DeptGen(tenant_, sales))->has_value());
  EXPECT_FALSE(store_->GetRaw(dkeys::DeptGen(tenant_, west))->has_value());
  EXPECT_EQ(KeysUnder(dkeys::DeptGenPrefix(tenant_)), 1u);
  EXPECT_TRUE(store_->GetRaw(dkeys::DeptGen(tenant_, ""))->has_value());
  auto empty = directory_->RefreshDeptModel(tenant_);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ((*empty)->member_count, 0u);
  EXPECT_TRUE((*empty)->members.empty());
}

// Keys left by departments deleted before T/deptgen went with its
// department: the sweep deletes those and keeps every live department's
// key and the top-level list's (""), and a second sweep finds nothing.
TEST_F(ResolveIndexTest, SweepDeletesOnlyOrphanDeptGens) {
  std::string sales = Dept("Sales");
  std::string east = Dept("East", sales);
  User("ann@acme.test", {sales});
  User("bob@acme.test", {east});
  Group("team@acme.test", {Member(v1::MEMBER_KIND_DEPARTMENT, sales)});
  const size_t live = KeysUnder(dkeys::DeptGenPrefix(tenant_));
  ASSERT_TRUE(store_->GetRaw(dkeys::DeptGen(tenant_, east))->has_value());
  // What an old delete left: generation keys with no department record.
  Batch old;
  old.PutRaw(dkeys::DeptGen(tenant_, "d-gone1"), "x");
  old.PutRaw(dkeys::DeptGen(tenant_, "d-gone2"), "y");
  ASSERT_TRUE(store_->Commit(std::move(old)).ok());
  ASSERT_EQ(KeysUnder(dkeys::DeptGenPrefix(tenant_)), live + 2);
  auto swept = directory_->SweepOrphanDeptGens();
  ASSERT_TRUE(swept.ok()) << swept.status();
  EXPECT_EQ(*swept, 2);
  EXPECT_EQ(KeysUnder(dkeys::DeptGenPrefix(tenant_)), live);
  EXPECT_FALSE(store_->GetRaw(dkeys::DeptGen(tenant_, "d-gone1"))->has_value());
  EXPECT_TRUE(store_->GetRaw(dkeys::DeptGen(tenant_, east))->has_value());
  EXPECT_TRUE(store_->GetRaw(dkeys::DeptGen(tenant_, sales))->has_value());
  EXPECT_TRUE(store_->GetRaw(dkeys::DeptGen(tenant_, ""))->has_value());
  auto again = directory_->SweepOrphanDeptGens();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0);
  // The model and the answers are unchanged by it.
  EXPECT_EQ(Recipients("team@acme.test"), (std::set<std::string>{"ann@acme.test", "bob@acme.test"}));
  EXPECT_EQ(Answer(*directory_, "team@acme.test"), Answer(*Elsewhere(), "team@acme.test"));
}

// The ASCII fast path gives ParseAddress's key, and declines the rest.
TEST(AsciiAddressKeyTest, AgreesWithParseAddress) {
  for (const char* in : {"ann@acme.test", "Ann.Lee@ACME.Test", "a+tag@acme.test", "a_b-c@x-y.cn",
                         "USER123@bench-corp.test", "xn--bcher-kva.de@xn--bcher-kva.de"}) {
    std::string key;
    ASSERT_TRUE(AsciiAddressKey(in, &key)) << in;
    auto parsed = ParseAddress(in, "address");
    ASSERT_TRUE(parsed.ok()) << in << ": " << parsed.status();
    EXPECT_EQ(key, parsed->key) << in;
  }
  for (const char* in : {"", "@acme.test", "ann@", "ann", ".ann@acme.test", "ann.@acme.test",
                         "a..b@acme.test", "ann@acme.test.", "ann@-acme.test", "ann@acme-",
                         " ann@acme.test", "\"a b\"@acme.test", "ann@[1.2.3.4]", "a@b@acme.test",
                         "Ünal@acme.test", "ann@bücher.de", "ann+x@acme_x.test"}) {
    std::string key;
    EXPECT_FALSE(AsciiAddressKey(in, &key)) << in;
  }
}

// Which departments a write names for the model (NoteDeptChanges).
TEST(NoteDeptChangesTest, NamesEachTouchedDepartmentOrAllOfThem) {
  auto puts = [](const Batch& b) {
    std::set<std::string> keys;
    for (const auto& op : const_cast<Batch&>(b).request().ops())
      if (op.has_put()) keys.insert(op.put().key());
    return keys;
  };
  Batch one;
  one.Delete(dkeys::DeptMember("t1", "d1", "u1")).PutRaw(dkeys::DeptChild("t1", "d2", "x"), "d3");
  one.DeletePrefix(dkeys::DeptMemberPrefix("t1", "d4"));
  one.PutRaw(dkeys::DeptMember("t2", "d5", "u"), "");  // another tenant's
  NoteDeptChanges(one, "t1");
  std::set<std::string> want = {dkeys::DeptChild("t1", "d2", "x"), dkeys::DeptMember("t2", "d5", "u"),
                                dkeys::DeptGen("t1", "d1"), dkeys::DeptGen("t1", "d2"),
                                dkeys::DeptGen("t1", "d4")};
  EXPECT_EQ(puts(one), want);
  Batch wide;
  wide.DeletePrefix(dkeys::DeptMemberAllPrefix("t1"));
  NoteDeptChanges(wide, "t1");
  EXPECT_EQ(puts(wide), std::set<std::string>{dkeys::DeptGenAll("t1")});
  Batch other;
  other.DeletePrefix(dkeys::UserPrefix("t1"));
  NoteDeptChanges(other, "t1");
  EXPECT_TRUE(puts(other).empty());
  // A deleted department's deptgen is deleted, not rewritten; its parent's
  // is rewritten (it lost a child). A record deleted and put back (same
  // write) is not a deletion.
  auto deletes = [](const Batch& b) {
    std::set<std::string> keys;
    for (const auto& op : const_cast<Batch&>(b).request().ops())
      if (op.has_delete_()) keys.insert(op.delete_().key());
    return keys;
  };
  Batch gone;
  gone.Delete(dkeys::Dept("t1", "d7"))
      .Delete(dkeys::DeptChild("t1", "d6", "sales"))
      .DeletePrefix(dkeys::DeptMemberPrefix("t1", "d7"));
  gone.Delete(dkeys::Dept("t1", "d8")).PutRaw(dkeys::Dept("t1", "d8"), "");
  gone.PutRaw(dkeys::DeptMember("t1", "d8", "u"), "");
  NoteDeptChanges(gone, "t1");
  EXPECT_EQ(puts(gone), (std::set<std::string>{dkeys::Dept("t1", "d8"), dkeys::DeptMember("t1", "d8", "u"),
                                               dkeys::DeptGen("t1", "d6"), dkeys::DeptGen("t1", "d8")}));
  EXPECT_TRUE(deletes(gone).contains(dkeys::DeptGen("t1", "d7")));
  EXPECT_FALSE(deletes(gone).contains(dkeys::DeptGen("t1", "d8")));
}

// The race a change made here used to lose: Invalidate runs while the
// batch is built, BEFORE the commit, so an index round that read the
// tenant's stamp before the commit could set it after Invalidate and
// vouch the old answers again; a Resolve right after the commit then
// answered from the old state. Now only the stamp the change writes
// settles the tenant (the old one stays unvouched however late it comes).
TEST(ResolveCacheRaceTest, AStampReadBeforeTheCommitDoesNotVouchAfterInvalidate) {
  ResolveCache cache(absl::Seconds(1), 100);
  const absl::Time t0 = absl::Now();
  const ResolveCache::Stamp old_stamp{"old", 7}, new_stamp{"new", 7};
  auto entry = [](const ResolveCache::Stamp& st, const std::string& answer) {
    auto e = std::make_shared<ResolveCache::Entry>();
    e->tenant_id = "t";
    e->stamp = st;
    e->response.set_canonical_address(answer);
    return std::shared_ptr<const ResolveCache::Entry>(e);
  };
  cache.SetStamp("t", old_stamp, t0);
  cache.Insert("a@x.test", entry(old_stamp, "before"));
  ASSERT_NE(cache.Find("a@x.test", t0).entry, nullptr);

  cache.Invalidate("t", "new");  // the change's batch writes dirgen "new"
  EXPECT_TRUE(cache.Awaiting("t"));
  EXPECT_EQ(cache.Find("a@x.test", t0).entry, nullptr);
  // The index round that read "old" before the commit lands now.
  cache.SetStamp("t", old_stamp, t0 + absl::Milliseconds(1));
  cache.Revouch(t0 + absl::Milliseconds(2));
  ResolveCache::Lookup late = cache.Find("a@x.test", t0 + absl::Milliseconds(3));
  EXPECT_EQ(late.entry, nullptr) << "the old answer was vouched for again";
  EXPECT_EQ(late.validate_tenant, "t");
  EXPECT_TRUE(cache.Awaiting("t"));

  // The change is read: the tenant is usable again, the old answer is not.
  cache.SetStamp("t", new_stamp, t0 + absl::Milliseconds(4));
  EXPECT_FALSE(cache.Awaiting("t"));
  EXPECT_EQ(cache.Find("a@x.test", t0 + absl::Milliseconds(5)).entry, nullptr);
  cache.Insert("a@x.test", entry(new_stamp, "after"));
  auto hit = cache.Find("a@x.test", t0 + absl::Milliseconds(5)).entry;
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->response.canonical_address(), "after");

  // A retried attempt: its first batch never commits; the second's stamp
  // settles both.
  cache.Invalidate("t", "try1");
  cache.Invalidate("t", "try2");
  cache.SetStamp("t", ResolveCache::Stamp{"try2", 7}, t0 + absl::Milliseconds(6));
  EXPECT_FALSE(cache.Awaiting("t"));
  // Two changes in flight: reading the first does not vouch while the
  // second is still to come.
  cache.Invalidate("t", "c1");
  cache.Invalidate("t", "c2");
  cache.SetStamp("t", ResolveCache::Stamp{"c1", 7}, t0 + absl::Milliseconds(7));
  EXPECT_TRUE(cache.Awaiting("t"));
  cache.Insert("b@x.test", entry(ResolveCache::Stamp{"c1", 7}, "mid"));
  EXPECT_EQ(cache.Find("b@x.test", t0 + absl::Milliseconds(8)).entry, nullptr);
  cache.SetStamp("t", ResolveCache::Stamp{"c2", 7}, t0 + absl::Milliseconds(9));
  EXPECT_FALSE(cache.Awaiting("t"));
  // A tenant the index did not hold yet waits for its change too.
  cache.Invalidate("u", "u1");
  EXPECT_TRUE(cache.Awaiting("u"));
  cache.SetStamp("u", ResolveCache::Stamp{"u0", 1}, t0 + absl::Milliseconds(10));
  EXPECT_TRUE(cache.Awaiting("u"));
}

}  // namespace
}  // namespace mailgrid::tenant
