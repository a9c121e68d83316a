#include "services/access/compress.h"

#include <string>

#include "gtest/gtest.h"

namespace mailgrid::access {
namespace {

TEST(DeflateStream, RoundTripsPieceByPiece) {
  DeflateStream server, client;
  std::string sent;
  for (int i = 0; i < 50; ++i) {
    std::string line = "* " + std::to_string(i) + " FETCH (FLAGS (\\Seen))\r\n";
    sent += line;
    // Each flushed chunk decodes on its own, as soon as it arrives.
    auto got = client.Inflate(server.Deflate(line), 1 << 20);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, line);
  }
  // A big chunk (more than zlib's internal buffers) also round-trips.
  std::string big(300000, 'x');
  for (size_t i = 0; i < big.size(); i += 7) big[i] = static_cast<char>('a' + i % 26);
  auto got = client.Inflate(server.Deflate(big), 1 << 20);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, big);
}

TEST(DeflateStream, BoundsInflation) {
  DeflateStream server, client;
  std::string bomb = server.Deflate(std::string(4 << 20, '\0'));  // compresses ~1000:1
  ASSERT_LT(bomb.size(), 64u * 1024);
  auto got = client.Inflate(bomb, 1 << 20);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(DeflateStream, RefusesGarbage) {
  DeflateStream s;
  auto got = s.Inflate(std::string("\xff\xff\xff\xff garbage", 12), 1 << 20);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mailgrid::access
