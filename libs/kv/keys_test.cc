#include "libs/kv/keys.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "gtest/gtest.h"

namespace mailgrid::kv {
namespace {

using Component = std::variant<std::string, uint64_t, int64_t>;
using Tuple = std::vector<Component>;

std::string Encode(const Tuple& t) {
  KeyBuilder b;
  for (const Component& c : t) {
    if (const auto* s = std::get_if<std::string>(&c)) b.Str(*s);
    if (const auto* u = std::get_if<uint64_t>(&c)) b.U64(*u);
    if (const auto* i = std::get_if<int64_t>(&c)) b.I64(*i);
  }
  return std::move(b).Build();
}

// Random tuples with a fixed schema per run (string, u64, i64 in a random
// order), drawing from a small alphabet rich in 0x00 and 0xFF so that escapes
// and prefixes collide often.
class TupleGen {
 public:
  explicit TupleGen(uint32_t seed) : rng_(seed) {}

  std::string RandomString() {
    static constexpr char kAlphabet[] = {'\0', '\x01', '\xFF', 'a', 'b', '\xFE'};
    std::string s(std::uniform_int_distribution<int>(0, 4)(rng_), '\0');
    for (char& c : s) c = kAlphabet[std::uniform_int_distribution<int>(0, 5)(rng_)];
    return s;
  }
  uint64_t RandomU64() {
    static constexpr uint64_t kEdges[] = {0, 1, 255, 256, UINT64_MAX - 1, UINT64_MAX};
    if (std::uniform_int_distribution<int>(0, 1)(rng_) == 0) {
      return kEdges[std::uniform_int_distribution<int>(0, 5)(rng_)];
    }
    return rng_();
  }
  int64_t RandomI64() {
    static constexpr int64_t kEdges[] = {INT64_MIN, -1, 0, 1, INT64_MAX};
    if (std::uniform_int_distribution<int>(0, 1)(rng_) == 0) {
      return kEdges[std::uniform_int_distribution<int>(0, 4)(rng_)];
    }
    return static_cast<int64_t>(rng_());
  }
  // schema: 0 = string, 1 = u64, 2 = i64
  Tuple Random(const std::vector<int>& schema) {
    Tuple t;
    for (int kind : schema) {
      if (kind == 0) t.emplace_back(RandomString());
      if (kind == 1) t.emplace_back(RandomU64());
      if (kind == 2) t.emplace_back(RandomI64());
    }
    return t;
  }
  std::vector<int> RandomSchema() {
    std::vector<int> schema(std::uniform_int_distribution<int>(1, 4)(rng_));
    for (int& k : schema) k = std::uniform_int_distribution<int>(0, 2)(rng_);
    return schema;
  }

