#include "libs/mail/address.h"

#include <string>

#include "gtest/gtest.h"

namespace mailgrid::mail {
namespace {

using Kind = Address::Kind;

// name|local@domain per item; groups as "group:" and ";".
std::string Dump(const AddressList& list) {
  std::string out;
  for (const Address& a : list.items) {
    if (!out.empty()) out += " ";
    switch (a.kind) {
      case Kind::kGroupStart:
        out += a.name + ":";
        break;
      case Kind::kGroupEnd:
        out += ";";
        break;
      case Kind::kMailbox:
        out += "[" + a.name + "|" + (a.route.empty() ? "" : a.route + ":") + a.local_part + "@" +
               a.domain + (a.valid ? "" : "!") + "]";
        break;
    }
  }
  return out;
}

TEST(AddressTest, CommonForms) {
  AddressList l = ParseAddressList(
      "Fred Foobar <foobar@Blurdybloop.COM>, mooch@owatagu.siam.edu,"
      " \"Zhang, Wei\" <wei.zhang@example.cn>, <bare@example.org>");
  EXPECT_FALSE(l.malformed);
  EXPECT_EQ(Dump(l),
            "[Fred Foobar|foobar@Blurdybloop.COM] [|mooch@owatagu.siam.edu] "
            "[Zhang, Wei|wei.zhang@example.cn] [|bare@example.org]");
  EXPECT_EQ(l.items[0].AddrSpec(), "foobar@Blurdybloop.COM");
  EXPECT_EQ(l.items[0].NormalizedDomain(), "blurdybloop.com");
  EXPECT_EQ(l.items[2].raw_name, "Zhang, Wei");
}

// RFC 5322 Appendix A.1.2 and A.1.3.
TEST(AddressTest, Rfc5322Examples) {
  AddressList l = ParseAddressList(
      "\"Joe Q. Public\" <john.q.public@example.com>, Mary Smith <mary@x.test>, jdoe@example.org,"
      " Who? <one@y.test>");
  EXPECT_FALSE(l.malformed);
  EXPECT_EQ(Dump(l),
            "[Joe Q. Public|john.q.public@example.com] [Mary Smith|mary@x.test] "
            "[|jdoe@example.org] [Who?|one@y.test]");

  AddressList g = ParseAddressList(
      "A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;, Undisclosed recipients:;");
  EXPECT_FALSE(g.malformed);
  EXPECT_EQ(Dump(g),
            "A Group: [Ed Jones|c@a.test] [|joe@where.test] [John|jdoe@one.test] ; "
            "Undisclosed recipients: ;");
  EXPECT_EQ(g.Mailboxes().size(), 3u);
}

// RFC 5322 Appendix A.5 (white space and comments) and A.6.3 (obsolete).
TEST(AddressTest, CommentsAndObsoleteSyntax) {
  AddressList l =
      ParseAddressList("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>");
  EXPECT_FALSE(l.malformed);
  EXPECT_EQ(Dump(l), "[Pete|pete@silly.test]");

  AddressList c = ParseAddressList("john@example.com (John Smith)");
  EXPECT_EQ(Dump(c), "[John Smith|john@example.com]");

  AddressList route = ParseAddressList("Joe <@relay1.test,@relay2.test:joe@example.com>");
  EXPECT_FALSE(route.malformed);
  EXPECT_EQ(Dump(route), "[Joe|@relay1.test,@relay2.test:joe@example.com]");

  AddressList obs = ParseAddressList("John Q. Public <john . q . public @ example . com>,,, x@y.z");
  EXPECT_EQ(Dump(obs), "[John Q. Public|john.q.public@example.com] [|x@y.z]");

  AddressList quoted = ParseAddressList("\"john doe\"@example.com, \"a\\\"b\"@x.test");
  EXPECT_EQ(Dump(quoted), "[|john doe@example.com] [|a\"b@x.test]");
  EXPECT_EQ(quoted.items[0].AddrSpec(), "\"john doe\"@example.com");
  EXPECT_EQ(quoted.items[1].AddrSpec(), "\"a\\\"b\"@x.test");

  AddressList literal = ParseAddressList("postmaster@[192.0.2.1]");
  EXPECT_EQ(Dump(literal), "[|postmaster@[192.0.2.1]]");
}

TEST(AddressTest, EncodedAndUtf8Names) {
  AddressList l = ParseAddressList(
      "=?GB2312?B?zfXO5Q==?= <wang.wu@example.cn>, \"=?UTF-8?B?5p2O5Zub?=\" <li@example.cn>,"
      " 张三 <张三@例子.中国>");
  EXPECT_FALSE(l.malformed);
  ASSERT_EQ(l.items.size(), 3u);
  EXPECT_EQ(l.items[0].name, "王五");
  EXPECT_EQ(l.items[0].raw_name, "=?GB2312?B?zfXO5Q==?=");  // what IMAP ENVELOPE sends
  EXPECT_EQ(l.items[1].name, "李四");
  EXPECT_EQ(l.items[2].name, "张三");
  EXPECT_EQ(l.items[2].local_part, "张三");
  EXPECT_EQ(l.items[2].domain, "例子.中国");
}

TEST(AddressTest, GarbageIsSkippedWithAFlag) {
  AddressList l = ParseAddressList("good@example.com, <<<>>> ]]] , also@example.com");
  EXPECT_TRUE(l.malformed);
  auto boxes = l.Mailboxes();
  ASSERT_GE(boxes.size(), 2u);
  EXPECT_EQ(boxes.front()->AddrSpec(), "good@example.com");
  EXPECT_EQ(boxes.back()->AddrSpec(), "also@example.com");

  AddressList bare = ParseAddressList("undisclosed-recipients");
  EXPECT_TRUE(bare.malformed);
  EXPECT_EQ(Dump(bare), "[|undisclosed-recipients@!]");

  AddressList open = ParseAddressList("Team: a@x.test, b@x.test");  // no ';'
  EXPECT_TRUE(open.malformed);
  EXPECT_EQ(Dump(open), "Team: [|a@x.test] [|b@x.test] ;");

  AddressList unclosed = ParseAddressList("Name <a@x.test");
  EXPECT_TRUE(unclosed.malformed);
  EXPECT_EQ(Dump(unclosed), "[Name|a@x.test!]");

  AddressList comment = ParseAddressList("a@x.test (never closed");
  EXPECT_TRUE(comment.malformed);

  AddressList nothing = ParseAddressList("  ,  , ");
  EXPECT_FALSE(nothing.malformed);
  EXPECT_TRUE(nothing.items.empty());
}

TEST(AddressTest, NoControlCharactersInParts) {
  static constexpr char kRaw[] = "\"a\0b\" <x\0y@ex\0ample.com>";
  AddressList l = ParseAddressList(std::string(kRaw, sizeof(kRaw) - 1));
  ASSERT_EQ(l.items.size(), 1u);
  EXPECT_EQ(l.items[0].raw_name, "ab");
  EXPECT_EQ(l.items[0].local_part.find('\0'), std::string::npos);
  EXPECT_EQ(l.items[0].domain.find('\0'), std::string::npos);
}

TEST(AddressTest, MaxAddresses) {
  std::string many;
  for (int i = 0; i < 100; ++i) many += "u" + std::to_string(i) + "@example.com, ";
  AddressOptions options;
  options.max_addresses = 10;
  AddressList l = ParseAddressList(many, options);
  EXPECT_EQ(l.items.size(), 10u);
  EXPECT_TRUE(l.malformed);
}

TEST(AddressTest, Formatting) {
  EXPECT_EQ(FormatMailbox("", "bob", "example.org"), "bob@example.org");
  EXPECT_EQ(FormatMailbox("Bob Smith", "bob", "example.org"), "Bob Smith <bob@example.org>");
  EXPECT_EQ(FormatMailbox("Smith, Bob", "bob", "example.org"), "\"Smith, Bob\" <bob@example.org>");
  EXPECT_EQ(FormatMailbox("张三", "zhang", "example.cn"),
            "=?UTF-8?B?5byg5LiJ?= <zhang@example.cn>");
  EXPECT_EQ(FormatMailbox("", "john doe", "example.com"), "\"john doe\"@example.com");
  EXPECT_EQ(FormatMailbox("Eve\r\nBcc: x@evil.test", "eve", "ex\r\nample.com"),
            "\"Eve  Bcc: x@evil.test\" <eve@example.com>");
  AddressList l =
      ParseAddressList("A Group:Ed Jones <c@a.test>,joe@where.test;, \"Zhang, Wei\" <w@x.cn>");
  EXPECT_EQ(FormatAddressList(l),
            "A Group: Ed Jones <c@a.test>, joe@where.test;, \"Zhang, Wei\" <w@x.cn>");
  // What we write, we read back the same.
  AddressList again = ParseAddressList(FormatAddressList(l));
  EXPECT_EQ(Dump(again), Dump(l));
}

}  // namespace
}  // namespace mailgrid::mail
