// The pure side of the tenant mail policies: keyword matching, audit rule
// conditions, monitoring rule coverage, what is read from a message.
#include "services/relay/mail_policy.h"

#include "gtest/gtest.h"

namespace mailgrid::relay {
namespace {

TEST(MailPolicyTest, KeywordsAreWordsCaseInsensitiveAndCjkSubstrings) {
  EXPECT_TRUE(ContainsKeyword("This is CONFIDENTIAL.", "confidential"));
  EXPECT_TRUE(ContainsKeyword("confidential", "Confidential"));
  EXPECT_FALSE(ContainsKeyword("unconfidentially", "confidential"));
  EXPECT_FALSE(ContainsKeyword("a classic", "class"));
  EXPECT_TRUE(ContainsKeyword("first class, then", "class"));
  EXPECT_TRUE(ContainsKeyword("本季度机密文件", "机密"));  // no word boundaries in CJK
  EXPECT_TRUE(ContainsKeyword("top-secret plan", "top-secret"));
  EXPECT_FALSE(ContainsKeyword("anything", ""));
}

TEST(MailPolicyTest, ExtractFeaturesReadsSubjectTextAndAttachments) {
  MessageFeatures f = ExtractFeatures(
      "From: a@b.test\r\nSubject: =?utf-8?b?5py65a+G?= report\r\nMIME-Version: 1.0\r\n"
      "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
      "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
      "Hello =C3=A9quipe, the numbers.\r\n--x\r\n"
      "Content-Type: application/octet-stream; name=data.xlsx\r\n\r\nAAAA\r\n--x--\r\n");
  EXPECT_EQ(f.subject, "机密 report");
  EXPECT_NE(f.text.find("Hello équipe"), std::string::npos) << f.text;
  EXPECT_TRUE(f.has_attachment);
  EXPECT_EQ(f.attachment_names, std::vector<std::string>{"data.xlsx"});
  const std::string raw = "Subject: hi\r\n\r\njust text\r\n";
  MessageFeatures plain = ExtractFeatures(raw);
  EXPECT_FALSE(plain.has_attachment);
  EXPECT_EQ(plain.size, raw.size());
}

tenant::v1::AuditPolicy Policy() {
  tenant::v1::AuditPolicy p;
  p.set_enabled(true);
  return p;
}

TEST(MailPolicyTest, AuditRuleConditionsAreAnded) {
  tenant::v1::AuditPolicy p = Policy();
  auto* r = p.add_rules();
  r->set_rule_id("r1");
  r->set_enabled(true);
  r->add_sender_addresses("Alice@Corp.test");
  r->set_has_external_recipient(true);
  r->set_larger_than_bytes(10);
  SenderFacts s;
  s.address = "alice@corp.test";
  s.has_external_recipient = true;
  MessageFeatures m;
  m.size = 11;
  EXPECT_EQ(MatchAudit(p, s, m).size(), 1u);
  m.size = 10;  // "larger than"
  EXPECT_TRUE(MatchAudit(p, s, m).empty());
  m.size = 11;
  s.has_external_recipient = false;
  EXPECT_TRUE(MatchAudit(p, s, m).empty());
  s.has_external_recipient = true;
  s.address = "bob@corp.test";
  EXPECT_TRUE(MatchAudit(p, s, m).empty());
  s.from = {"alice@corp.test"};  // sending as alice (From:)
  EXPECT_EQ(MatchAudit(p, s, m).size(), 1u);
  p.set_enabled(false);
  EXPECT_TRUE(MatchAudit(p, s, m).empty());
}

TEST(MailPolicyTest, EmptyRuleMatchesEverythingDisabledNothing) {
  tenant::v1::AuditPolicy p = Policy();
  p.add_rules()->set_enabled(false);
  EXPECT_TRUE(MatchAudit(p, {}, {}).empty());
  p.add_rules()->set_enabled(true);
  EXPECT_EQ(MatchAudit(p, {}, {}).size(), 1u);
}

TEST(MailPolicyTest, AuditDepartmentsKeywordsAttachments) {
  tenant::v1::AuditPolicy p = Policy();
  auto* r = p.add_rules();
  r->set_enabled(true);
  r->add_sender_department_ids("d-sales");
  r->add_keywords("merger");
  r->add_keywords("acquisition");
  r->set_has_attachment(true);
  EXPECT_TRUE(AuditNeedsDepartments(p));
  SenderFacts s;
  s.departments = {"d-east", "d-sales"};
  MessageFeatures m;
  m.text = "about the Acquisition";
  m.has_attachment = true;
  EXPECT_EQ(MatchAudit(p, s, m).size(), 1u);
  m.has_attachment = false;
  EXPECT_TRUE(MatchAudit(p, s, m).empty());
  m.has_attachment = true;
  m.text = "nothing";
  m.subject = "merger talk";
  EXPECT_EQ(MatchAudit(p, s, m).size(), 1u);
  s.departments = {"d-hr"};
  EXPECT_TRUE(MatchAudit(p, s, m).empty());
}

TEST(MailPolicyTest, MonitoringByUserDepartmentAndDirection) {
  tenant::v1::MonitoringPolicy p;
  auto* in = p.add_rules();
  in->set_enabled(true);
  in->add_monitored_user_ids("u1");
  in->set_direction(tenant::v1::MONITOR_DIRECTION_INCOMING);
  in->set_supervisor_address("boss@corp.test");
  auto* both = p.add_rules();
  both->set_enabled(true);
  both->add_monitored_department_ids("d-x");
  both->set_supervisor_address("boss@corp.test");  // UNSPECIFIED: both
  auto* off = p.add_rules();
  off->set_enabled(false);
  off->add_monitored_user_ids("u1");
  off->set_supervisor_address("boss@corp.test");
  EXPECT_FALSE(MonitoringNeedsDepartments(tenant::v1::MonitoringPolicy()));
  EXPECT_TRUE(MonitoringNeedsDepartments(p));
  EXPECT_EQ(MatchMonitoring(p, "u1", {}, Direction::kIncoming).size(), 1u);
  EXPECT_TRUE(MatchMonitoring(p, "u1", {}, Direction::kOutgoing).empty());
  EXPECT_EQ(MatchMonitoring(p, "u2", {"d-x"}, Direction::kOutgoing).size(), 1u);
  EXPECT_EQ(MatchMonitoring(p, "u1", {"d-x"}, Direction::kIncoming).size(), 2u);
  EXPECT_TRUE(MatchMonitoring(p, "", {"d-x"}, Direction::kIncoming).empty());
}

}  // namespace
}  // namespace mailgrid::relay
