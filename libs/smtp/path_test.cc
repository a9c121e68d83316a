#include "libs/smtp/path.h"

#include <string>

#include "gtest/gtest.h"

namespace mailgrid::smtp {
namespace {

Path MustParse(std::string_view text, PathKind kind = PathKind::kForward) {
  absl::StatusOr<Path> p = ParsePath(text, kind);
  EXPECT_TRUE(p.ok()) << text << ": " << p.status();
  return p.ok() ? *p : Path{};
}

TEST(ParsePathTest, SimpleMailbox) {
  Path p = MustParse("<john.doe@Example.COM>");
  EXPECT_EQ(p.local_part, "john.doe");
  EXPECT_EQ(p.domain, "Example.COM");
  EXPECT_EQ(p.NormalizedDomain(), "example.com");
  EXPECT_EQ(p.domain_kind, DomainKind::kName);
  EXPECT_FALSE(p.quoted);
  EXPECT_FALSE(p.utf8);
  EXPECT_FALSE(p.HasRoutingCharacters());
  EXPECT_EQ(p.Mailbox(), "john.doe@Example.COM");
}

TEST(ParsePathTest, AtextSpecials) {
  Path p = MustParse("<a!#$%&'*+-/=?^_`{|}~b@x.test>");
  EXPECT_EQ(p.local_part, "a!#$%&'*+-/=?^_`{|}~b");
}

TEST(ParsePathTest, NullPathOnlyAsReversePath) {
  Path p = MustParse("<>", PathKind::kReverse);
  EXPECT_TRUE(p.null);
  EXPECT_EQ(p.Mailbox(), "");
  EXPECT_FALSE(ParsePath("<>", PathKind::kForward).ok());
}

TEST(ParsePathTest, BarePostmasterOnlyAsForwardPath) {
  Path p = MustParse("<PostMaster>");
  EXPECT_TRUE(p.postmaster);
  EXPECT_EQ(p.domain_kind, DomainKind::kNone);
  EXPECT_FALSE(ParsePath("<postmaster>", PathKind::kReverse).ok());
  // With a domain it is an ordinary mailbox.
  Path q = MustParse("<postmaster@x.test>");
  EXPECT_FALSE(q.postmaster);
  EXPECT_EQ(q.local_part, "postmaster");
}

TEST(ParsePathTest, QuotedLocalPart) {
  Path p = MustParse(R"(<"john \"jd\" doe"@x.test>)");
  EXPECT_TRUE(p.quoted);
  EXPECT_EQ(p.local_part, R"(john "jd" doe)");
  EXPECT_EQ(p.Mailbox(), R"("john \"jd\" doe"@x.test)");
  // A quoted local part that is a valid dot-string is the same mailbox.
  Path q = MustParse(R"(<"john"@x.test>)");
  EXPECT_EQ(q.local_part, "john");
  EXPECT_EQ(q.Mailbox(), "john@x.test");
  // '>' inside quotes does not end the path.
  Path r = MustParse(R"(<"a>b"@x.test>)");
  EXPECT_EQ(r.local_part, "a>b");
}

TEST(ParsePathTest, OpenRelayTricksParseButAreFlagged) {
  // The %-hack.
  Path percent = MustParse("<user%foreign.test@local.test>");
  EXPECT_EQ(percent.local_part, "user%foreign.test");
  EXPECT_EQ(percent.domain, "local.test");
  EXPECT_TRUE(percent.HasRoutingCharacters());
  // A quoted '@'.
  Path quoted = MustParse(R"(<"user@foreign.test"@local.test>)");
  EXPECT_EQ(quoted.local_part, "user@foreign.test");
  EXPECT_EQ(quoted.domain, "local.test");
  EXPECT_TRUE(quoted.HasRoutingCharacters());
  EXPECT_EQ(quoted.Mailbox(), R"("user@foreign.test"@local.test)");
  // Bang path.
  EXPECT_TRUE(MustParse("<foreign.test!user@local.test>").HasRoutingCharacters());
  // Source route: parsed, discarded from the mailbox, reported.
  Path route = MustParse("<@a.test,@b.test:user@c.test>");
  EXPECT_EQ(route.local_part, "user");
  EXPECT_EQ(route.domain, "c.test");
  EXPECT_EQ(route.source_route, (std::vector<std::string>{"a.test", "b.test"}));
  EXPECT_EQ(route.Mailbox(), "user@c.test");
  EXPECT_TRUE(route.HasRoutingCharacters());
}

TEST(ParsePathTest, AddressLiterals) {
  Path v4 = MustParse("<user@[192.0.2.1]>");
  EXPECT_EQ(v4.domain_kind, DomainKind::kIPv4);
  EXPECT_EQ(v4.domain, "[192.0.2.1]");
  Path v6 = MustParse("<user@[IPv6:2001:db8::1]>");
  EXPECT_EQ(v6.domain_kind, DomainKind::kIPv6);
  EXPECT_EQ(v6.NormalizedDomain(), "[ipv6:2001:db8::1]");
  EXPECT_TRUE(ParsePath("<user@[IPv6:::ffff:192.0.2.1]>").ok());
  for (const char* bad : {"<u@[256.0.0.1]>", "<u@[1.2.3]>", "<u@[1.2.3.4.5]>", "<u@[1.2.3.4>",
                          "<u@[IPv6:2001:db8::g]>", "<u@[IPv6:1:2:3:4:5:6:7:8:9]>",
                          "<u@[tag:content]>", "<u@[]>", "<u@[1..2.3]>"}) {
    EXPECT_FALSE(ParsePath(bad).ok()) << bad;
  }
}

TEST(ParsePathTest, Utf8NeedsFlagAndValidity) {
  Path p = MustParse("<jöran@bücher.test>");
  EXPECT_TRUE(p.utf8);
  EXPECT_EQ(p.local_part, "jöran");
  // Invalid UTF-8: lone continuation, overlong, surrogate.
  EXPECT_FALSE(ParsePath("<a\x80@x.test>").ok());
  EXPECT_FALSE(ParsePath("<a\xc0\xaf@x.test>").ok());
  EXPECT_FALSE(ParsePath("<a\xed\xa0\x80@x.test>").ok());
  EXPECT_FALSE(ParsePath("<a@b\xff.test>").ok());
}

TEST(ParsePathTest, RejectsMalformed) {
  for (std::string_view bad : std::vector<std::string_view>{"user@x.test",
                                                            "<user@x.test",
                                                            "user@x.test>",
                                                            "<user>",
                                                            "<@x.test>",
                                                            "<user@>",
                                                            "<.user@x.test>",
                                                            "<user.@x.test>",
                                                            "<us..er@x.test>",
                                                            "<user@x..test>",
                                                            "<user@.x.test>",
                                                            "<user@x.test.>",
                                                            "<user@-x.test>",
                                                            "<user@x-.test>",
                                                            "<user@x_y.test>",
                                                            "<us er@x.test>",
                                                            "<\"unterminated@x.test>",
                                                            "<a@b@c.test>",
                                                            "<user@x.test> ",
                                                            "< user@x.test>",
                                                            "<\"\"@x.test>",
                                                            "<@a.test:>",
                                                            "<@a.test,user@x.test>",
                                                            "<@[1.2.3.4]:user@x.test>",
                                                            "<user\\@x.test>",
                                                            "<\"a\\\x01\"@x.test>",
                                                            "<user@x.test\r\n>"}) {
    EXPECT_FALSE(ParsePath(bad).ok()) << bad;
  }
}

TEST(ParsePathTest, NoControlCharactersEver) {
  std::string nul("<a\0b@x.test>", 12);
  EXPECT_FALSE(ParsePath(nul).ok());
  EXPECT_FALSE(ParsePath("<a\rb@x.test>").ok());
  EXPECT_FALSE(ParsePath("<a\nb@x.test>").ok());
  EXPECT_FALSE(ParsePath("<\"a\rb\"@x.test>").ok());
  EXPECT_FALSE(ParsePath("<\"a\\\rb\"@x.test>").ok());
  EXPECT_FALSE(ParsePath("<\"a\tb\"@x.test>").ok());
}

TEST(ParsePathTest, LengthLimits) {
  std::string local64(64, 'a');
  EXPECT_TRUE(ParsePath("<" + local64 + "@x.test>").ok());
  EXPECT_FALSE(ParsePath("<" + local64 + "a@x.test>").ok());
  std::string label63(63, 'b');
  EXPECT_TRUE(ParsePath("<a@" + label63 + ".test>").ok());
  EXPECT_FALSE(ParsePath("<a@" + label63 + "b.test>").ok());
  // 4 labels of 63 + dots = 255 octets: a valid domain, but the path is then
  // 260 octets, over the 256 limit.
  std::string domain255 = label63 + "." + label63 + "." + label63 + "." + label63;
  EXPECT_EQ(domain255.size(), 255u);
  EXPECT_TRUE(IsValidDomain(domain255));
  EXPECT_FALSE(IsValidDomain(domain255 + "x"));
  EXPECT_FALSE(ParsePath("<a@" + domain255 + ">").ok());
}

TEST(ParsePathTest, PrefixStopsAfterPath) {
  size_t consumed = 0;
  absl::StatusOr<Path> p = ParsePathPrefix("<a@b.test> SIZE=10", PathKind::kReverse, &consumed);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(consumed, 10u);
}

TEST(ParseMailboxTest, BareMailbox) {
  absl::StatusOr<Path> p = ParseMailbox("Alice@Example.test");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->local_part, "Alice");
  EXPECT_FALSE(ParseMailbox("<a@b.test>").ok());
  EXPECT_FALSE(ParseMailbox("@r.test:a@b.test").ok());
  EXPECT_FALSE(ParseMailbox("a@b.test x").ok());
}

TEST(DomainTest, Helpers) {
  EXPECT_EQ(NormalizeDomain("MiXeD.Example.TEST"), "mixed.example.test");
  EXPECT_EQ(NormalizeDomain("BÜcher.test"), "bÜcher.test");  // UTF-8 left alone
  EXPECT_TRUE(IsValidDomain("localhost"));
  EXPECT_TRUE(IsValidDomain("xn--bcher-kva.test"));
  EXPECT_FALSE(IsValidDomain("bücher.test", /*allow_utf8=*/false));
  EXPECT_TRUE(IsDotString("a.b.c"));
  EXPECT_FALSE(IsDotString("a b"));
  EXPECT_TRUE(IsValidUtf8("\xf0\x9f\x93\xa7"));   // U+1F4E7
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));      // overlong
}

TEST(PathTest, MailboxRoundTrips) {
  for (const char* text : {"<a@b.test>", R"(<"a b"@b.test>)", R"(<"a\\b"@b.test>)",
                           "<x@[IPv6:::1]>", R"(<"@"@b.test>)"}) {
    Path p = MustParse(text);
    absl::StatusOr<Path> again = ParsePath("<" + p.Mailbox() + ">");
    ASSERT_TRUE(again.ok()) << p.Mailbox();
    EXPECT_EQ(again->local_part, p.local_part);
    EXPECT_EQ(again->domain, p.domain);
  }
}

}  // namespace
}  // namespace mailgrid::smtp
