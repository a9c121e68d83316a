#include "libs/kv/checksum.h"

#include <random>
#include <string>

#include "gtest/gtest.h"

namespace mailgrid::kv {
namespace {

TEST(Crc32c, KnownAnswer) {
  // RFC 3720 appendix B.4 check value of CRC-32C over "123456789".
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32cExtendPortable(0, "123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(Crc32c, FastPathAgreesWithTableAtEveryLengthAndAlignment) {
  std::mt19937 random(7);
  std::string bytes(4200, '\0');
  for (char& c : bytes) c = static_cast<char>(random());
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t length : {0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4096}) {
      std::string_view piece(bytes.data() + offset, length);
      for (uint32_t seed : {0u, 0xDEADBEEFu}) {
        ASSERT_EQ(Crc32cExtend(seed, piece), Crc32cExtendPortable(seed, piece))
            << "offset " << offset << " length " << length << " seed " << seed;
      }
    }
  }
}

TEST(Crc32c, ExtendIsConcatenation) {
  const std::string a = "mail is stored ", b = "on three replicas";
  EXPECT_EQ(Crc32cExtend(Crc32c(a), b), Crc32c(a + b));
}

}  // namespace
}  // namespace mailgrid::kv
