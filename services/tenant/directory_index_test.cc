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

}  // namespace
}  // namespace mailgrid::tenant
