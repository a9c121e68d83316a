// Core against a real redis-server, a real RocksDB (LocalStore) and a fake
// directory: the sign-in state machine, second factors, throttling,
// tokens, SASL, reset and QR login.
#include "services/identity/core.h"

#include <filesystem>
#include <functional>

#include "gtest/gtest.h"
#include "libs/redis/testing/redis_server.h"
#include "libs/redis/testing/status_macros.h"
#include "libs/store/local_store.h"
#include "services/identity/errors.h"
#include "services/identity/testing_fake_directory.h"
#include "services/identity/totp.h"

namespace mailgrid::identity {
namespace {

using redis::testing::RedisServer;

// Records what Core asks to be mailed (the worker and relayd are
// notices_test's and the e2e test's part).
class RecordingNotices final : public Notices {
 public:
  absl::Status SendPasswordReset(const tenant::v1::User&, const std::string&,
                                 absl::Duration) override {
    return absl::OkStatus();
  }
  absl::Status SendSecurityNotice(SecurityNotice notice) override {
    absl::MutexLock lock(&mu_);
    if (!refuse_.ok()) return refuse_;
    sent_.push_back(std::move(notice));
    return absl::OkStatus();
  }
  // What SendSecurityNotice answers from now on (a full queue, say).
  void Refuse(absl::Status s) {
    absl::MutexLock lock(&mu_);
    refuse_ = std::move(s);
  }
  std::vector<SecurityNotice> TakeAll() {
    absl::MutexLock lock(&mu_);
    return std::exchange(sent_, {});
  }

 private:
  absl::Mutex mu_;
  std::vector<SecurityNotice> sent_ ABSL_GUARDED_BY(mu_);
  absl::Status refuse_ ABSL_GUARDED_BY(mu_);
};

std::string Reason(const absl::Status& s) {
  auto d = ErrorDetailOf(s);
  return d ? d->reason() : "";
}

class CoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MG_ASSERT_OK_AND_ASSIGN(redis_server_, RedisServer::Start());
    redis_ = std::make_unique<redis::Client>(redis_server_->ClientOptions());
    dir_ = std::filesystem::temp_directory_path() /
           ("identity_core_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    MG_ASSERT_OK_AND_ASSIGN(local_, store::LocalStore::Open(dir_.string()));
    store_ = std::make_unique<IdentityStore>(local_.get());
    hasher_ = std::make_unique<PasswordHasher>(HashParams{1, 8 * 1024}, 2);
    MG_ASSERT_OK_AND_ASSIGN(signer_, auth::TokenSigner::Generate("test-key"));
    verifier_ = std::make_unique<auth::TokenVerifier>("mailgrid");
    MG_ASSERT_OK(verifier_->AddPublicPem("test-key", *signer_->PublicPem()));
    sessions_ = std::make_unique<SessionManager>(redis_.get(), signer_.get(), SessionOptions{});
    ThrottleOptions to;
    to.delay_after = 100;  // no delays: the lock alone is tested
    to.lock_after = 3;
    to.lock_for = absl::Seconds(2);
    throttle_ = std::make_unique<Throttler>(redis_.get(), to);
    CoreOptions co;
    co.notices = &notices_;
    co.reset_token_sink = [this](const std::string& address, const std::string& token) {
      reset_tokens_[address] = token;
    };
    core_ = std::make_unique<Core>(store_.get(), &directory_, hasher_.get(), sessions_.get(),
                                   throttle_.get(), redis_.get(), CommonPasswords::Builtin(),
                                   verifier_.get(), co);
    directory_.Add("t1", "u-ann", "ann@example.com");
    directory_.Add("t1", "u-admin", "admin@example.com", {common::v1::ROLE_TENANT_ADMIN});
    directory_.Add("t2", "u-bob", "bob@other.example");
    service_.kind = Caller::Kind::kService;
    service_.claims.roles = {"service"};
    service_.claims.service = "tenantd";
    anonymous_.peer_ip = "192.0.2.10";
    SetPassword("t1", "u-ann", kAnnPassword, false);
    SetPassword("t1", "u-admin", kAdminPassword, false);
    SetPassword("t2", "u-bob", kAnnPassword, false);
  }
  void TearDown() override {
    core_.reset();
    local_.reset();
    std::filesystem::remove_all(dir_);
  }

  void SetPassword(const std::string& t, const std::string& u, const std::string& pw,
                   bool must_change) {
    v1::SetInitialPasswordRequest r;
    auto* e = r.add_entries();
    e->set_tenant_id(t);
    e->set_user_id(u);
    e->set_password(pw);
    e->set_must_change(must_change);
    MG_ASSERT_OK(core_->SetInitialPassword(service_, r));
  }

  absl::StatusOr<v1::LoginResult> Login(const std::string& address, const std::string& pw) {
    v1::LoginRequest r;
    r.set_address(address);
    r.set_password(pw);
    return core_->Login(anonymous_, r);
  }

  Caller UserCaller(const v1::Session& s) {
    auto c = core_->AuthenticateBearer(s.access_token(), "192.0.2.20");
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : Caller();
  }

