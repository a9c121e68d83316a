// What a directory change asks of the other services, and what survives
// their absence (directory_notices.cc): the welcome notice through relayd,
// a quota pushed to mailstored, sessions ended at identityd, a changed
// recovery address announced through identityd — each tried at
// once and, when the peer is down or unconfigured, left pending for the
// background round — and RemoveDomain refused while the directory uses it.
#include "absl/strings/escaping.h"
#include "services/tenant/directory_test_fixture.h"

namespace mailgrid::tenant {
namespace {

using namespace dirtest;  // NOLINT: the fixture and its helpers

class PeersTest : public DirectoryTest {
 protected:
  size_t Pending(const char* kind) { return KeysUnder(dkeys::PeerWorkPrefix(kind)); }
  // The decoded text body of a submitted notice.
  static std::string BodyOf(const relay::v1::SubmitMessageRequest& r) {
    const std::string& m = r.message();
    size_t at = m.find("\r\n\r\n");
    std::string b64 = m.substr(at + 4), clean, out;
    for (char c : b64)
      if (c != '\r' && c != '\n') clean += c;
    EXPECT_TRUE(absl::Base64Unescape(clean, &out));
    return out;
  }
};

TEST_F(PeersTest, WelcomeNoticeIsSentAtCreationAndNeverHoldsAPassword) {
  v1::CreateUserResponse created;
  ASSERT_TRUE(CreateUser("alice@acme.test", &created).ok());
  ASSERT_FALSE(created.generated_password().empty());
  relay::v1::SubmitMessageRequest sent;
  {
    absl::MutexLock l(&peers_.mu);
    ASSERT_EQ(peers_.submitted.size(), 1u);
    sent = peers_.submitted[0];
  }
  EXPECT_EQ(sent.envelope_from(), "");
  ASSERT_EQ(sent.recipients_size(), 1);
  EXPECT_EQ(sent.recipients(0), "alice@acme.test");
  EXPECT_EQ(sent.kind(), relay::v1::SUBMISSION_KIND_WELCOME);
  EXPECT_EQ(sent.idempotency_key(), "welcome-" + created.user().user_id());
  EXPECT_EQ(sent.tenant_id(), tenant_);
  const std::string body = BodyOf(sent);
  EXPECT_NE(body.find("alice@acme.test"), std::string::npos);
  EXPECT_NE(body.find("mail.acme.test"), std::string::npos);
  EXPECT_NE(body.find("change it the first time"), std::string::npos);
  EXPECT_EQ(body.find(created.generated_password()), std::string::npos);
  EXPECT_EQ(sent.message().find(created.generated_password()), std::string::npos);
  // "User alice@acme.test" has an '@': the phrase is encoded (RFC 2047).
  EXPECT_NE(sent.message().find("\r\nTo: =?UTF-8?B?"), std::string::npos);
  EXPECT_NE(sent.message().find(" <alice@acme.test>\r\n"), std::string::npos);
  EXPECT_EQ(Pending("welcome"), 0u);

  // skip_welcome_mail: nothing sent, nothing pending.
  v1::CreateUserRequest r;
  r.set_address("bob@acme.test");
  r.set_display_name("Bob");
  r.set_skip_welcome_mail(true);
  v1::CreateUserResponse out;
  ASSERT_TRUE(dir_stub_->CreateUser(Ctx(admin_).get(), r, &out).ok());
  absl::MutexLock l(&peers_.mu);
  EXPECT_EQ(peers_.submitted.size(), 1u);
}

TEST_F(PeersTest, ChineseLocaleGetsAChineseNoticeWithAnEncodedName) {
  v1::User u;
  u.set_user_id("u-1");
  u.set_address("zhang@acme.test");
  u.set_display_name("张伟");
  u.set_locale("zh-CN");
  const std::string m = BuildWelcomeMessage(u, "", absl::FromUnixSeconds(1800000000));
  EXPECT_NE(m.find("To: =?UTF-8?B?"), std::string::npos);  // RFC 2047, never raw UTF-8
  EXPECT_NE(m.find("Date: Fri, 15 Jan 2027"), std::string::npos);
  relay::v1::SubmitMessageRequest r;
  r.set_message(m);
  const std::string body = BodyOf(r);
  EXPECT_NE(body.find("首次登录时必须修改密码"), std::string::npos);
  EXPECT_NE(body.find("mail.acme.test"), std::string::npos);
  EXPECT_NE(BuildWelcomeMessage(u, "imap.example.net", absl::Now())
                .find("Message-ID: <welcome-u-1@acme.test>"),
            std::string::npos);
}

TEST_F(PeersTest, WelcomeWaitsForRelaydWithoutFailingCreationOrImport) {
  peers_.relay_status = absl::UnavailableError("relayd down");
  v1::CreateUserResponse created;
  ASSERT_TRUE(CreateUser("alice@acme.test", &created).ok());
  EXPECT_EQ(Pending("welcome"), 1u);
  peers_.relay = false;  // not configured at all
  v1::ImportUsersRequest imp;
  imp.set_csv("address,name\nbob@acme.test,Bob\ncarol@acme.test,Carol\n");
  v1::ImportUsersResponse resp;
  ASSERT_TRUE(dir_stub_->ImportUsers(Ctx(admin_).get(), imp, &resp).ok());
  ASSERT_EQ(resp.errors_size(), 0);
  EXPECT_EQ(Pending("welcome"), 3u);
  // Still down: the round keeps them.
  ASSERT_TRUE(directory_->BackgroundRound(absl::Now()).ok());
  EXPECT_EQ(Pending("welcome"), 3u);
  // A user disabled meanwhile gets no welcome.
  v1::DisableUserRequest dis;
  dis.set_user_id(resp.created(1).user().user_id());
  v1::User u;
  ASSERT_TRUE(dir_stub_->DisableUser(Ctx(admin_).get(), dis, &u).ok());
  peers_.relay = true;
  peers_.relay_status = absl::OkStatus();
  ASSERT_TRUE(directory_->BackgroundRound(absl::Now()).ok());
  EXPECT_EQ(Pending("welcome"), 0u);
  absl::MutexLock l(&peers_.mu);
  std::set<std::string> to;
  for (const auto& m : peers_.submitted) to.insert(m.recipients(0));
  EXPECT_EQ(to, (std::set<std::string>{"alice@acme.test", "bob@acme.test"}));
}

TEST_F(PeersTest, QuotaChangesArePushedToMailstoredOrRetried) {
  v1::CreateUserResponse created;
  ASSERT_TRUE(CreateUser("alice@acme.test", &created).ok());
  const std::string mbx = created.user().mailbox_id();
  v1::UpdateUserRequest up;
  up.mutable_user()->set_user_id(created.user().user_id());
  up.mutable_user()->mutable_quota()->mutable_bytes()->set_value(50 << 20);
  up.mutable_user()->mutable_quota()->mutable_messages()->set_value(1000);
  up.mutable_update_mask()->add_paths("quota");
  v1::User u;
  grpc::Status s = dir_stub_->UpdateUser(Ctx(admin_).get(), up, &u);
  ASSERT_TRUE(s.ok()) << s.error_message();
  {
    absl::MutexLock l(&peers_.mu);
    ASSERT_EQ(peers_.quotas.count(mbx), 1u);
    EXPECT_EQ(peers_.quotas[mbx].bytes().value(), 50 << 20);
    peers_.quotas.clear();
  }
  // mailstored refuses for now: the change stands, the push waits.
  peers_.quota_status = absl::UnavailableError("no leader");
  up.mutable_user()->mutable_quota()->mutable_bytes()->set_value(60 << 20);
  ASSERT_TRUE(dir_stub_->UpdateUser(Ctx(admin_).get(), up, &u).ok());
  EXPECT_EQ(u.quota().bytes().value(), 60 << 20);
  EXPECT_EQ(Pending("quota"), 1u);
  peers_.quota_status = absl::OkStatus();
  ASSERT_TRUE(directory_->BackgroundRound(absl::Now()).ok());
  EXPECT_EQ(Pending("quota"), 0u);
  absl::MutexLock l(&peers_.mu);
  EXPECT_EQ(peers_.quotas[mbx].bytes().value(), 60 << 20);
}

TEST_F(PeersTest, DisablingEndsSessionsAtIdentityd) {
  const std::string alice = User("alice@acme.test");
  const std::string bob = User("bob@acme.test");
  v1::DisableUserRequest dis;
  dis.set_user_id(alice);
  dis.set_reason("left the company");
  v1::User u;
  ASSERT_TRUE(dir_stub_->DisableUser(Ctx(admin_).get(), dis, &u).ok());
  {
    absl::MutexLock l(&peers_.mu);
    EXPECT_EQ(peers_.sessions_ended, std::vector<std::string>{alice});
    peers_.sessions_ended.clear();
  }
  EXPECT_EQ(Pending("sessions"), 0u);
  // identityd down: disabled anyway, the session end waits; a user enabled
  // again before the retry is left signed in.
  peers_.sessions_status = absl::UnavailableError("identityd down");
  dis.set_user_id(bob);
  ASSERT_TRUE(dir_stub_->DisableUser(Ctx(admin_).get(), dis, &u).ok());
  EXPECT_EQ(u.state(), v1::USER_STATE_DISABLED);
  v1::DeleteUserRequest del;
  del.set_user_id(alice);
  ASSERT_TRUE(dir_stub_->DeleteUser(Ctx(admin_).get(), del, &u).ok());
  EXPECT_EQ(Pending("sessions"), 2u);
  v1::EnableUserRequest en;
  en.set_user_id(bob);
  ASSERT_TRUE(dir_stub_->EnableUser(Ctx(admin_).get(), en, &u).ok());
  peers_.sessions_status = absl::OkStatus();
  ASSERT_TRUE(directory_->BackgroundRound(absl::Now()).ok());
  EXPECT_EQ(Pending("sessions"), 0u);
  absl::MutexLock l(&peers_.mu);
  EXPECT_EQ(peers_.sessions_ended, std::vector<std::string>{alice});
}

class RecoveryNoticeTest : public PeersTest {
 protected:
  // UpdateUser of the recovery address (plus the display name when
  // `also_name` is set), by `token`.
  grpc::Status SetRecovery(const std::string& user_id, const std::string& address,
                           const std::string& token, const std::string& also_name = "") {
    v1::UpdateUserRequest up;
    up.mutable_user()->set_user_id(user_id);
    up.mutable_user()->set_recovery_email(address);
    up.mutable_update_mask()->add_paths("recovery_email");
    if (!also_name.empty()) {
      up.mutable_user()->set_display_name(also_name);
      up.mutable_update_mask()->add_paths("display_name");
    }
    v1::User u;
    return dir_stub_->UpdateUser(Ctx(token).get(), up, &u);
  }
  std::vector<identity::v1::NotifyRecoveryEmailChangedRequest> TakeNotices() {
    absl::MutexLock l(&peers_.mu);
    return std::exchange(peers_.recovery_notices, {});
  }
};

TEST_F(RecoveryNoticeTest, AChangedRecoveryAddressIsAnnouncedOnceWithTheOldAddress) {
  const std::string alice = User("alice@acme.test");
  // Creation sets no recovery address and announces nothing but the welcome.
  EXPECT_TRUE(TakeNotices().empty());

  ASSERT_TRUE(SetRecovery(alice, "alice.home@example.org", admin_).ok());
  auto sent = TakeNotices();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].tenant_id(), tenant_);
  EXPECT_EQ(sent[0].user_id(), alice);
  EXPECT_EQ(sent[0].old_recovery_email(), "");
  EXPECT_EQ(sent[0].new_recovery_email(), "alice.home@example.org");
  EXPECT_TRUE(sent[0].by_admin());
  EXPECT_FALSE(sent[0].event_id().empty());
  EXPECT_TRUE(sent[0].has_changed_at());
  EXPECT_EQ(Pending("recovery"), 0u);

