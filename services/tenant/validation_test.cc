#include "services/tenant/validation.h"

#include "gtest/gtest.h"
#include "services/tenant/errors.h"

namespace mailgrid::tenant {
namespace {

std::string Reason(const absl::Status& s) {
  auto d = ErrorDetailOf(s);
  return d.has_value() ? d->reason() : "";
}

TEST(PhoneTest, NormalisesCommonNotations) {
  EXPECT_EQ(*NormalizePhone("+86 138-0013-8000", "p"), "+8613800138000");
  EXPECT_EQ(*NormalizePhone("0086 (138) 0013 8000", "p"), "+8613800138000");
  EXPECT_EQ(*NormalizePhone("  +1.415.555.0100 ", "p"), "+14155550100");
  EXPECT_EQ(*NormalizePhone("(+49) 30/1234567", "p"), "+49301234567");
}

TEST(PhoneTest, RefusesWhatIsNotAPhone) {
  for (const char* bad : {"", "hello", "+86 138 0013 8000 ext 12", "13800138000", "+0 1234 5678",
                          "+1 234", "+1234567890123456", "++8613800138000", "86+13800138000"}) {
    auto r = NormalizePhone(bad, "contact.phone");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(ErrorDetailOf(r.status())->field(), "contact.phone");
    EXPECT_NE(std::string(r.status().message()).find("contact.phone"), std::string::npos);
  }
  EXPECT_EQ(Reason(NormalizePhone("13800138000", "p").status()), "NOT_E164");
  EXPECT_EQ(Reason(NormalizePhone("", "p").status()), "EMPTY");
}

TEST(EmailTest, AcceptsAddrSpecsAndCanonicalisesTheDomain) {
  EXPECT_EQ(*NormalizeEmail("Alice.Smith@Example.COM", "e"), "Alice.Smith@example.com");
  EXPECT_EQ(*NormalizeEmail("a+tag@sub.example.org", "e"), "a+tag@sub.example.org");
  EXPECT_EQ(*NormalizeEmail("\"john doe\"@example.com", "e"), "\"john doe\"@example.com");
  EXPECT_EQ(*NormalizeEmail("!#$%&'*+-/=?^_`{|}~@example.com", "e"),
            "!#$%&'*+-/=?^_`{|}~@example.com");
  // RFC 6531 UTF-8 local part and an IDN domain, which becomes A-labels.
  EXPECT_EQ(*NormalizeEmail("张三@例子.中国", "e"), "张三@xn--fsqu00a.xn--fiqs8s");
}

TEST(EmailTest, RefusesMalformedAddresses) {
  for (const char* bad :
       {"", "plainaddress", "@example.com", "a..b@example.com", ".a@example.com", "a.@example.com",
        "a b@example.com", "a@", "a@b", "a@[127.0.0.1]", "a@-bad-.com", "a@exa_mple.com",
        "\"unterminated@example.com", "a@example..com"}) {
    auto r = NormalizeEmail(bad, "contact.email");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(ErrorDetailOf(r.status())->field(), "contact.email") << bad;
  }
  EXPECT_EQ(Reason(NormalizeEmail("plainaddress", "e").status()), "BAD_ADDRESS");
  std::string long_local(65, 'a');
  EXPECT_FALSE(NormalizeEmail(long_local + "@example.com", "e").ok());
}

TEST(NameTest, ChineseNamesRoundTrip) {
  const std::string name = "北京示例科技有限公司";
  auto r = ValidateName(name, "company_name", 200);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, name);
  EXPECT_EQ(*ValidateName("  张伟 ", "contact.name", 200), "张伟");
}

TEST(NameTest, NormalisesToNfc) {
  // "é" as e + combining acute (NFD) becomes the single code point (NFC).
  EXPECT_EQ(*ValidateName("Caf\x65\xCC\x81", "n", 200), "Caf\xC3\xA9");
}

TEST(NameTest, RefusesEmptyTooLongBadUtf8AndControls) {
  EXPECT_EQ(Reason(ValidateName("   ", "n", 200).status()), "EMPTY");
  EXPECT_EQ(Reason(ValidateName(std::string(201, 'x'), "n", 200).status()), "TOO_LONG");
  // 200 Chinese characters are 600 bytes but 200 characters: allowed.
  std::string chinese;
  for (int i = 0; i < 200; ++i) chinese += "中";
  EXPECT_TRUE(ValidateName(chinese, "n", 200).ok());
  EXPECT_EQ(Reason(ValidateName(chinese + "中", "n", 200).status()), "TOO_LONG");
  EXPECT_EQ(Reason(ValidateName("bad\xFF", "n", 200).status()), "BAD_UTF8");
  EXPECT_EQ(Reason(ValidateName("a\x01"
                                "b",
                                "n", 200)
                       .status()),
            "BAD_CHARACTER");
  EXPECT_TRUE(ValidateOptionalText("", "n", 10).ok());
}

TEST(NameTest, KeyFoldsCaseAndSpace) {
  EXPECT_EQ(NameKey("ACME  Ltd"), NameKey("acme ltd"));
  EXPECT_EQ(NameKey("Straße"), NameKey("STRASSE"));
  EXPECT_NE(NameKey("北京示例"), NameKey("上海示例"));
}

TEST(DomainTest, AsciiDomainsAreLowerCased) {
  auto d = NormalizeDomain("Example.COM.", "name");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->ascii, "example.com");
  EXPECT_EQ(d->unicode, "example.com");
}

TEST(DomainTest, IdnToALabels) {
  auto d = NormalizeDomain("例子.中国", "name");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->ascii, "xn--fsqu00a.xn--fiqs8s");
  EXPECT_EQ(d->unicode, "例子.中国");
  // UTS #46 maps upper case before conversion.
  auto b = NormalizeDomain("BÜCHER.de", "name");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->ascii, "xn--bcher-kva.de");
  // A-labels in, the same A-labels out, U-labels alongside.
  auto a = NormalizeDomain("xn--bcher-kva.de", "name");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->unicode, "bücher.de");
}

TEST(DomainTest, RefusesWhatIsNotADomain) {
  for (const char* bad :
       {"", "com", "localhost", "a..b.com", "-a.com", "a-.com", "exa mple.com", "exa_mple.com",
        "127.0.0.1", "http://example.com", "example.com/path", "xn--zz.com"}) {
    auto r = NormalizeDomain(bad, "name");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(Reason(r.status()), "NOT_A_DOMAIN") << bad;
  }
  std::string long_label(64, 'a');
  EXPECT_FALSE(NormalizeDomain(long_label + ".com", "name").ok());
}

TEST(CountryTest, Alpha2) {
  EXPECT_EQ(*NormalizeCountryCode("cn", "c"), "CN");
  EXPECT_FALSE(NormalizeCountryCode("CHN", "c").ok());
  EXPECT_FALSE(NormalizeCountryCode("1A", "c").ok());
}

TEST(FilenameTest, NoPathsNoControls) {
  EXPECT_EQ(*ValidateFilename("营业执照.pdf", "f"), "营业执照.pdf");
  EXPECT_EQ(*ValidateFilename("", "f"), "document");
  EXPECT_FALSE(ValidateFilename("../etc/passwd", "f").ok());
  EXPECT_FALSE(ValidateFilename("a\\b.pdf", "f").ok());
  EXPECT_EQ(Reason(ValidateFilename(std::string(256, 'a'), "f").status()), "TOO_LONG");
}

}  // namespace
}  // namespace mailgrid::tenant