  v1::Session SignIn(const std::string& address, const std::string& pw) {
    auto r = Login(address, pw);
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r.ok() && r->has_session()) << (r.ok() ? r->DebugString() : "");
    return r.ok() ? r->session() : v1::Session();
  }

  // Enrols TOTP for a signed-in user; returns the raw secret.
  std::string EnrolTotp(const v1::Session& s, const std::string& pw,
                        std::vector<std::string>* codes) {
    v1::BeginTotpEnrolmentRequest b;
    b.mutable_reauth()->set_current_password(pw);
    auto begun = core_->BeginTotpEnrolment(UserCaller(s), b);
    EXPECT_TRUE(begun.ok()) << begun.status();
    std::string secret = *Base32Decode(begun->secret_base32());
    v1::ConfirmTotpEnrolmentRequest c;
    c.set_enrolment_id(begun->enrolment_id());
    c.set_code(
        Totp(secret, absl::Now() - absl::Seconds(30)));  // the previous step: leaves now free
    auto confirmed = core_->ConfirmTotpEnrolment(UserCaller(s), c);
    EXPECT_TRUE(confirmed.ok()) << confirmed.status();
    if (codes)
      codes->assign(confirmed->recovery_codes().begin(), confirmed->recovery_codes().end());
    return secret;
  }

  static constexpr char kAnnPassword[] = "violet-kettle-orbit-42";
  static constexpr char kAdminPassword[] = "granite-lantern-fjord-7";

  // The one notice queued since the last call (fails the test otherwise).
  SecurityNotice OnlyNotice() {
    std::vector<SecurityNotice> all = notices_.TakeAll();
    EXPECT_EQ(all.size(), 1u);
    for (const auto& n : all) {  // every notice here is about ann
      EXPECT_EQ(n.tenant_id, "t1");
      EXPECT_EQ(n.user_id, "u-ann");
      EXPECT_FALSE(n.id.empty());
    }
    return all.empty() ? SecurityNotice() : all.back();
  }
  bool Alive(const v1::Session& s) { return core_->AuthenticateBearer(s.access_token(), "").ok(); }

  RecordingNotices notices_;
  std::unique_ptr<RedisServer> redis_server_;
  std::unique_ptr<redis::Client> redis_;
  std::filesystem::path dir_;
  std::unique_ptr<store::LocalStore> local_;
  std::unique_ptr<IdentityStore> store_;
  testing::FakeDirectory directory_;
  std::unique_ptr<PasswordHasher> hasher_;
  std::unique_ptr<auth::TokenSigner> signer_;
  std::unique_ptr<auth::TokenVerifier> verifier_;
  std::unique_ptr<SessionManager> sessions_;
  std::unique_ptr<Throttler> throttle_;
  std::unique_ptr<Core> core_;
  std::map<std::string, std::string> reset_tokens_;
  Caller service_, anonymous_;
};

TEST_F(CoreTest, FirstLoginForcesPasswordChange) {
  SetPassword("t1", "u-ann", "initial-Secret-123", true);
  auto first = Login("ann@example.com", "initial-Secret-123");
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(first->has_password_change_required()) << first->DebugString();
  EXPECT_EQ(first->password_change_required().reason(), v1::PASSWORD_CHANGE_REASON_INITIAL);
  EXPECT_EQ(first->password_change_required().min_length(), 12u);

  v1::ChangePasswordRequest change;
  change.set_ticket(first->password_change_required().ticket());
  change.set_new_password("password1234");
  EXPECT_EQ(Reason(core_->ChangePassword(anonymous_, change).status()), "TOO_COMMON");
  change.set_new_password("initial-Secret-123");
  EXPECT_EQ(Reason(core_->ChangePassword(anonymous_, change).status()), "SAME_AS_OLD");
  change.set_new_password("brand-new-Secret-456");
  notices_.TakeAll();
  auto changed = core_->ChangePassword(anonymous_, change);
  ASSERT_TRUE(changed.ok()) << changed.status();
  ASSERT_TRUE(changed->has_session());
  // The first sign-in's change is no security notice (the welcome mail
  // announced the account); later required changes are.
  EXPECT_TRUE(notices_.TakeAll().empty());
  // The ticket was single use.
  EXPECT_EQ(core_->ChangePassword(anonymous_, change).status().code(),
            absl::StatusCode::kUnauthenticated);

  auto claims = verifier_->Verify(changed->session().access_token());
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->tenant_id, "t1");
  EXPECT_EQ(claims->subject, "u-ann");
  EXPECT_EQ(claims->address, "ann@example.com");
  EXPECT_EQ(claims->scope, "full");
  EXPECT_EQ(claims->mailbox_ids, std::vector<std::string>{"mbx-u-ann"});
  EXPECT_EQ(claims->auth_methods, std::vector<std::string>{"pwd"});
  EXPECT_TRUE(claims->HasRole("user"));

  EXPECT_EQ(Login("ann@example.com", "initial-Secret-123").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(Login("ann@example.com", "brand-new-Secret-456")->has_session());
}

