#include "libs/outbound/signer.h"

#include "gtest/gtest.h"
#include "libs/mailauth/test_keys.h"
#include "libs/outbound/test_util.h"

namespace mailgrid::outbound {
namespace {

class OneKey final : public SigningKeySource {
 public:
  std::optional<SigningKey> key;
  absl::StatusOr<std::optional<SigningKey>> KeyFor(std::string_view domain) override {
    if (key && domain == key->domain) return key;
    return std::optional<SigningKey>();
  }
};

TEST(Signer, SignsWithTheDomainKeyAndVerifies) {
  for (bool ed25519 : {true, false}) {
    auto test_key = mailauth::testing::MakeKey(ed25519);
    auto pk = mailauth::DkimPrivateKey::FromPem(test_key.private_pem);
    ASSERT_TRUE(pk.ok()) << pk.status();
    OneKey keys;
    keys.key = SigningKey{"example.org", "mg1", *pk};
    auto signed_message = SignIfHosted(testing::kMessage, "example.org", keys, absl::Now());
    ASSERT_TRUE(signed_message.ok()) << signed_message.status();
    EXPECT_EQ(signed_message->rfind("DKIM-Signature:", 0), 0u);
    mailauth::MemoryResolver dns;
    dns.AddTxt("mg1._domainkey.example.org", test_key.txt);
    auto verdicts = mailauth::DkimVerifyAll(*signed_message, dns);
    ASSERT_EQ(verdicts.size(), 1u);
    EXPECT_EQ(verdicts[0].result, mailauth::DkimResult::kPass) << verdicts[0].reason;
    // Not hosted: unchanged.
    auto unsigned_message = SignIfHosted(testing::kMessage, "other.test", keys, absl::Now());
    ASSERT_TRUE(unsigned_message.ok());
    EXPECT_EQ(*unsigned_message, testing::kMessage);
  }
}

// relayd signs with the domain's Ed25519 and RSA keys in one call: the
// fields are those of signing key by key, and both verify.
TEST(Signer, SignatureFieldsOfTwoKeysAreTheOneByOneFieldsAndBothVerify) {
  auto ed = mailauth::testing::MakeKey(true);
  auto rsa = mailauth::testing::MakeKey(false);
  auto ed_pk = mailauth::DkimPrivateKey::FromPem(ed.private_pem);
  auto rsa_pk = mailauth::DkimPrivateKey::FromPem(rsa.private_pem);
  ASSERT_TRUE(ed_pk.ok() && rsa_pk.ok());
  std::vector<SigningKey> keys = {{"example.org", "ed", *ed_pk}, {"example.org", "rsa", *rsa_pk}};
  const absl::Time now = absl::FromUnixSeconds(1800000000);
  auto fields = SignatureFields(testing::kMessage, keys, now);
  ASSERT_TRUE(fields.ok()) << fields.status();
  auto first = SignatureField(testing::kMessage, keys[0], now);
  auto second = SignatureField(testing::kMessage, keys[1], now);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(*fields, *first + *second);
  mailauth::MemoryResolver dns;
  dns.AddTxt("ed._domainkey.example.org", ed.txt);
  dns.AddTxt("rsa._domainkey.example.org", rsa.txt);
  auto verdicts = mailauth::DkimVerifyAll(*fields + testing::kMessage, dns);
  ASSERT_EQ(verdicts.size(), 2u);
  for (const auto& v : verdicts) EXPECT_EQ(v.result, mailauth::DkimResult::kPass) << v.reason;
  auto none = SignatureFields(testing::kMessage, {}, now);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, "");
}

}  // namespace
}  // namespace mailgrid::outbound
