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

}  // namespace
}  // namespace mailgrid::outbound