TEST_F(CoreTest, UnknownUserAndWrongPasswordLookAlike) {
  auto unknown = Login("nobody@example.com", "whatever-password-1");
  auto wrong = Login("ann@example.com", "whatever-password-1");
  directory_.SetState("u-ann", tenant::v1::USER_STATE_DISABLED);
  auto disabled = Login("ann@example.com", kAnnPassword);
  for (const auto* s : {&unknown, &wrong, &disabled}) {
    EXPECT_EQ(s->status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(s->status().message(), kInvalidCredentials);
  }
  EXPECT_EQ(Reason(Login("ann@example.com", std::string("\xff\xfe")).status()), "NOT_UTF8");
  EXPECT_EQ(Reason(Login(std::string(400, 'a'), "x").status()), "TOO_LONG");
}

TEST_F(CoreTest, TotpChallengeReplayAndRecoveryCodes) {
  v1::Session s = SignIn("ann@example.com", kAnnPassword);
  std::vector<std::string> recovery;
  std::string secret = EnrolTotp(s, kAnnPassword, &recovery);
  ASSERT_EQ(recovery.size(), 10u);

  auto step1 = Login("ann@example.com", kAnnPassword);
  ASSERT_TRUE(step1.ok() && step1->has_second_factor()) << step1.status();
  v1::CompleteSecondFactorRequest r;
  r.set_challenge_id(step1->second_factor().challenge_id());
  r.set_totp_code("12a456");
  EXPECT_EQ(Reason(core_->CompleteSecondFactor(anonymous_, r).status()), "NOT_SIX_DIGITS");
  std::string code = Totp(secret, absl::Now());
  r.set_totp_code(code);
  auto done = core_->CompleteSecondFactor(anonymous_, r);
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_TRUE(done->has_session());
  EXPECT_EQ(verifier_->Verify(done->session().access_token())->auth_methods,
            (std::vector<std::string>{"pwd", "otp"}));

  // The same code again, on a fresh challenge: refused (replay).
  auto step2 = Login("ann@example.com", kAnnPassword);
  ASSERT_TRUE(step2.ok() && step2->has_second_factor());
  r.set_challenge_id(step2->second_factor().challenge_id());
  EXPECT_EQ(core_->CompleteSecondFactor(anonymous_, r).status().code(),
            absl::StatusCode::kUnauthenticated);
  // A recovery code works, once.
  r.set_recovery_code(recovery[3]);
  ASSERT_TRUE(core_->CompleteSecondFactor(anonymous_, r).ok());
  auto step3 = Login("ann@example.com", kAnnPassword);
  r.set_challenge_id(step3->second_factor().challenge_id());
  EXPECT_EQ(core_->CompleteSecondFactor(anonymous_, r).status().code(),
            absl::StatusCode::kUnauthenticated);

  v1::ListAuthEventsRequest events;
  events.set_user_id("u-ann");
  events.add_kinds(v1::AUTH_EVENT_KIND_TOTP_REPLAY);
  auto admin = SignIn("admin@example.com", kAdminPassword);
  auto listed = core_->ListAuthEvents(UserCaller(admin), events);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_GE(listed->events_size(), 1);
}

TEST_F(CoreTest, ThrottlingLocksAndAdminUnlocks) {
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(Login("ann@example.com", "wrong-password-xx").status().code(),
              absl::StatusCode::kUnauthenticated);
  auto locked = Login("ann@example.com", kAnnPassword);
  EXPECT_EQ(locked.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Reason(locked.status()), "THROTTLED");
  // Unknown addresses are throttled the same way.
  for (int i = 0; i < 3; ++i) (void)Login("ghost@example.com", "wrong-password-xx");
  EXPECT_EQ(Reason(Login("ghost@example.com", "wrong-password-xx").status()), "THROTTLED");

  auto admin = SignIn("admin@example.com", kAdminPassword);
  auto lockouts = core_->ListLockouts(UserCaller(admin), {});
  ASSERT_TRUE(lockouts.ok()) << lockouts.status();
  ASSERT_EQ(lockouts->lockouts_size(), 1);
  EXPECT_EQ(lockouts->lockouts(0).user_id(), "u-ann");
  EXPECT_TRUE(lockouts->lockouts(0).has_locked_until());
  v1::UnlockAccountRequest unlock;
  unlock.set_user_id("u-ann");
  ASSERT_TRUE(core_->UnlockAccount(UserCaller(admin), unlock).ok());
  EXPECT_TRUE(Login("ann@example.com", kAnnPassword)->has_session());
  // Another tenant's admin cannot see or unlock her.
  unlock.set_user_id("u-bob");
  EXPECT_EQ(core_->UnlockAccount(UserCaller(admin), unlock).status().code(),
            absl::StatusCode::kNotFound);

  // The lock also runs out by itself.
  for (int i = 0; i < 3; ++i) (void)Login("ann@example.com", "wrong-password-xx");
  EXPECT_EQ(Reason(Login("ann@example.com", kAnnPassword).status()), "THROTTLED");
  absl::Time deadline = absl::Now() + absl::Seconds(60);
  absl::StatusOr<v1::LoginResult> again = Login("ann@example.com", kAnnPassword);
  while (!again.ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
    again = Login("ann@example.com", kAnnPassword);
  }
  ASSERT_TRUE(again.ok()) << again.status();
}

TEST_F(CoreTest, RefreshTokensRotateAndReuseEndsTheSession) {
  v1::Session s = SignIn("ann@example.com", kAnnPassword);
  v1::RefreshTokenRequest r;
  r.set_refresh_token(s.refresh_token());
  auto next = core_->RefreshToken(anonymous_, r);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_NE(next->refresh_token(), s.refresh_token());
  EXPECT_EQ(next->session_id(), s.session_id());
  // The old one again: refused, and the whole session ends.
  EXPECT_EQ(core_->RefreshToken(anonymous_, r).status().code(), absl::StatusCode::kUnauthenticated);
  r.set_refresh_token(next->refresh_token());
  EXPECT_EQ(core_->RefreshToken(anonymous_, r).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_FALSE(core_->AuthenticateBearer(next->access_token(), "").ok());

  v1::Session a = SignIn("ann@example.com", kAnnPassword);
  v1::Session b = SignIn("ann@example.com", kAnnPassword);
  auto sessions = core_->ListSessions(UserCaller(a), {});
  ASSERT_TRUE(sessions.ok());
  EXPECT_EQ(sessions->sessions_size(), 2);
  auto ended = core_->LogoutEverywhere(UserCaller(a), {});
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->sessions_ended(), 2);
  r.set_refresh_token(b.refresh_token());
  EXPECT_FALSE(core_->RefreshToken(anonymous_, r).ok());
}

TEST_F(CoreTest, SaslPasswordsAppPasswordsAndBearers) {
  v1::CheckSaslRequest r;
  r.set_mechanism(v1::SASL_MECHANISM_PLAIN);
  r.set_authcid("ann@example.com");
  r.set_password(kAnnPassword);
  r.set_protocol(common::v1::PROTOCOL_IMAP);
  r.mutable_client()->set_ip("198.51.100.7");
  EXPECT_EQ(core_->CheckSasl(anonymous_, r).status().code(), absl::StatusCode::kUnauthenticated);
  auto ok = core_->CheckSasl(service_, r);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->credential(), v1::CREDENTIAL_KIND_PASSWORD);
  EXPECT_EQ(ok->user_id(), "u-ann");
  ASSERT_EQ(ok->mailboxes_size(), 1);

  v1::Session s = SignIn("ann@example.com", kAnnPassword);
  EnrolTotp(s, kAnnPassword, nullptr);
  s = SignIn("admin@example.com", kAdminPassword);  // any full session for the next calls
  // With TOTP on, the account password no longer works over SASL...
  EXPECT_EQ(core_->CheckSasl(service_, r).status().code(), absl::StatusCode::kUnauthenticated);
  // ...an app password does, for its protocols only.
  v1::LoginResult ann = *Login("ann@example.com", kAnnPassword);
  ASSERT_TRUE(ann.has_second_factor());
  v1::CreateAppPasswordRequest create;
  create.set_name("Thunderbird");
  create.add_protocols(common::v1::PROTOCOL_IMAP);
  // Needs Ann's own session: complete her sign-in with a recovery-free path.
  auto cred = store_->GetCredential("t1", "u-ann");
  v1::CompleteSecondFactorRequest f;
  f.set_challenge_id(ann.second_factor().challenge_id());
  f.set_totp_code(Totp(cred->totp_secret(), absl::Now() + absl::Seconds(30)));
  auto ann_session = core_->CompleteSecondFactor(anonymous_, f);
  ASSERT_TRUE(ann_session.ok()) << ann_session.status();
  auto app = core_->CreateAppPassword(UserCaller(ann_session->session()), create);
  ASSERT_TRUE(app.ok()) << app.status();
  EXPECT_EQ(app->password().size(), 19u);  // four groups of four letters
  r.set_password(app->password());
  auto via_app = core_->CheckSasl(service_, r);
  ASSERT_TRUE(via_app.ok()) << via_app.status();
  EXPECT_EQ(via_app->credential(), v1::CREDENTIAL_KIND_APP_PASSWORD);
  EXPECT_EQ(via_app->app_password_id(), app->app_password().app_password_id());
  r.set_protocol(common::v1::PROTOCOL_SMTP);
  EXPECT_FALSE(core_->CheckSasl(service_, r).ok());

  // Bearer tokens (XOAUTH2), with a MAIL-scoped session issued on request.
  v1::CheckSaslRequest b;
  b.set_mechanism(v1::SASL_MECHANISM_XOAUTH2);
  b.set_authcid("ann@example.com");
  b.set_bearer_token(ann_session->session().access_token());
  b.set_issue_session(true);
  auto via_bearer = core_->CheckSasl(service_, b);
  ASSERT_TRUE(via_bearer.ok()) << via_bearer.status();
  EXPECT_EQ(via_bearer->credential(), v1::CREDENTIAL_KIND_BEARER_TOKEN);
  EXPECT_EQ(via_bearer->session().scope(), common::v1::TOKEN_SCOPE_MAIL);
  b.set_bearer_token("not.a.token");
  EXPECT_EQ(core_->CheckSasl(service_, b).status().code(), absl::StatusCode::kUnauthenticated);
  b.set_mechanism(v1::SASL_MECHANISM_UNSPECIFIED);
  EXPECT_EQ(core_->CheckSasl(service_, b).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CoreTest, ResetTokenIsSingleUse) {
  v1::RequestPasswordResetRequest req;
  req.set_address("ann@example.com");
  ASSERT_TRUE(core_->RequestPasswordReset(anonymous_, req).ok());
  req.set_address("nobody@example.com");
  ASSERT_TRUE(core_->RequestPasswordReset(anonymous_, req).ok());  // same answer
  ASSERT_EQ(reset_tokens_.size(), 1u);
  std::string token = reset_tokens_["ann@example.com"];
  EXPECT_GE(token.size(), 43u);  // 256 bits in base64url

  v1::ResetPasswordRequest reset;
  reset.set_address("ann@example.com");
  reset.set_reset_token(token);
  reset.set_new_password("short");
  EXPECT_EQ(Reason(core_->ResetPassword(anonymous_, reset).status()), "TOO_SHORT");
  reset.set_new_password("after-reset-Secret-1");
  ASSERT_TRUE(core_->ResetPassword(anonymous_, reset).ok());
  reset.set_new_password("after-reset-Secret-2");
  EXPECT_EQ(core_->ResetPassword(anonymous_, reset).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(Login("ann@example.com", "after-reset-Secret-1")->has_session());
}

TEST_F(CoreTest, AdminResetForcesChangeAndEndsSessions) {
  v1::Session ann = SignIn("ann@example.com", kAnnPassword);
  v1::Session admin = SignIn("admin@example.com", kAdminPassword);
  v1::AdminResetPasswordRequest r;
  r.set_user_id("u-ann");
  EXPECT_EQ(core_->AdminResetPassword(UserCaller(ann), r).status().code(),
            absl::StatusCode::kPermissionDenied);
  auto reset = core_->AdminResetPassword(UserCaller(admin), r);
  ASSERT_TRUE(reset.ok()) << reset.status();
  EXPECT_EQ(reset->sessions_ended(), 1);
  EXPECT_FALSE(core_->AuthenticateBearer(ann.access_token(), "").ok());
  auto next = Login("ann@example.com", reset->generated_password());
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->password_change_required().reason(), v1::PASSWORD_CHANGE_REASON_ADMIN_RESET);
}

TEST_F(CoreTest, QrTicketApproveRedeemReplay) {
  auto ticket = core_->CreateQrLoginTicket(anonymous_, {});
  ASSERT_TRUE(ticket.ok()) << ticket.status();
  EXPECT_EQ(ticket->qr_png().substr(1, 3), "PNG");
  v1::RedeemQrLoginTicketRequest redeem;
  redeem.set_ticket_id(ticket->ticket_id());
  redeem.set_redeem_secret("wrong");
  EXPECT_EQ(core_->RedeemQrLoginTicketOnce(anonymous_, redeem).status().code(),
            absl::StatusCode::kNotFound);
  redeem.set_redeem_secret(ticket->redeem_secret());
  EXPECT_EQ(core_->RedeemQrLoginTicketOnce(anonymous_, redeem)->state(),
            v1::QR_TICKET_STATE_PENDING);

  v1::Session phone = SignIn("ann@example.com", kAnnPassword);
  v1::ApproveQrLoginTicketRequest approve;
  approve.set_ticket_id(ticket->ticket_id());
  approve.set_decision(v1::QR_DECISION_APPROVE);
  ASSERT_TRUE(core_->ApproveQrLoginTicket(UserCaller(phone), approve).ok());
  EXPECT_EQ(Reason(core_->ApproveQrLoginTicket(UserCaller(phone), approve).status()),
            "ALREADY_USED");
  auto got = core_->RedeemQrLoginTicketOnce(anonymous_, redeem);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->state(), v1::QR_TICKET_STATE_APPROVED);
  EXPECT_EQ(got->result().session().user_id(), "u-ann");
  EXPECT_EQ(verifier_->Verify(got->result().session().access_token())->auth_methods,
            std::vector<std::string>{"qr"});
  EXPECT_EQ(core_->RedeemQrLoginTicketOnce(anonymous_, redeem)->state(),
            v1::QR_TICKET_STATE_REDEEMED);
}