  // The user moves it: the OLD address is named, by_admin false.
  const std::string own = Mint(tenant_, {"user"}, alice);
  ASSERT_TRUE(SetRecovery(alice, "alice.new@example.net", own).ok());
  sent = TakeNotices();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].old_recovery_email(), "alice.home@example.org");
  EXPECT_EQ(sent[0].new_recovery_email(), "alice.new@example.net");
  EXPECT_FALSE(sent[0].by_admin());

  // The same address again (other fields changing or not): no notice.
  ASSERT_TRUE(SetRecovery(alice, "alice.new@example.net", admin_).ok());
  ASSERT_TRUE(SetRecovery(alice, "alice.new@example.net", admin_, "Alice Liddell").ok());
  EXPECT_TRUE(TakeNotices().empty());
  // A refused change (the user's own mailbox) announces nothing either.
  EXPECT_EQ(SetRecovery(alice, "alice@acme.test", admin_).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(TakeNotices().empty());
  EXPECT_EQ(Pending("recovery"), 0u);

  // Removing it is a change too (old named, new empty).
  ASSERT_TRUE(SetRecovery(alice, "", admin_).ok());
  sent = TakeNotices();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].old_recovery_email(), "alice.new@example.net");
  EXPECT_EQ(sent[0].new_recovery_email(), "");
}

