// argon2::Hash against libsodium, byte for byte: random passwords, salts,
// passes, memory sizes and tag lengths, plus the exact parameters identityd
// uses; and PHC strings written by one verify with the other.
#include "services/identity/argon2id.h"

#include <sodium.h>

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "services/identity/password.h"

namespace mailgrid::identity {
namespace {

std::string RandomBytes(size_t n) {
  std::string s(n, '\0');
  randombytes_buf(s.data(), n);
  return s;
}

class Argon2idTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GE(sodium_init(), 0);
    if (!argon2::Available()) GTEST_SKIP() << "no AVX2 here: identityd uses libsodium alone";
  }
};

// What libsodium's crypto_pwhash computes (salt of crypto_pwhash_SALTBYTES).
std::vector<uint8_t> Sodium(const std::string& pw, const std::string& salt, uint32_t t,
                            uint32_t m_kib, size_t out_len) {
  std::vector<uint8_t> out(out_len);
  EXPECT_EQ(crypto_pwhash(out.data(), out_len, pw.data(), pw.size(),
                          reinterpret_cast<const unsigned char*>(salt.data()), t,
                          static_cast<size_t>(m_kib) * 1024, crypto_pwhash_ALG_ARGON2ID13),
            0);
  return out;
}

TEST_F(Argon2idTest, SameTagsAsLibsodiumOverRandomInputs) {
  argon2::Scratch scratch;
  for (int i = 0; i < 60; ++i) {
    std::string pw = RandomBytes(randombytes_uniform(40));  // includes the empty password
    std::string salt = RandomBytes(crypto_pwhash_SALTBYTES);
    uint32_t t = 1 + randombytes_uniform(3);
    uint32_t m = 8 + randombytes_uniform(300);  // not always a multiple of 4
    size_t out_len = 16 + randombytes_uniform(49);
    std::vector<uint8_t> ours(out_len);
    ASSERT_TRUE(argon2::Hash(pw, salt, t, m, ours.data(), out_len, scratch));
    EXPECT_EQ(ours, Sodium(pw, salt, t, m, out_len))
        << "t=" << t << " m=" << m << " len=" << out_len << " pw bytes=" << pw.size();
  }
}

TEST_F(Argon2idTest, SameTagAsLibsodiumWithIdentitydParameters) {
  argon2::Scratch scratch;
  HashParams p;
  for (int i = 0; i < 2; ++i) {  // twice: the second hash reuses the scratch memory
    std::string pw = "correct horse battery staple " + std::to_string(i);
    std::string salt = RandomBytes(crypto_pwhash_SALTBYTES);
    std::vector<uint8_t> ours(32);
    ASSERT_TRUE(argon2::Hash(pw, salt, static_cast<uint32_t>(p.ops_limit),
                             static_cast<uint32_t>(p.mem_kib), ours.data(), ours.size(), scratch));
    EXPECT_EQ(ours, Sodium(pw, salt, static_cast<uint32_t>(p.ops_limit),
                           static_cast<uint32_t>(p.mem_kib), 32));
  }
}

TEST_F(Argon2idTest, RefusesWhatItDoesNotCover) {
  argon2::Scratch scratch;
  uint8_t out[64];
  EXPECT_FALSE(argon2::Hash("pw", "short", 2, 64, out, 32, scratch));         // salt < 8
  EXPECT_FALSE(argon2::Hash("pw", "saltsaltsalt", 0, 64, out, 32, scratch));  // t = 0
  EXPECT_FALSE(argon2::Hash("pw", "saltsaltsalt", 1, 7, out, 32, scratch));   // m < 8
  EXPECT_FALSE(argon2::Hash("pw", "saltsaltsalt", 1, 64, out, 15, scratch));  // tag < 16
  EXPECT_FALSE(argon2::Hash("pw", "saltsaltsalt", 1, 64, out, 65, scratch));  // tag > 64
}

// Through PasswordHasher: its strings verify with libsodium, libsodium's
// (and other salt and tag lengths, as Dovecot or an import may carry)
// verify with it, and a wrong password fails both ways.
TEST_F(Argon2idTest, PhcStringsInterchangeWithLibsodium) {
  HashParams p;
  p.mem_kib = 256;  // small: the parameters travel in the string
  PasswordHasher hasher(p, 2);
  auto ours = hasher.Hash("s3cret pass");
  ASSERT_TRUE(ours.ok());
  EXPECT_EQ(crypto_pwhash_str_verify(ours->c_str(), "s3cret pass", 11), 0);
  EXPECT_NE(crypto_pwhash_str_verify(ours->c_str(), "s3cret pasS", 11), 0);

  char theirs[crypto_pwhash_STRBYTES];
  ASSERT_EQ(
      crypto_pwhash_str_alg(theirs, "other pw", 8, 3, 128 * 1024, crypto_pwhash_ALG_ARGON2ID13), 0);
  EXPECT_TRUE(hasher.Verify(theirs, "other pw"));
  EXPECT_TRUE(hasher.Verify(std::string("{ARGON2ID}") + theirs, "other pw"));
  EXPECT_FALSE(hasher.Verify(theirs, "other pW"));

  // Salts of 8..24 bytes, tags of 16..64 (strings under crypto_pwhash_STRBYTES,
  // libsodium's limit, kept by Verify): libsodium verifies these
  // strings; build them from raw tags of ours and check both agree.
  argon2::Scratch scratch;
  for (auto [salt_len, tag_len] : {std::pair<size_t, size_t>{8, 64}, {24, 48}, {16, 16}}) {
    std::string salt = RandomBytes(salt_len);
    std::vector<uint8_t> tag(tag_len);
    ASSERT_TRUE(argon2::Hash("pw", salt, 2, 64, tag.data(), tag.size(), scratch));
    char s64[128], t64[128];
    sodium_bin2base64(s64, sizeof s64, reinterpret_cast<const unsigned char*>(salt.data()),
                      salt.size(), sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    sodium_bin2base64(t64, sizeof t64, tag.data(), tag.size(),
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    std::string phc = std::string("$argon2id$v=19$m=64,t=2,p=1$") + s64 + "$" + t64;
    EXPECT_EQ(crypto_pwhash_str_verify(phc.c_str(), "pw", 2), 0) << phc;
    EXPECT_TRUE(hasher.Verify(phc, "pw")) << phc;
    EXPECT_FALSE(hasher.Verify(phc, "px")) << phc;
  }
}

// The working memory is kept for the next hash (one per running hash at
// most) and unmapped once no hash ran for keep_scratch.
TEST_F(Argon2idTest, KeptMemoryIsReusedThenUnmappedWhenIdle) {
  HashParams p;
  p.mem_kib = 256;
  {
    PasswordHasher hasher(p, 2, absl::Hours(1));
    auto phc = hasher.Hash("pw");
    ASSERT_TRUE(phc.ok());
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(hasher.Verify(*phc, "pw"));
    EXPECT_EQ(hasher.kept_scratch_bytes(), 256u * 1024);  // one area, reused 6 times
  }
  PasswordHasher hasher(p, 2, absl::Milliseconds(100));
  auto phc = hasher.Hash("pw");
  ASSERT_TRUE(phc.ok());
  EXPECT_TRUE(hasher.Verify(*phc, "pw"));
  for (int i = 0; i < 1200 && hasher.kept_scratch_bytes() > 0; ++i)
    absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(hasher.kept_scratch_bytes(), 0u);
  EXPECT_TRUE(hasher.Verify(*phc, "pw"));  // maps afresh
}

}  // namespace
}  // namespace mailgrid::identity