TEST_F(CoreTest, TenantRequiringTwoFactorGetsEnrolmentSession) {
  auto admin = SignIn("admin@example.com", kAdminPassword);
  v1::SetPasswordPolicyRequest p;
  p.mutable_policy()->set_require_two_factor(v1::TWO_FACTOR_REQUIREMENT_ALL);
  ASSERT_TRUE(core_->SetPasswordPolicy(UserCaller(admin), p).ok());
  auto r = Login("ann@example.com", kAnnPassword);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->totp_enrolment_required());
  EXPECT_EQ(r->session().scope(), common::v1::TOKEN_SCOPE_TOTP_ENROLMENT);
  EXPECT_TRUE(r->session().refresh_token().empty());
  Caller scoped = UserCaller(r->session());
  EXPECT_EQ(core_->CreateAppPassword(scoped, {}).status().code(),
            absl::StatusCode::kPermissionDenied);
  auto begun = core_->BeginTotpEnrolment(scoped, {});
  ASSERT_TRUE(begun.ok()) << begun.status();
  v1::ConfirmTotpEnrolmentRequest c;
  c.set_enrolment_id(begun->enrolment_id());
  c.set_code(Totp(*Base32Decode(begun->secret_base32()), absl::Now()));
  auto confirmed = core_->ConfirmTotpEnrolment(scoped, c);
  ASSERT_TRUE(confirmed.ok()) << confirmed.status();
  EXPECT_EQ(confirmed->session().scope(), common::v1::TOKEN_SCOPE_FULL);
  EXPECT_FALSE(confirmed->session().refresh_token().empty());
}

}  // namespace
}  // namespace mailgrid::identity