TEST_F(RecoveryNoticeTest, IdentitydDownKeepsEachChangePendingUntilTheRound) {
  const std::string alice = User("alice@acme.test");
  peers_.recovery_status = absl::UnavailableError("identityd down");
  // The write never fails because of identityd; two quick changes are two
  // pending notices, each with its own old address.
  ASSERT_TRUE(SetRecovery(alice, "first@example.org", admin_).ok());
  ASSERT_TRUE(SetRecovery(alice, "second@example.org", admin_).ok());
  EXPECT_EQ(Pending("recovery"), 2u);
  ASSERT_TRUE(directory_->BackgroundRound(absl::Now()).ok());
  EXPECT_EQ(Pending("recovery"), 2u);  // still down
  EXPECT_TRUE(TakeNotices().empty());

  peers_.recovery_status = absl::OkStatus();
  ASSERT_TRUE(directory_->BackgroundRound(absl::Now()).ok());
  EXPECT_EQ(Pending("recovery"), 0u);
  auto sent = TakeNotices();
  ASSERT_EQ(sent.size(), 2u);
  std::set<std::pair<std::string, std::string>> moves;
  std::set<std::string> events;
  for (const auto& n : sent) {
    moves.insert({n.old_recovery_email(), n.new_recovery_email()});
    events.insert(n.event_id());
  }
  EXPECT_EQ(moves, (std::set<std::pair<std::string, std::string>>{
                       {"", "first@example.org"}, {"first@example.org", "second@example.org"}}));
  EXPECT_EQ(events.size(), 2u);
  // Nothing left: another round sends nothing again.
  ASSERT_TRUE(directory_->BackgroundRound(absl::Now()).ok());
  EXPECT_TRUE(TakeNotices().empty());

  // identityd refusing the request for good (INVALID_ARGUMENT): dropped,
  // not retried forever.
  peers_.recovery_status = absl::InvalidArgumentError("event_id: bad");
  ASSERT_TRUE(SetRecovery(alice, "third@example.org", admin_).ok());
  EXPECT_EQ(Pending("recovery"), 0u);
}

