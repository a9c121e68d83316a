#include "services/identity/notices.h"

#include <map>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "mailgrid/relay/v1/relay.grpc.pb.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"
#include "services/identity/testing_fake_directory.h"

namespace mailgrid::identity {
namespace {

tenant::v1::User Alice() {
  tenant::v1::User u;
  u.set_tenant_id("t-1");
  u.set_user_id("u-1");
  u.set_address("alice@acme.test");
  u.set_recovery_email("alice.home@example.org");
  return u;
}

TEST(ResetNoticeTest, CarriesTheTokenToTheRecoveryAddressFromTheUsersDomain) {
  std::string m = ResetNoticeMessage(Alice(), "tok-123", absl::Minutes(30), absl::UnixEpoch());
  EXPECT_TRUE(absl::StartsWith(m, "From: Password reset <no-reply@acme.test>\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\nTo: <alice.home@example.org>\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\nSubject: Password reset for alice@acme.test\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\nDate: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\nAuto-Submitted: auto-generated\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\n\r\n"));  // header/body separator
  EXPECT_TRUE(absl::StrContains(m, "Reset token: tok-123\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "for 30 minutes"));
  // Every line ends CRLF: no bare LF for relayd's smuggling check to refuse.
  for (size_t i = m.find('\n'); i != std::string::npos; i = m.find('\n', i + 1))
    EXPECT_EQ(m[i - 1], '\r') << "bare LF at " << i;
}

TEST(ResetNoticeTest, RelayNoticesRefusesAUserWithoutAUsableRecoveryAddress) {
  auto notices = RelayNotices::Create({"127.0.0.1:1"}, nullptr, rpc::ClientOptions());
  ASSERT_TRUE(notices.ok()) << notices.status();
  tenant::v1::User u = Alice();
  // No signing key: nothing can be sent at all.
  EXPECT_TRUE(absl::IsUnavailable((*notices)->SendPasswordReset(u, "t", absl::Minutes(30))));
  u.set_recovery_email("");
  EXPECT_TRUE(absl::IsFailedPrecondition((*notices)->SendPasswordReset(u, "t", absl::Minutes(30))));
  u.set_recovery_email("x@example.org\r\nBcc: victim@example.org");
  EXPECT_TRUE(absl::IsFailedPrecondition((*notices)->SendPasswordReset(u, "t", absl::Minutes(30))));
}

SecurityNotice Notice(SecurityEvent event) {
  SecurityNotice n;
  n.event = event;
  n.tenant_id = "t-1";
  n.user_id = "u-1";
  n.at = absl::FromUnixSeconds(1700000000);  // 2023-11-14 22:13:20 UTC
  n.client.set_ip("203.0.113.7");
  n.client.set_user_agent("Thunderbird/115");
  n.id = "ev1";
  return n;
}

void ExpectCrlfOnly(const std::string& m) {
  for (size_t i = m.find('\n'); i != std::string::npos; i = m.find('\n', i + 1))
    EXPECT_EQ(m[i - 1], '\r') << "bare LF at " << i;
  for (size_t i = m.find('\r'); i != std::string::npos; i = m.find('\r', i + 1))
    EXPECT_EQ(m[i + 1], '\n') << "bare CR at " << i;
}

TEST(SecurityNoticeTest, SaysWhatChangedWhenAndFromWhereFromTheUsersDomain) {
  std::string m =
      SecurityNoticeMessage(Alice(), Notice(SecurityEvent::kPasswordChanged), "alice@acme.test");
  EXPECT_TRUE(absl::StartsWith(m, "From: Security notice <no-reply@acme.test>\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\nTo: <alice@acme.test>\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\nSubject: Your password was changed\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\nMessage-ID: <notice."));
  EXPECT_TRUE(absl::StrContains(m, "@acme.test>\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\nAuto-Submitted: auto-generated\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\nMIME-Version: 1.0\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "\r\nContent-Type: text/plain; charset=utf-8\r\n"));
  EXPECT_TRUE(absl::StrContains(m, "Content-Transfer-Encoding: 7bit\r\n\r\n"));
  const std::string body = m.substr(m.find("\r\n\r\n") + 4);
  EXPECT_TRUE(absl::StrContains(body, "Your password was changed.\r\n\r\n"));
  EXPECT_TRUE(absl::StrContains(body, "  Account: alice@acme.test\r\n"));
  EXPECT_TRUE(absl::StrContains(body, "When:    2023-11-14 22:13:20 UTC\r\n"));
  EXPECT_TRUE(absl::StrContains(body, "From:    IP 203.0.113.7, Thunderbird/115\r\n"));
  EXPECT_TRUE(absl::StrContains(body, "By:      you, or someone signed in as you\r\n"));
  EXPECT_TRUE(absl::StrContains(body, "If it was not you:\r\nSomeone else may have"));
  ExpectCrlfOnly(m);
}

TEST(SecurityNoticeTest, EveryKindHasItsOwnSubjectAndAdvice) {
  std::set<std::string> subjects_and_names;
  for (SecurityEvent e :
       {SecurityEvent::kPasswordChanged, SecurityEvent::kRequiredPasswordChanged,
        SecurityEvent::kPasswordReset, SecurityEvent::kAdminPasswordReset,
        SecurityEvent::kTotpEnabled, SecurityEvent::kTotpDisabled,
        SecurityEvent::kRecoveryCodesRegenerated, SecurityEvent::kAppPasswordCreated,
        SecurityEvent::kAppPasswordRevoked, SecurityEvent::kSecurityQuestionsSet,
        SecurityEvent::kRecoveryEmailChanged}) {
    std::string m = SecurityNoticeMessage(Alice(), Notice(e), "alice@acme.test");
    EXPECT_TRUE(absl::StrContains(m, "\r\nSubject: ")) << SecurityEventName(e);
    EXPECT_TRUE(absl::StrContains(m, "If it was not you:\r\n")) << SecurityEventName(e);
    for (absl::string_view line : absl::StrSplit(m, "\r\n")) {  // RFC 5322 2.1.1
      if (!absl::StartsWith(line, "Subject:")) {
        EXPECT_LE(line.size(), 78u) << line;
      }
    }
    EXPECT_TRUE(absl::StrContains(m, "alice@acme.test")) << SecurityEventName(e);
    EXPECT_TRUE(subjects_and_names.insert(std::string(SecurityEventName(e))).second);
    ExpectCrlfOnly(m);
  }
  SecurityNotice admin = Notice(SecurityEvent::kAdminPasswordReset);
  admin.by_admin = true;
  EXPECT_TRUE(absl::StrContains(SecurityNoticeMessage(Alice(), admin, "alice@acme.test"),
                                "By:      an administrator of your organisation\r\n"));
}

TEST(SecurityNoticeTest, ClientTextCannotAddLinesAndUtf8NamesAre8Bit) {
  SecurityNotice n = Notice(SecurityEvent::kAppPasswordCreated);
  n.client.set_user_agent("evil\r\nBcc: victim@example.org\nX: y");
  n.detail = "手机 (phone)\r\n\r\nReset token: fake";
  std::string m = SecurityNoticeMessage(Alice(), n, "alice@acme.test");
  ExpectCrlfOnly(m);
  EXPECT_FALSE(absl::StrContains(m, "\r\nBcc:"));
  EXPECT_FALSE(absl::StrContains(m, "\r\nReset token"));
  EXPECT_TRUE(absl::StrContains(m, "created: \"手机 (phone)    Reset token: fake\""));
  EXPECT_TRUE(absl::StrContains(m, "Content-Transfer-Encoding: 8bit\r\n"));
  n.client.set_user_agent(std::string(500, 'x'));
  m = SecurityNoticeMessage(Alice(), n, "alice@acme.test");
  EXPECT_TRUE(absl::StrContains(m, std::string(120, 'x') + "..."));
  EXPECT_FALSE(absl::StrContains(m, std::string(121, 'x')));
}

TEST(SecurityNoticeTest, RecoveryAddressIsToldWhenTheAccountMayBeTakenOver) {
  using V = std::vector<std::string>;
  const V both = {"alice@acme.test", "alice.home@example.org"};
  for (SecurityEvent e : {SecurityEvent::kPasswordChanged, SecurityEvent::kRequiredPasswordChanged,
                          SecurityEvent::kPasswordReset, SecurityEvent::kAdminPasswordReset,
                          SecurityEvent::kTotpDisabled, SecurityEvent::kSecurityQuestionsSet})
    EXPECT_EQ(SecurityNoticeRecipients(Alice(), Notice(e)), both) << SecurityEventName(e);
  for (SecurityEvent e : {SecurityEvent::kTotpEnabled, SecurityEvent::kRecoveryCodesRegenerated,
                          SecurityEvent::kAppPasswordCreated, SecurityEvent::kAppPasswordRevoked})
    EXPECT_EQ(SecurityNoticeRecipients(Alice(), Notice(e)), V{"alice@acme.test"})
        << SecurityEventName(e);

  // A changed recovery address: the old one is told too (that is the point).
  SecurityNotice moved = Notice(SecurityEvent::kRecoveryEmailChanged);
  moved.old_recovery_email = "alice.old@example.net";
  EXPECT_EQ(SecurityNoticeRecipients(Alice(), moved),
            (V{"alice@acme.test", "alice.home@example.org", "alice.old@example.net"}));
  std::string to_old = SecurityNoticeMessage(Alice(), moved, "alice.old@example.net");
  EXPECT_TRUE(
      absl::StrContains(to_old, "this address was the recovery address of alice@acme.test"));

  // No recovery address, one equal to the mailbox, or an unsafe one: left out.
  tenant::v1::User u = Alice();
  u.set_recovery_email("");
  EXPECT_EQ(SecurityNoticeRecipients(u, Notice(SecurityEvent::kPasswordReset)),
            V{"alice@acme.test"});
  u.set_recovery_email("ALICE@acme.test");
  EXPECT_EQ(SecurityNoticeRecipients(u, Notice(SecurityEvent::kPasswordReset)),
            V{"alice@acme.test"});
  u.set_recovery_email("x@example.org\r\nBcc: victim@example.org");
  EXPECT_EQ(SecurityNoticeRecipients(u, Notice(SecurityEvent::kPasswordReset)),
            V{"alice@acme.test"});
}

// A relayd stand-in on loopback that records SubmitMessage and refuses the
// first `unavailable_first` calls with UNAVAILABLE (after "taking" them, as
// a relayd that committed and then lost the connection would).
class RecordingRelay final : public relay::v1::RelayService::Service {
 public:
  explicit RecordingRelay(int unavailable_first) : refuse_(unavailable_first) {}
  grpc::Status SubmitMessage(grpc::ServerContext*, const relay::v1::SubmitMessageRequest* r,
                             relay::v1::SubmitMessageResponse*) override {
    absl::MutexLock lock(&mu_);
    received_.push_back(*r);
    if (refuse_ > 0) {
      --refuse_;
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "try again");
    }
    return grpc::Status::OK;
  }
  std::vector<relay::v1::SubmitMessageRequest> Received() {
    absl::MutexLock lock(&mu_);
    return received_;
  }

 private:
  absl::Mutex mu_;
  int refuse_ ABSL_GUARDED_BY(mu_);
  std::vector<relay::v1::SubmitMessageRequest> received_ ABSL_GUARDED_BY(mu_);
};

double CounterValue(prometheus::Registry& registry, const std::string& kind,
                    const std::string& result) {
  for (const auto& family : registry.Collect()) {
    if (family.name != "mailgrid_identity_notices_total") continue;
    for (const auto& metric : family.metric) {
      std::map<std::string, std::string> labels;
      for (const auto& l : metric.label) labels[l.name] = l.value;
      if (labels["kind"] == kind && labels["result"] == result) return metric.counter.value;
    }
  }
  return 0;
}

TEST(RelayNoticesTest, ASecurityNoticeReachesRelaydOncePerRecipientWithItsKeyOnRetries) {
  RecordingRelay relay(/*unavailable_first=*/1);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&relay);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(port, 0);

  auto signer = auth::TokenSigner::Generate("svc");
  ASSERT_TRUE(signer.ok()) << signer.status();
  auto tokens = auth::ServiceTokenSource::FromPem(*(*signer)->PrivatePem(), "identityd");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  testing::FakeDirectory directory;
  directory.Add("t-1", "u-1", "alice@acme.test")
      .mutable_user()
      ->set_recovery_email("alice.home@example.org");
  prometheus::Registry registry;
  RelayNoticesOptions options;
  options.first_retry = absl::Milliseconds(10);
  options.registry = &registry;
  {
    auto notices = RelayNotices::Create({absl::StrCat("127.0.0.1:", port)}, tokens->get(),
                                        rpc::ClientOptions(), &directory, options);
    ASSERT_TRUE(notices.ok()) << notices.status();
    ASSERT_TRUE((*notices)->SendSecurityNotice(Notice(SecurityEvent::kPasswordReset)).ok());
    SecurityNotice gone = Notice(SecurityEvent::kTotpEnabled);
    gone.user_id = "u-deleted";
    ASSERT_TRUE((*notices)->SendSecurityNotice(gone).ok());
    while (CounterValue(registry, "password_reset", "sent") < 2 ||
           CounterValue(registry, "totp_enabled", "no_user") < 1)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }  // the worker has stopped: nothing more arrives
  server->Shutdown();

  // Mailbox, then recovery address; the first was refused once and sent again.
  std::vector<relay::v1::SubmitMessageRequest> got = relay.Received();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].idempotency_key(), got[1].idempotency_key());
  EXPECT_EQ(got[0].message(), got[1].message());
  EXPECT_NE(got[1].idempotency_key(), got[2].idempotency_key());
  EXPECT_EQ(got[1].recipients(0), "alice@acme.test");
  EXPECT_EQ(got[2].recipients(0), "alice.home@example.org");
  for (const auto& r : got) {
    EXPECT_EQ(r.recipients_size(), 1);
    EXPECT_EQ(r.envelope_from(), "");  // the null sender
    EXPECT_EQ(r.tenant_id(), "t-1");
    EXPECT_EQ(r.kind(), relay::v1::SUBMISSION_KIND_SECURITY_NOTICE);
    EXPECT_TRUE(absl::StartsWith(r.idempotency_key(), "notice:ev1:"));
    EXPECT_TRUE(absl::StrContains(r.message(), "Subject: Your password was reset\r\n"));
  }
  EXPECT_TRUE(absl::StrContains(got[2].message(), "To: <alice.home@example.org>\r\n"));
  EXPECT_EQ(CounterValue(registry, "password_reset", "failed"), 0);
}

TEST(RelayNoticesTest, GivesUpAfterItsAttemptsAndCountsTheFailure) {
  auto signer = auth::TokenSigner::Generate("svc");
  ASSERT_TRUE(signer.ok()) << signer.status();
  auto tokens = auth::ServiceTokenSource::FromPem(*(*signer)->PrivatePem(), "identityd");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  testing::FakeDirectory directory;
  directory.Add("t-1", "u-1", "alice@acme.test");
  prometheus::Registry registry;
  RelayNoticesOptions options;
  options.max_attempts = 2;
  options.first_retry = absl::Milliseconds(10);
  options.registry = &registry;
  // Nothing listens on port 1: relayd unreachable.
  auto notices = RelayNotices::Create({"127.0.0.1:1"}, tokens->get(), rpc::ClientOptions(),
                                      &directory, options);
  ASSERT_TRUE(notices.ok()) << notices.status();
  ASSERT_TRUE((*notices)->SendSecurityNotice(Notice(SecurityEvent::kTotpEnabled)).ok());
  while (CounterValue(registry, "totp_enabled", "failed") < 1)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(CounterValue(registry, "totp_enabled", "sent"), 0);
  // Without a directory a security notice cannot be addressed at all.
  auto undirected = RelayNotices::Create({"127.0.0.1:1"}, tokens->get(), rpc::ClientOptions());
  ASSERT_TRUE(undirected.ok());
  EXPECT_TRUE(
      absl::IsUnavailable((*undirected)->SendSecurityNotice(Notice(SecurityEvent::kTotpEnabled))));
}

}  // namespace
}  // namespace mailgrid::identity