 private:
  std::mt19937_64 rng_;
};

TEST(KeysTest, ByteOrderEqualsTupleOrderForRandomTuples) {
  for (uint32_t seed = 1; seed <= 200; ++seed) {
    TupleGen gen(seed);
    std::vector<int> schema = gen.RandomSchema();
    std::vector<Tuple> tuples;
    for (int i = 0; i < 60; ++i) tuples.push_back(gen.Random(schema));
    for (const Tuple& a : tuples) {
      for (const Tuple& b : tuples) {
        // std::variant compares by index then value; one schema => same index,
        // and std::string compares like unsigned bytes, as keys do.
        ASSERT_EQ(a < b, Encode(a) < Encode(b)) << "seed " << seed;
        ASSERT_EQ(a == b, Encode(a) == Encode(b)) << "seed " << seed;
      }
    }
  }
}

TEST(KeysTest, TupleIsBelowItsExtensions) {
  // A key is a prefix of (and sorts before) the keys of its longer tuples, so
  // PrefixRange(key) holds exactly its extensions.
  TupleGen gen(7);
  for (int i = 0; i < 500; ++i) {
    Tuple t = gen.Random({0, 1});
    std::string parent = Encode(t);
    Tuple child = t;
    child.emplace_back(gen.RandomString());
    std::string child_key = Encode(child);
    KeyRange r = PrefixRange(parent);
    EXPECT_TRUE(InRange(child_key, r.start, r.end));
    Tuple sibling = gen.Random({0, 1});
    if (sibling != t) {
      sibling.emplace_back(gen.RandomString());
      EXPECT_FALSE(InRange(Encode(sibling), r.start, r.end));
    }
  }
}

TEST(KeysTest, RoundTrip) {
  TupleGen gen(11);
  for (int i = 0; i < 1000; ++i) {
    Tuple t = gen.Random({0, 1, 2, 0});
    std::string key = Encode(t);
    KeyReader r(key);
    auto s0 = r.Str();
    auto u = r.U64();
    auto i64 = r.I64();
    auto s1 = r.Str();
    ASSERT_TRUE(s0.ok() && u.ok() && i64.ok() && s1.ok());
    EXPECT_EQ(*s0, std::get<std::string>(t[0]));
    EXPECT_EQ(*u, std::get<uint64_t>(t[1]));
    EXPECT_EQ(*i64, std::get<int64_t>(t[2]));
    EXPECT_EQ(*s1, std::get<std::string>(t[3]));
    EXPECT_TRUE(r.done());
  }
}

TEST(KeysTest, StringEncodingIsExact) {
  std::string k;
  AppendString(&k, std::string("a\0b", 3));
  EXPECT_EQ(k, std::string("a\0\xFF"
                           "b\0\x01",
                           6));
  EXPECT_EQ(EncodeUint64(0x0102030405060708), std::string("\x01\x02\x03\x04\x05\x06\x07\x08"));
}

TEST(KeysTest, ReaderRejectsMalformed) {
  const std::string unterminated_key("ab\0", 3);
  KeyReader unterminated(unterminated_key);
  EXPECT_FALSE(unterminated.Str().ok());
  EXPECT_EQ(unterminated.rest().size(), 3u);  // unchanged
  const std::string bad_escape_key("a\0\x05", 3);
  KeyReader bad_escape(bad_escape_key);
  EXPECT_FALSE(bad_escape.Str().ok());
  KeyReader short_int("abc");
  EXPECT_FALSE(short_int.U64().ok());
}

TEST(KeysTest, PrefixEnd) {
  EXPECT_EQ(PrefixEnd("abc"), "abd");
  EXPECT_EQ(PrefixEnd(std::string("a\xFF\xFF", 3)), "b");
  EXPECT_EQ(PrefixEnd(std::string("\xFF\xFF", 2)), "");
  EXPECT_EQ(PrefixEnd(""), "");
  // Every key with the prefix is below PrefixEnd; the prefix itself is in range.
  std::string p("a\x7F\xFF", 3);
  EXPECT_LT(std::string(p) + std::string(10, '\xFF'), PrefixEnd(p));
  EXPECT_TRUE(InRange(p, p, PrefixEnd(p)));
  EXPECT_FALSE(InRange("b", p, PrefixEnd(p)));
}

TEST(KeysTest, TenantsAreDisjointRanges) {
  // "t" must not contain "t\0..." or "tx": the terminator separates them.
  std::vector<std::string> tenants = {"t", std::string("t\0", 2), "tx", "u", ""};
  for (const std::string& a : tenants) {
    KeyRange ra = PrefixRange(TenantPrefix(a));
    for (const std::string& b : tenants) {
      std::string key = KeyBuilder(TenantPrefix(b)).Str("user").Str("1").Build();
      EXPECT_EQ(InRange(key, ra.start, ra.end), a == b) << "'" << a << "' vs '" << b << "'";
    }
    std::string global = KeyBuilder(GlobalPrefix("domains")).Str("example.com").Build();
    EXPECT_FALSE(InRange(global, ra.start, ra.end));
  }
}

TEST(KeysTest, Successor) {
  EXPECT_EQ(Successor("a"), std::string("a\0", 2));
  EXPECT_LT(std::string("a"), Successor("a"));
  EXPECT_LT(Successor("a"), std::string("a\x01"));
}

}  // namespace
}  // namespace mailgrid::kv
