// InboxRules over a fake backend and submitter: how a script's actions
// become DeliverBatch targets, refusals, redirects and vacation replies.
#include "services/relay/inbox_rules.h"

#include <map>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mailgrid::relay {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class FakeBackend : public Backend {
 public:
  absl::StatusOr<tenant::v1::ResolveResponse> Resolve(const tenant::v1::ResolveRequest&) override {
    return absl::UnimplementedError("not in this test");
  }
  absl::StatusOr<bool> CanSendAs(const std::string&, const std::string&) override { return true; }
  absl::StatusOr<identity::v1::CheckSaslResponse> CheckSasl(
      const identity::v1::CheckSaslRequest&) override {
    return absl::UnimplementedError("not in this test");
  }
  absl::Status CountSubmission(const std::string&, const std::string&) override {
    return absl::OkStatus();
  }
  absl::StatusOr<mailstore::v1::DeliverBatchResponse> Deliver(
      uint32_t, const mailstore::v1::DeliverBatchRequest& request) override {
    requests.push_back(request);
    mailstore::v1::DeliverBatchResponse out;
    for (const auto& t : request.recipients()) {
      auto* r = out.add_results();
      r->set_mailbox_id(t.mailbox_id());
      bool dup = !delivered.insert(request.delivery_id() + "|" + t.mailbox_id()).second;
      r->set_status(dup ? mailstore::v1::DELIVERY_STATUS_DUPLICATE
                        : mailstore::v1::DELIVERY_STATUS_DELIVERED);
    }
    return out;
  }
  absl::StatusOr<tenant::v1::SieveScript> GetSieveScript(const std::string& user_id) override {
    ++fetches;
    auto it = scripts.find(user_id);
    if (it == scripts.end()) return absl::NotFoundError("no script");
    return it->second;
  }
  absl::StatusOr<bool> SetOnce(const std::string& key, absl::Duration) override {
    if (!memory_up) return absl::UnavailableError("redis down");
    return memory.insert(key).second;
  }
  void Forget(const std::string& key) override { memory.erase(key); }

  void SetScript(const std::string& user_id, const std::string& script, int64_t version) {
    tenant::v1::SieveScript s;
    s.set_user_id(user_id);
    s.set_script(script);
    s.set_version(version);
    scripts[user_id] = s;
  }

  std::map<std::string, tenant::v1::SieveScript> scripts;
  std::vector<mailstore::v1::DeliverBatchRequest> requests;
  std::set<std::string> delivered;
  std::set<std::string> memory;
  bool memory_up = true;
  int fetches = 0;
};

class FakeSubmitter : public OutboundSubmitter {
 public:
  struct Sent {
    std::string from;
    std::vector<std::string> rcpts;
    std::string message;
  };
  absl::Status Submit(std::string mail_from, std::vector<std::string> rcpts,
                      std::string message) override {
    if (!up) return absl::UnavailableError("queue down");
    if (permanent_error) return absl::InvalidArgumentError("no such local recipient");
    sent.push_back({mail_from, rcpts, message});
    return absl::OkStatus();
  }
  std::vector<Sent> sent;
  bool up = true;
  bool permanent_error = false;
};

constexpr char kMessage[] =
    "Return-Path: <alice@sender.example>\r\n"
    "Received: from mta.sender.example by mail.test\r\n"
    "From: Alice <alice@sender.example>\r\n"
    "To: bob@acme.test, carol@acme.test\r\n"
    "Subject: Quarterly report\r\n"
    "Message-ID: <q1@sender.example>\r\n"
    "\r\n"
    "numbers\r\n";

class InboxRulesTest : public ::testing::Test {
 protected:
  InboxRulesTest() : rules_(&backend_, &submitter_, Options()) {
    message_.envelope_from = "alice@sender.example";
    message_.recipients = {{"mbx-bob", "u-bob", "bob@acme.test", "bob+reports@acme.test", 1},
                           {"mbx-carol", "u-carol", "carol@acme.test", "carol@acme.test", 0}};
  }
  static InboxRulesOptions Options() {
    InboxRulesOptions o;
    o.hostname = "mail.test";
    return o;
  }
  mailstore::v1::DeliverBatchRequest Request(std::vector<std::string> mailboxes) {
    mailstore::v1::DeliverBatchRequest r;
    r.set_delivery_id("d1");
    r.set_message(kMessage);
    for (const std::string& m : mailboxes) r.add_recipients()->set_mailbox_id(m);
    return r;
  }
  void OnlyBob() { message_.recipients.resize(1); }

  FakeBackend backend_;
  FakeSubmitter submitter_;
  InboxRules rules_;
  InboxMessage message_;
};

TEST_F(InboxRulesTest, WithoutScriptsTheRequestPassesThrough) {
  message_.recipients[0].sieve_version = 0;
  auto got = rules_.Deliver(0, Request({"mbx-bob", "mbx-carol"}), message_);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(backend_.fetches, 0);  // version 0: no lookup at all
  ASSERT_EQ(backend_.requests.size(), 1u);
  EXPECT_EQ(backend_.requests[0].recipients_size(), 2);
  EXPECT_FALSE(backend_.requests[0].recipients(0).has_folder());
}