namespace mailgrid::identity {
namespace {

// Issue 6: "every reset and factor change notifies the user and ends their
// other sessions". App passwords are the exception for sessions (README):
// they add or remove a mail-client credential, not a way to sign in here.
TEST_F(CoreTest, EveryFactorChangeQueuesItsNoticeAndEndsOtherSessions) {
  v1::Session s1 = SignIn("ann@example.com", kAnnPassword);
  v1::Session s2 = SignIn("ann@example.com", kAnnPassword);
  notices_.TakeAll();

  v1::CreateAppPasswordRequest create;
  create.set_name("Phone");
  auto app = core_->CreateAppPassword(UserCaller(s1), create);
  ASSERT_TRUE(app.ok()) << app.status();
  SecurityNotice n = OnlyNotice();
  EXPECT_EQ(n.event, SecurityEvent::kAppPasswordCreated);
  EXPECT_EQ(n.detail, "Phone");
  EXPECT_EQ(n.client.ip(), "192.0.2.20");
  EXPECT_FALSE(n.by_admin);
  v1::RevokeAppPasswordRequest revoke;
  revoke.set_app_password_id(app->app_password().app_password_id());
  ASSERT_TRUE(core_->RevokeAppPassword(UserCaller(s1), revoke).ok());
  n = OnlyNotice();
  EXPECT_EQ(n.event, SecurityEvent::kAppPasswordRevoked);
  EXPECT_EQ(n.detail, "Phone");  // its name, which the user knows it by
  EXPECT_TRUE(Alive(s2));

  std::vector<std::string> codes;
  EnrolTotp(s1, kAnnPassword, &codes);
  EXPECT_EQ(OnlyNotice().event, SecurityEvent::kTotpEnabled);
  EXPECT_TRUE(Alive(s1));
  EXPECT_FALSE(Alive(s2));

  // A second session (recovery code as second factor), then new codes.
  auto step = Login("ann@example.com", kAnnPassword);
  ASSERT_TRUE(step.ok() && step->has_second_factor()) << step.status();
  v1::CompleteSecondFactorRequest second;
  second.set_challenge_id(step->second_factor().challenge_id());
  second.set_recovery_code(codes[0]);
  auto done = core_->CompleteSecondFactor(anonymous_, second);
  ASSERT_TRUE(done.ok() && done->has_session()) << done.status();
  s2 = done->session();
  v1::RegenerateRecoveryCodesRequest regenerate;
  regenerate.mutable_reauth()->set_current_password(kAnnPassword);
  ASSERT_TRUE(core_->RegenerateRecoveryCodes(UserCaller(s1), regenerate).ok());
  EXPECT_EQ(OnlyNotice().event, SecurityEvent::kRecoveryCodesRegenerated);
  EXPECT_TRUE(Alive(s1));
  EXPECT_FALSE(Alive(s2));

  v1::DisableTotpRequest disable;
  disable.mutable_reauth()->set_current_password(kAnnPassword);
  ASSERT_TRUE(core_->DisableTotp(UserCaller(s1), disable).ok());
  n = OnlyNotice();
  EXPECT_EQ(n.event, SecurityEvent::kTotpDisabled);
  EXPECT_FALSE(n.by_admin);

  // A wrong current password changes nothing and tells nobody.
  v1::ChangePasswordRequest change;
  change.set_current_password("not-the-password-1");
  change.set_new_password("changed-Secret-789");
  EXPECT_FALSE(core_->ChangePassword(UserCaller(s1), change).ok());
  EXPECT_TRUE(notices_.TakeAll().empty());
  change.set_current_password(kAnnPassword);
  auto changed = core_->ChangePassword(UserCaller(s1), change);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(OnlyNotice().event, SecurityEvent::kPasswordChanged);
  EXPECT_FALSE(Alive(s1));
}

TEST_F(CoreTest, ResetsAndRequiredChangesQueueNotices) {
  // Admin reset: by an administrator, every session ended.
  v1::Session admin = SignIn("admin@example.com", kAdminPassword);
  v1::AdminResetPasswordRequest r;
  r.set_user_id("u-ann");
  auto reset = core_->AdminResetPassword(UserCaller(admin), r);
  ASSERT_TRUE(reset.ok()) << reset.status();
  SecurityNotice n = OnlyNotice();
  EXPECT_EQ(n.event, SecurityEvent::kAdminPasswordReset);
  EXPECT_TRUE(n.by_admin);

  // The change that reset requires at the next sign-in.
  auto required = Login("ann@example.com", reset->generated_password());
  ASSERT_TRUE(required.ok() && required->has_password_change_required()) << required.status();
  v1::ChangePasswordRequest change;
  change.set_ticket(required->password_change_required().ticket());
  change.set_new_password("required-Secret-321");
  ASSERT_TRUE(core_->ChangePassword(anonymous_, change).ok());
  EXPECT_EQ(OnlyNotice().event, SecurityEvent::kRequiredPasswordChanged);

  // An expired password (a 1-day maximum age, changed 2 days ago): the
  // required change also ends the sessions from before it.
  v1::SetPasswordPolicyRequest policy;
  policy.mutable_policy()->set_max_password_age_days(1);
  ASSERT_TRUE(core_->SetPasswordPolicy(UserCaller(admin), policy).ok());
  v1::Session before = SignIn("ann@example.com", "required-Secret-321");
  ASSERT_TRUE(store_
                  ->Mutate("t1", "u-ann",
                           [](storage::Credential& cred, bool) {
                             cred.set_password_changed_at(
                                 absl::ToUnixSeconds(absl::Now() - absl::Hours(48)));
                             return absl::OkStatus();
                           })
                  .ok());
  auto expired = Login("ann@example.com", "required-Secret-321");
  ASSERT_TRUE(expired.ok() && expired->has_password_change_required()) << expired.status();
  EXPECT_EQ(expired->password_change_required().reason(), v1::PASSWORD_CHANGE_REASON_EXPIRED);
  notices_.TakeAll();
  change.set_ticket(expired->password_change_required().ticket());
  change.set_new_password("renewed-Secret-654");
  auto changed = core_->ChangePassword(anonymous_, change);
  ASSERT_TRUE(changed.ok() && changed->has_session()) << changed.status();
  EXPECT_EQ(OnlyNotice().event, SecurityEvent::kRequiredPasswordChanged);
  EXPECT_FALSE(Alive(before));
  EXPECT_TRUE(Alive(changed->session()));

  // Forgot password: the request tells nothing (no change yet); the reset does.
  v1::RequestPasswordResetRequest request;
  request.set_address("ann@example.com");
  ASSERT_TRUE(core_->RequestPasswordReset(anonymous_, request).ok());
  EXPECT_TRUE(notices_.TakeAll().empty());
  v1::ResetPasswordRequest forgot;
  forgot.set_address("ann@example.com");
  forgot.set_reset_token(reset_tokens_["ann@example.com"]);
  forgot.set_new_password("after-reset-Secret-1");
  ASSERT_TRUE(core_->ResetPassword(anonymous_, forgot).ok());
  n = OnlyNotice();
  EXPECT_EQ(n.event, SecurityEvent::kPasswordReset);
  EXPECT_EQ(n.detail, "reset token");
  EXPECT_EQ(n.client.ip(), "192.0.2.10");
  EXPECT_FALSE(Alive(changed->session()));
}

// tenantd's call after a recovery address changed (recovery_notice.cc).
class RecoveryNoticeRpcTest : public CoreTest {
 protected:
  static v1::NotifyRecoveryEmailChangedRequest Moved(const std::string& event_id) {
    v1::NotifyRecoveryEmailChangedRequest r;
    r.set_tenant_id("t1");
    r.set_user_id("u-ann");
    r.set_old_recovery_email("ann.old@example.net");
    r.set_new_recovery_email("ann.new@example.org");
    r.set_by_admin(true);
    r.set_event_id(event_id);
    r.mutable_changed_at()->set_seconds(1700000000);
    r.mutable_client()->set_ip("198.51.100.7");
    return r;
  }
  std::string FieldOf(const absl::Status& s) {
    auto d = ErrorDetailOf(s);
    return d ? d->field() : "";
  }
};

TEST_F(RecoveryNoticeRpcTest, QueuesOneNoticeToMailboxNewAndOldAddress) {
  notices_.TakeAll();
  auto r = core_->NotifyRecoveryEmailChanged(service_, Moved("rn-1"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->queued());
  SecurityNotice n = OnlyNotice();
  EXPECT_EQ(n.event, SecurityEvent::kRecoveryEmailChanged);
  EXPECT_EQ(n.id, "rn-1");  // relayd's keys are notice:rn-1:<n>
  EXPECT_EQ(n.old_recovery_email, "ann.old@example.net");
  EXPECT_TRUE(n.by_admin);
  EXPECT_EQ(n.at, absl::FromUnixSeconds(1700000000));
  EXPECT_EQ(n.client.ip(), "198.51.100.7");
  // Sent to: the mailbox, the recovery address on record (tenantd already
  // holds the new one when the worker looks the user up), the old one.
  tenant::v1::User ann = directory_.ByUserId("u-ann")->user();
  ann.set_recovery_email("ann.new@example.org");
  EXPECT_EQ(
      SecurityNoticeRecipients(ann, n),
      (std::vector<std::string>{"ann@example.com", "ann.new@example.org", "ann.old@example.net"}));
}

TEST_F(RecoveryNoticeRpcTest, ARetriedEventIdQueuesNothingTwice) {
  notices_.TakeAll();
  ASSERT_TRUE(core_->NotifyRecoveryEmailChanged(service_, Moved("rn-2")).ok());
  auto again = core_->NotifyRecoveryEmailChanged(service_, Moved("rn-2"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->queued());
  EXPECT_EQ(OnlyNotice().id, "rn-2");
  // Another change is another notice.
  ASSERT_TRUE(core_->NotifyRecoveryEmailChanged(service_, Moved("rn-3")).ok());
  EXPECT_EQ(OnlyNotice().id, "rn-3");

  // A full queue: refused (the caller retries), and the retry is queued,
  // not taken for a duplicate.
  notices_.Refuse(absl::ResourceExhaustedError("notice queue full"));
  EXPECT_TRUE(absl::IsResourceExhausted(
      core_->NotifyRecoveryEmailChanged(service_, Moved("rn-4")).status()));
  EXPECT_TRUE(notices_.TakeAll().empty());
  notices_.Refuse(absl::OkStatus());
  auto retried = core_->NotifyRecoveryEmailChanged(service_, Moved("rn-4"));
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_TRUE(retried->queued());
  EXPECT_EQ(OnlyNotice().id, "rn-4");
}

TEST_F(RecoveryNoticeRpcTest, OnlyServicesMayCallAndBadFieldsAreNamed) {
  notices_.TakeAll();
  EXPECT_TRUE(absl::IsUnauthenticated(
      core_->NotifyRecoveryEmailChanged(anonymous_, Moved("rn-5")).status()));
  v1::Session s = SignIn("admin@example.com", kAdminPassword);
  EXPECT_TRUE(absl::IsPermissionDenied(
      core_->NotifyRecoveryEmailChanged(UserCaller(s), Moved("rn-5")).status()));

  struct Case {
    std::function<void(v1::NotifyRecoveryEmailChangedRequest&)> spoil;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](auto& r) { r.clear_tenant_id(); }, "tenant_id"},
      {[](auto& r) { r.clear_user_id(); }, "user_id"},
      {[](auto& r) { r.clear_event_id(); }, "event_id"},
      {[](auto& r) { r.set_event_id("has space"); }, "event_id"},
      {[](auto& r) { r.set_event_id(std::string(129, 'e')); }, "event_id"},
      {[](auto& r) { r.set_old_recovery_email("x@example.org\r\nBcc: v@example.org"); },
       "old_recovery_email"},
      {[](auto& r) { r.set_new_recovery_email("x@example.org\nBcc: v@example.org"); },
       "new_recovery_email"},
      {[](auto& r) { r.set_new_recovery_email(r.old_recovery_email()); }, "new_recovery_email"},
  };
  for (const Case& c : cases) {
    v1::NotifyRecoveryEmailChangedRequest r = Moved("rn-6");
    c.spoil(r);
    absl::Status st = core_->NotifyRecoveryEmailChanged(service_, r).status();
    EXPECT_TRUE(absl::IsInvalidArgument(st)) << c.field << ": " << st;
    EXPECT_EQ(FieldOf(st), c.field) << st;
  }
  // Nothing queued, and the refused event id was not claimed.
  EXPECT_TRUE(notices_.TakeAll().empty());
  auto ok = core_->NotifyRecoveryEmailChanged(service_, Moved("rn-6"));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(ok->queued());
}

TEST_F(CoreTest, SecurityQuestionsSetQueueANotice) {
  v1::Session admin = SignIn("admin@example.com", kAdminPassword);
  v1::SetPasswordPolicyRequest policy;
  policy.mutable_policy()->set_min_length(12);
  policy.mutable_policy()->set_security_questions_enabled(true);
  ASSERT_TRUE(core_->SetPasswordPolicy(UserCaller(admin), policy).ok());
  v1::Session s1 = SignIn("ann@example.com", kAnnPassword);
  v1::Session s2 = SignIn("ann@example.com", kAnnPassword);
  notices_.TakeAll();
  v1::SetSecurityQuestionsRequest set;
  for (const char* q : {"First school?", "Street you grew up on?"}) {
    auto* question = set.add_questions();
    question->set_question(q);
    question->set_answer("an answer");
  }
  set.mutable_reauth()->set_current_password(kAnnPassword);
  auto done = core_->SetSecurityQuestions(UserCaller(s1), set);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(OnlyNotice().event, SecurityEvent::kSecurityQuestionsSet);
  EXPECT_TRUE(Alive(s1));
  EXPECT_FALSE(Alive(s2));
}

}  // namespace
}  // namespace mailgrid::identity
