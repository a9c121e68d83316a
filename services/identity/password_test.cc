#include "services/identity/password.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "services/identity/qr_png.h"

namespace mailgrid::identity {
namespace {

// Small parameters: the tests check behaviour, not cost.
HashParams Small() { return HashParams{1, 8 * 1024}; }

TEST(Phc, ParsesLibsodiumAndDovecotStrings) {
  auto phc =
      ParsePhc("$argon2id$v=19$m=65536,t=3,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG");
  ASSERT_TRUE(phc.ok()) << phc.status();
  EXPECT_EQ(phc->algorithm, "argon2id");
  EXPECT_EQ(phc->version, 19);
  EXPECT_EQ(phc->mem_kib, 65536u);
  EXPECT_EQ(phc->ops, 3u);
  EXPECT_EQ(phc->lanes, 1u);
  EXPECT_EQ(phc->salt_b64, "c29tZXNhbHQ");
  auto dovecot = ParsePhc("{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g");
  ASSERT_TRUE(dovecot.ok()) << dovecot.status();
  EXPECT_EQ(dovecot->mem_kib, 19456u);
  EXPECT_EQ(NormalisePhc("{ARGON2ID}$argon2id$x"), "$argon2id$x");
}

TEST(Phc, RefusesMalformed) {
  EXPECT_FALSE(ParsePhc("").ok());
  EXPECT_FALSE(ParsePhc("$2y$10$abcdefghijklmnopqrstuv").ok());  // bcrypt
  EXPECT_FALSE(ParsePhc("$argon2id$v=19$m=x,t=2,p=1$s$h").ok());
  EXPECT_FALSE(ParsePhc("$argon2id$v=19$m=1,t=2$s$h").ok());
  EXPECT_FALSE(ParsePhc("$argon2id$v=19$m=1,t=2,p=1$$h").ok());
}

TEST(PasswordHasher, HashesAndVerifies) {
  PasswordHasher hasher(Small(), 2);
  auto phc = hasher.Hash("correct horse battery staple");
  ASSERT_TRUE(phc.ok()) << phc.status();
  auto parsed = ParsePhc(*phc);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->algorithm, "argon2id");
  EXPECT_EQ(parsed->mem_kib, 8u * 1024);
  EXPECT_EQ(parsed->ops, 1u);
  EXPECT_TRUE(hasher.Verify(*phc, "correct horse battery staple"));
  EXPECT_FALSE(hasher.Verify(*phc, "correct horse battery stapler"));
  EXPECT_FALSE(hasher.Verify("not a hash", "x"));
  // Salts differ, so equal passwords hash differently.
  EXPECT_NE(*phc, *hasher.Hash("correct horse battery staple"));
  // A Dovecot-tagged copy verifies too (import).
  EXPECT_TRUE(hasher.Verify("{ARGON2ID}" + *phc, "correct horse battery staple"));
}

TEST(PasswordHasher, RehashWhenParametersRise) {
  PasswordHasher weak(Small(), 1);
  auto phc = weak.Hash("pw");
  ASSERT_TRUE(phc.ok());
  EXPECT_FALSE(weak.NeedsRehash(*phc));
  PasswordHasher stronger(HashParams{2, 8 * 1024}, 1);
  EXPECT_TRUE(stronger.NeedsRehash(*phc));
  PasswordHasher more_memory(HashParams{1, 16 * 1024}, 1);
  EXPECT_TRUE(more_memory.NeedsRehash(*phc));
  // A stronger stored hash is kept.
  auto strong = more_memory.Hash("pw");
  EXPECT_FALSE(weak.NeedsRehash(*strong));
  EXPECT_TRUE(weak.NeedsRehash("$argon2i$v=19$m=8192,t=1,p=1$c2FsdA$aGFzaA"));
}

TEST(PasswordHasher, SemaphoreBoundsConcurrentHashes) {
  PasswordHasher hasher(Small(), 2);
  std::atomic<bool> done{false};
  std::atomic<int> max_seen{0};
  std::thread watcher([&] {
    while (!done) {
      int n = hasher.in_flight();
      if (n > max_seen) max_seen = n;
    }
  });
  std::vector<std::thread> workers;
  for (int i = 0; i < 6; ++i)
    workers.emplace_back([&] {
      for (int k = 0; k < 3; ++k) ASSERT_TRUE(hasher.Hash("pw").ok());
    });
  for (auto& w : workers) w.join();
  done = true;
  watcher.join();
  EXPECT_LE(max_seen.load(), 2);
  EXPECT_GE(max_seen.load(), 1);
}

TEST(QrPng, IsAPng) {
  auto png = QrPng("otpauth://totp/mailgrid:a%40b.c?secret=JBSWY3DPEHPK3PXP");
  ASSERT_TRUE(png.ok()) << png.status();
  ASSERT_GT(png->size(), 100u);
  EXPECT_EQ(png->substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png->substr(12, 4), "IHDR");
  EXPECT_EQ(png->substr(png->size() - 8, 4), "IEND");
}

}  // namespace
}  // namespace mailgrid::identity