TEST_F(InboxRulesTest, FileintoAndFlagsBecomeTheTarget) {
  backend_.SetScript("u-bob",
                     "require [\"fileinto\", \"imap4flags\", \"envelope\", \"subaddress\"];\n"
                     "if envelope :detail \"to\" \"reports\" {\n"
                     "  fileinto :flags [\"\\\\Seen\", \"$Report\", \"bad(flag\"] \"Reports\";\n"
                     "}\n",
                     1);
  auto got = rules_.Deliver(0, Request({"mbx-bob", "mbx-carol"}), message_);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->results_size(), 2);
  EXPECT_EQ(got->results(0).status(), mailstore::v1::DELIVERY_STATUS_DELIVERED);
  ASSERT_EQ(backend_.requests.size(), 1u);
  const auto& req = backend_.requests[0];
  EXPECT_EQ(req.delivery_id(), "d1");
  EXPECT_EQ(req.message(), kMessage);
  ASSERT_EQ(req.recipients_size(), 2);
  EXPECT_EQ(req.recipients(0).folder().name(), "Reports");
  EXPECT_TRUE(req.recipients(0).create_folder());
  EXPECT_THAT(req.recipients(0).flags(), ElementsAre("\\Seen", "$Report"));
  EXPECT_FALSE(req.recipients(1).has_folder());  // carol has no script
}

TEST_F(InboxRulesTest, ScriptsAreCachedByVersion) {
  backend_.SetScript("u-bob", "discard;", 1);
  ASSERT_TRUE(rules_.Deliver(0, Request({"mbx-bob"}), message_).ok());
  ASSERT_TRUE(rules_.Deliver(0, Request({"mbx-bob"}), message_).ok());
  EXPECT_EQ(backend_.fetches, 1);
  backend_.SetScript("u-bob", "keep;", 2);
  message_.recipients[0].sieve_version = 2;  // Resolve reports the new version
  ASSERT_TRUE(rules_.Deliver(0, Request({"mbx-bob"}), message_).ok());
  EXPECT_EQ(backend_.fetches, 2);
}

TEST_F(InboxRulesTest, DiscardStoresNothingButReportsDone) {
  backend_.SetScript("u-bob", "discard;", 1);
  auto got = rules_.Deliver(0, Request({"mbx-bob", "mbx-carol"}), message_);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->results_size(), 2);
  EXPECT_EQ(got->results(0).mailbox_id(), "mbx-bob");
  EXPECT_EQ(got->results(0).status(), mailstore::v1::DELIVERY_STATUS_DELIVERED);
  ASSERT_EQ(backend_.requests.size(), 1u);
  ASSERT_EQ(backend_.requests[0].recipients_size(), 1);
  EXPECT_EQ(backend_.requests[0].recipients(0).mailbox_id(), "mbx-carol");

  OnlyBob();
  backend_.requests.clear();
  got = rules_.Deliver(0, Request({"mbx-bob"}), message_);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(backend_.requests.empty());
}

TEST_F(InboxRulesTest, SecondCopyOfOneMailboxGetsItsOwnDeliveryId) {
  backend_.SetScript("u-bob", "require [\"fileinto\", \"copy\"]; fileinto :copy \"Archive\";", 1);
  auto got = rules_.Deliver(0, Request({"mbx-bob"}), message_);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(backend_.requests.size(), 2u);
  EXPECT_EQ(backend_.requests[0].delivery_id(), "d1");
  EXPECT_EQ(backend_.requests[0].recipients(0).folder().name(), "Archive");
  EXPECT_EQ(backend_.requests[1].delivery_id(), "d1/sieve1");
  EXPECT_FALSE(backend_.requests[1].recipients(0).has_folder());  // the implicit keep
  EXPECT_EQ(backend_.requests[1].message(), kMessage);
}