TEST_F(PeersTest, RemoveDomainIsRefusedWhileTheDirectoryUsesIt) {
  const std::string alice = User("alice@acme.test");
  Group("team@acme.test", {Member(v1::MEMBER_KIND_USER, alice)});
  v1::RemoveDomainRequest rm;
  rm.set_name("acme.test");
  v1::RemoveDomainResponse resp;
  RpcError e = Details(ds_->RemoveDomain(Ctx(admin_).get(), rm, &resp));
  EXPECT_EQ(e.code, grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(e.reason, "IN_USE");
  EXPECT_NE(e.message.find("2 address(es) (1 user(s), 1 group address(es))"), std::string::npos)
      << e.message;
  v1::ResolveResponse res;
  EXPECT_TRUE(Resolve("alice@acme.test", &res).ok());

  // A domain that is an alias target counts too.
  v1::SetDomainMailSettingsRequest set;
  set.set_domain("acme-alias.test");
  set.mutable_settings()->set_alias_of("acme.test");
  v1::DomainMailSettings settings;
  grpc::Status s = dir_stub_->SetDomainMailSettings(Ctx(admin_).get(), set, &settings);
  ASSERT_TRUE(s.ok()) << s.error_message();
  e = Details(ds_->RemoveDomain(Ctx(admin_).get(), rm, &resp));
  EXPECT_NE(e.message.find("1 alias domain(s)"), std::string::npos) << e.message;

  // An unused domain goes, its mail settings with it.
  rm.set_name("acme-alias.test");
  s = ds_->RemoveDomain(Ctx(admin_).get(), rm, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(KeysUnder(dkeys::MailSettings(tenant_, "acme-alias.test")), 0u);
  rm.set_name("pending.test");
  EXPECT_TRUE(ds_->RemoveDomain(Ctx(admin_).get(), rm, &resp).ok());
}

// A deleted user and a deleted shared mailbox stay through the grace period;
// then the purge deletes both mailboxes at mailstored (not before it
// answers) and every key that names them, so their addresses can be taken
// again and the seat the user held goes back to the plan.
TEST_F(PeersTest, PurgeAfterTheGracePeriodFreesMailboxesAddressesAndSeats) {
  const std::string alice = User("alice@acme.test");
  v1::CreateSharedMailboxRequest cs;
  cs.set_address("support@acme.test");
  v1::SharedMailbox support;
  ASSERT_TRUE(dir_stub_->CreateSharedMailbox(Ctx(admin_).get(), cs, &support).ok());
  // Alice holds a seat on a shared mailbox that stays.
  v1::CreateSharedMailboxRequest cs_sales;
  cs_sales.set_address("sales@acme.test");
  v1::SharedMailbox sales;
  ASSERT_TRUE(dir_stub_->CreateSharedMailbox(Ctx(admin_).get(), cs_sales, &sales).ok());
  v1::AssignSeatRequest seat;
  seat.set_shared_mailbox_id(sales.shared_mailbox_id());
  seat.set_user_id(alice);
  v1::Seat assigned;
  ASSERT_TRUE(dir_stub_->AssignSeat(Ctx(admin_).get(), seat, &assigned).ok());
  for (const auto& [address, user, shared] :
       {std::tuple{"al@acme.test", alice, std::string()},
        std::tuple{"help@acme.test", std::string(), support.shared_mailbox_id()}}) {
    v1::AddAliasRequest a;
    a.set_address(address);
    if (!user.empty()) a.set_user_id(user);
    if (!shared.empty()) a.set_shared_mailbox_id(shared);
    v1::Alias out;
    ASSERT_TRUE(dir_stub_->AddAlias(Ctx(admin_).get(), a, &out).ok()) << address;
  }
  const std::string group =
      Group("team@acme.test", {Member(v1::MEMBER_KIND_USER, alice),
                               Member(v1::MEMBER_KIND_SHARED_MAILBOX, support.shared_mailbox_id())});
  // A third member, so the group is not empty after the purge.
  const std::string bob = User("bob@acme.test");
  v1::AddGroupMemberRequest add;
  add.set_group_id(group);
  *add.mutable_member() = Member(v1::MEMBER_KIND_USER, bob);
  v1::Group g;
  ASSERT_TRUE(dir_stub_->AddGroupMember(Ctx(admin_).get(), add, &g).ok());

  v1::DeleteUserRequest du;
  du.set_user_id(alice);
  v1::User deleted;
  ASSERT_TRUE(dir_stub_->DeleteUser(Ctx(admin_).get(), du, &deleted).ok());
  v1::DeleteSharedMailboxRequest ds;
  ds.set_shared_mailbox_id(support.shared_mailbox_id());
  v1::DeleteSharedMailboxResponse dr;
  ASSERT_TRUE(dir_stub_->DeleteSharedMailbox(Ctx(admin_).get(), ds, &dr).ok());
  const std::string alice_mailbox = deleted.mailbox_id();
  const std::string support_mailbox = support.mailbox_id();
  auto seats_used = [&] {
    return store_->Read<v1::TenantUsage>(keys::Usage(tenant_))->value.shared_mailbox_seats();
  };
  EXPECT_EQ(seats_used(), 1);  // the deleted user keeps its seat until the purge
  EXPECT_EQ(KeysUnder(dkeys::PurgePrefix()), 2u);

  // Within the grace period: nothing goes, the addresses stay taken.
  ASSERT_TRUE(directory_->BackgroundRound(absl::Now()).ok());
  v1::CreateUserResponse again;
  EXPECT_EQ(CreateUser("alice@acme.test", &again).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(dir_stub_->CreateSharedMailbox(Ctx(admin_).get(), cs, &support).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  {
    absl::MutexLock l(&peers_.mu);
    EXPECT_TRUE(peers_.deleted.empty());
  }

  // Past it, with mailstored refusing: still nothing, the keys wait.
  const absl::Time past = absl::Now() + options_.user_grace_period + absl::Minutes(1);
  peers_.mailstore_status = absl::UnavailableError("shard down");
  ASSERT_TRUE(directory_->BackgroundRound(past).ok());
  EXPECT_EQ(KeysUnder(dkeys::PurgePrefix()), 2u);
  EXPECT_TRUE(ReadUser(*store_, tenant_, alice).ok());

  peers_.mailstore_status = absl::OkStatus();
  ASSERT_TRUE(directory_->BackgroundRound(past).ok());
  {
    absl::MutexLock l(&peers_.mu);
    EXPECT_EQ(peers_.deleted, (std::set<std::string>{alice_mailbox, support_mailbox}));
    EXPECT_EQ(peers_.passwords.count(alice), 0u);
  }
  EXPECT_EQ(KeysUnder(dkeys::PurgePrefix()), 0u);
  EXPECT_TRUE(absl::IsNotFound(ReadUser(*store_, tenant_, alice).status()));
  EXPECT_TRUE(
      absl::IsNotFound(ReadShared(*store_, tenant_, support.shared_mailbox_id()).status()));
  EXPECT_EQ(KeysUnder(dkeys::SeatPrefix(tenant_, sales.shared_mailbox_id())), 0u);
  EXPECT_EQ(KeysUnder(dkeys::UserSeatPrefix(tenant_, alice)), 0u);
  EXPECT_EQ(seats_used(), 0);
  EXPECT_EQ(DirectMemberIds(group), std::vector<std::string>{bob});
  EXPECT_EQ(KeysUnder(dkeys::MemberOfPrefix(tenant_, alice)), 0u);
  EXPECT_EQ(Recipients("team@acme.test"), (std::set<std::string>{"bob@acme.test"}));
  for (const char* gone :
       {"alice@acme.test", "al@acme.test", "support@acme.test", "help@acme.test"}) {
    v1::ResolveResponse res;
    EXPECT_EQ(Resolve(gone, &res).error_code(), grpc::StatusCode::NOT_FOUND) << gone;
  }
  // Every address is free again.
  EXPECT_TRUE(CreateUser("alice@acme.test", &again).ok());
  EXPECT_TRUE(dir_stub_->CreateSharedMailbox(Ctx(admin_).get(), cs, &support).ok());
  v1::AddAliasRequest a;
  a.set_address("help@acme.test");
  a.set_shared_mailbox_id(support.shared_mailbox_id());
  v1::Alias out;
  EXPECT_TRUE(dir_stub_->AddAlias(Ctx(admin_).get(), a, &out).ok());
}

}  // namespace
}  // namespace mailgrid::tenant