TEST_F(InboxRulesTest, RejectIs550OnlyForTheOnlyRecipient) {
  backend_.SetScript("u-bob", "require \"reject\"; reject \"Not\r\n\twanted \xC3\xA9\";", 1);
  auto both = rules_.Deliver(0, Request({"mbx-bob", "mbx-carol"}), message_);
  ASSERT_TRUE(both.ok()) << both.status();
  ASSERT_EQ(backend_.requests.size(), 1u);
  EXPECT_THAT(backend_.requests[0].recipients(0).prepend_headers(),
              HasSubstr("X-Mailgrid-Sieve: reject not applied"));

  OnlyBob();
  backend_.requests.clear();
  auto alone = rules_.Deliver(0, Request({"mbx-bob"}), message_);
  ASSERT_FALSE(alone.ok());
  EXPECT_EQ(alone.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(alone.status().message(), "Not wanted ??");  // one printable ASCII line
  EXPECT_TRUE(backend_.requests.empty());
}

TEST_F(InboxRulesTest, RedirectIsSentOnceWithoutReturnPath) {
  backend_.SetScript("u-bob", "redirect \"boss@elsewhere.example\";", 1);
  OnlyBob();
  auto got = rules_.Deliver(0, Request({"mbx-bob"}), message_);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(backend_.requests.empty());  // no local copy
  ASSERT_EQ(submitter_.sent.size(), 1u);
  EXPECT_EQ(submitter_.sent[0].from, "alice@sender.example");
  EXPECT_THAT(submitter_.sent[0].rcpts, ElementsAre("boss@elsewhere.example"));
  EXPECT_EQ(submitter_.sent[0].message.rfind("Received:", 0), 0u);
  // The client retries the same message: not sent again.
  ASSERT_TRUE(rules_.Deliver(0, Request({"mbx-bob"}), message_).ok());
  EXPECT_EQ(submitter_.sent.size(), 1u);
}

TEST_F(InboxRulesTest, RedirectFailureIsTemporaryAndRetried) {
  backend_.SetScript("u-bob", "redirect \"boss@elsewhere.example\";", 1);
  OnlyBob();
  submitter_.up = false;
  auto got = rules_.Deliver(0, Request({"mbx-bob"}), message_);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  submitter_.up = true;
  ASSERT_TRUE(rules_.Deliver(0, Request({"mbx-bob"}), message_).ok());
  EXPECT_EQ(submitter_.sent.size(), 1u);
}

TEST_F(InboxRulesTest, RedirectThatCanNeverWorkIsKept) {
  backend_.SetScript("u-bob", "redirect \"nobody@acme.test\";", 1);
  OnlyBob();
  submitter_.permanent_error = true;
  auto got = rules_.Deliver(0, Request({"mbx-bob"}), message_);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(backend_.requests.size(), 1u);
  EXPECT_EQ(backend_.requests[0].delivery_id(), "d1/sieve-fallback");
  EXPECT_THAT(backend_.requests[0].recipients(0).prepend_headers(),
              HasSubstr("redirect to nobody@acme.test failed"));
  // The retry of the same message does not store it twice.
  ASSERT_TRUE(rules_.Deliver(0, Request({"mbx-bob"}), message_).ok());
  EXPECT_EQ(backend_.delivered.size(), 1u);
}

TEST_F(InboxRulesTest, WithoutSubmitterRedirectBecomesKeep) {
  InboxRules no_out(&backend_, nullptr, Options());
  backend_.SetScript("u-bob", "redirect \"boss@elsewhere.example\";", 1);
  OnlyBob();
  ASSERT_TRUE(no_out.Deliver(0, Request({"mbx-bob"}), message_).ok());
  ASSERT_EQ(backend_.requests.size(), 1u);
  EXPECT_EQ(backend_.requests[0].recipients(0).mailbox_id(), "mbx-bob");
}

TEST_F(InboxRulesTest, VacationOncePerSenderAndNeverWithoutMemory) {
  backend_.SetScript("u-bob",
                     "require \"vacation\"; vacation :days 3 :subject \"Away\" \"Back soon\";", 1);
  OnlyBob();
  ASSERT_TRUE(rules_.Deliver(0, Request({"mbx-bob"}), message_).ok());
  ASSERT_EQ(submitter_.sent.size(), 1u);
  EXPECT_EQ(submitter_.sent[0].from, "");  // null sender (RFC 3834)
  EXPECT_THAT(submitter_.sent[0].rcpts, ElementsAre("alice@sender.example"));
  EXPECT_THAT(submitter_.sent[0].message, HasSubstr("Subject: Away\r\n"));
  EXPECT_THAT(submitter_.sent[0].message, HasSubstr("In-Reply-To: <q1@sender.example>"));
  EXPECT_THAT(submitter_.sent[0].message, HasSubstr("From: bob@acme.test\r\n"));
  ASSERT_EQ(backend_.requests.size(), 1u);  // and the message is kept

  // Another message from the same sender: no second reply.
  mailstore::v1::DeliverBatchRequest second = Request({"mbx-bob"});
  second.set_delivery_id("d2");
  ASSERT_TRUE(rules_.Deliver(0, second, message_).ok());
  EXPECT_EQ(submitter_.sent.size(), 1u);

  // Without Redis no reply at all (it would answer every message).
  backend_.memory.clear();
  backend_.memory_up = false;
  second.set_delivery_id("d3");
  ASSERT_TRUE(rules_.Deliver(0, second, message_).ok());
  EXPECT_EQ(submitter_.sent.size(), 1u);
}

TEST_F(InboxRulesTest, BrokenStoredScriptOrLookupFailureKeeps) {
  backend_.SetScript("u-bob", "this is not sieve", 1);
  OnlyBob();
  ASSERT_TRUE(rules_.Deliver(0, Request({"mbx-bob"}), message_).ok());
  ASSERT_EQ(backend_.requests.size(), 1u);
  EXPECT_FALSE(backend_.requests[0].recipients(0).has_folder());
}

TEST(StorableFlagsTest, KeepsWhatMailstoredAccepts) {
  EXPECT_THAT(StorableFlags({"\\seen", "\\Recent", "\\Nonsense", "$Label", "a b", "x]", "",
                             std::string(65, 'k'), "$label", "Work"}),
              ElementsAre("\\Seen", "$Label", "Work"));
}

}  // namespace
}  // namespace mailgrid::relay
