#include "libs/smtp/commands.h"

#include <string>

#include "gtest/gtest.h"

namespace mailgrid::smtp {
namespace {

Extensions Esmtp() {
  Extensions e;
  e.esmtp = true;
  e.max_message_size = 1000;
  e.auth = true;
  e.binarymime = true;
  return e;
}

template <typename T>
T Ok(const Parsed<T>& p) {
  if (const Reply* r = std::get_if<Reply>(&p)) {
    ADD_FAILURE() << "unexpected reply " << r->Serialize();
    return T{};
  }
  return std::get<T>(p);
}

template <typename T>
std::string Err(const Parsed<T>& p) {
  if (const Reply* r = std::get_if<Reply>(&p)) return r->Serialize();
  return "<no error>";
}

TEST(SplitCommandTest, VerbsAndArgs) {
  CommandLine c = SplitCommand("mail FROM:<a@b.test>");
  EXPECT_EQ(c.verb, Verb::kMail);
  EXPECT_EQ(c.args, "FROM:<a@b.test>");
  EXPECT_EQ(SplitCommand("QUIT  ").verb, Verb::kQuit);
  EXPECT_FALSE(SplitCommand("QUIT  ").has_args);
  EXPECT_EQ(SplitCommand("StartTLS").verb, Verb::kStartTls);
  EXPECT_EQ(SplitCommand("MAILX").verb, Verb::kUnknown);
  EXPECT_EQ(SplitCommand("GET / HTTP/1.1").verb, Verb::kHttp);
  EXPECT_EQ(SplitCommand(" NOOP").verb, Verb::kUnknown);
}

TEST(MailCommandTest, PathAndParams) {
  MailCommand m = Ok(ParseMailCommand(
      "FROM:<a@b.test> SIZE=999 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1 AUTH=<>", Esmtp()));
  EXPECT_EQ(m.reverse_path.local_part, "a");
  EXPECT_EQ(m.params.size, 999u);
  EXPECT_EQ(m.params.body, BodyType::k8BitMime);
  EXPECT_TRUE(m.params.smtputf8);
  EXPECT_EQ(m.params.ret, DsnReturn::kHeaders);
  EXPECT_EQ(m.params.envid, "id+1");
  EXPECT_EQ(m.params.auth, "<>");
}

TEST(MailCommandTest, Tolerances) {
  EXPECT_TRUE(Ok(ParseMailCommand("from:<>", Esmtp())).reverse_path.null);
  EXPECT_EQ(Ok(ParseMailCommand("FROM: <a@b.test>", Esmtp())).reverse_path.domain, "b.test");
  EXPECT_EQ(Ok(ParseMailCommand("FROM:<a@b.test>  SIZE=1", Esmtp())).params.size, 1u);
  EXPECT_EQ(Ok(ParseMailCommand("FROM:<a@b.test> body=binarymime", Esmtp())).params.body,
            BodyType::kBinaryMime);
}

TEST(MailCommandTest, Errors) {
  EXPECT_EQ(Err(ParseMailCommand("FROM:a@b.test", Esmtp())),
            "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
  EXPECT_EQ(Err(ParseMailCommand("TO:<a@b.test>", Esmtp())),
            "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
  EXPECT_EQ(Err(ParseMailCommand("FROM:  <a@b.test>", Esmtp())),
            "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
  EXPECT_EQ(Err(ParseMailCommand("FROM:<a@@b.test>", Esmtp())).substr(0, 10), "501 5.1.7 ");
  EXPECT_EQ(Err(ParseMailCommand("FROM:<a@b.test> SIZE=1001", Esmtp())),
            "552 5.3.4 Message size exceeds fixed limit\r\n");
  EXPECT_EQ(Err(ParseMailCommand("FROM:<a@b.test> SIZE=99999999999999999999999", Esmtp())),
            "501 5.5.4 Bad SIZE syntax\r\n");
  EXPECT_EQ(Err(ParseMailCommand("FROM:<a@b.test> SIZE", Esmtp())),
            "501 5.5.4 Bad SIZE syntax\r\n");
  EXPECT_EQ(Err(ParseMailCommand("FROM:<a@b.test> XFOO=1", Esmtp())),
            "555 5.5.4 Unsupported option: XFOO\r\n");
  EXPECT_EQ(Err(ParseMailCommand("FROM:<a@b.test> SIZE=1 size=2", Esmtp())),
            "501 5.5.4 Duplicate parameter\r\n");
  EXPECT_EQ(Err(ParseMailCommand("FROM:<a@b.test> BODY=9BIT", Esmtp())),
            "501 5.5.4 Unsupported BODY type\r\n");
  EXPECT_EQ(Err(ParseMailCommand("FROM:<a@b.test> ENVID=a+0Db", Esmtp())),
            "501 5.5.4 Bad ENVID syntax\r\n");  // xtext that decodes to CR
  EXPECT_EQ(Err(ParseMailCommand("FROM:<a@b.test> AUTH=not-an-address", Esmtp())),
            "501 5.5.4 Bad AUTH parameter\r\n");
  EXPECT_EQ(Err(ParseMailCommand("FROM:<a@b.test> SIZE==1", Esmtp())),
            "501 5.5.4 Bad parameter syntax\r\n");
  EXPECT_EQ(Err(ParseMailCommand("FROM:<a@b.test>SIZE=1", Esmtp())),
            "501 5.5.4 Bad parameter syntax\r\n");
  EXPECT_EQ(Err(ParseMailCommand("FROM:<jö@b.test>", Esmtp())),
            "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n");
  EXPECT_TRUE(Ok(ParseMailCommand("FROM:<jö@b.test> SMTPUTF8", Esmtp())).reverse_path.utf8);
}

TEST(MailCommandTest, ParamsNeedTheExtension) {
  Extensions helo;  // HELO, not EHLO
  EXPECT_EQ(Err(ParseMailCommand("FROM:<a@b.test> SIZE=1", helo)),
            "555 5.5.4 Unsupported option: SIZE\r\n");
  Extensions no_dsn = Esmtp();
  no_dsn.dsn = false;
  EXPECT_EQ(Err(ParseMailCommand("FROM:<a@b.test> RET=FULL", no_dsn)),
            "555 5.5.4 Unsupported option: RET\r\n");
  Extensions no_utf8 = Esmtp();
  no_utf8.smtputf8 = false;
  EXPECT_EQ(Err(ParseMailCommand("FROM:<a@b.test> SMTPUTF8", no_utf8)),
            "555 5.5.4 Unsupported option: SMTPUTF8\r\n");
}

TEST(RcptCommandTest, DsnParams) {
  RcptCommand r = Ok(ParseRcptCommand(
      "TO:<u@x.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u+40x.test", Esmtp(), false));
  EXPECT_TRUE(r.params.notify_specified);
  EXPECT_TRUE(r.params.notify_success);
  EXPECT_TRUE(r.params.notify_failure);
  EXPECT_FALSE(r.params.notify_delay);
  EXPECT_EQ(r.params.orcpt_type, "rfc822");
  EXPECT_EQ(r.params.orcpt_address, "u@x.test");
  EXPECT_TRUE(
      Ok(ParseRcptCommand("TO:<u@x.test> NOTIFY=never", Esmtp(), false)).params.notify_never);
}

TEST(RcptCommandTest, Errors) {
  EXPECT_EQ(Err(ParseRcptCommand("TO:<>", Esmtp(), false)).substr(0, 10), "501 5.1.3 ");
  EXPECT_EQ(Err(ParseRcptCommand("TO:<u@x.test> NOTIFY=NEVER,DELAY", Esmtp(), false)),
            "501 5.5.4 Bad NOTIFY syntax\r\n");
  EXPECT_EQ(Err(ParseRcptCommand("TO:<u@x.test> NOTIFY=DELAY,DELAY", Esmtp(), false)),
            "501 5.5.4 Bad NOTIFY syntax\r\n");
  EXPECT_EQ(Err(ParseRcptCommand("TO:<u@x.test> ORCPT=u@x.test", Esmtp(), false)),
            "501 5.5.4 Bad ORCPT syntax\r\n");
  EXPECT_EQ(Err(ParseRcptCommand("TO:<u@x.test> ORCPT=rfc822;a+0Ab", Esmtp(), false)),
            "501 5.5.4 Bad ORCPT syntax\r\n");
  EXPECT_EQ(Err(ParseRcptCommand("TO:<u@x.test> SIZE=1", Esmtp(), false)),
            "555 5.5.4 Unsupported option: SIZE\r\n");
  EXPECT_EQ(Err(ParseRcptCommand("TO:<ü@x.test>", Esmtp(), false)),
            "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n");
  EXPECT_TRUE(Ok(ParseRcptCommand("TO:<ü@x.test>", Esmtp(), true)).forward_path.utf8);
  EXPECT_TRUE(Ok(ParseRcptCommand("TO:<Postmaster>", Esmtp(), false)).forward_path.postmaster);
}

TEST(BdatCommandTest, Parse) {
  BdatCommand b = Ok(ParseBdatCommand("100 last"));
  EXPECT_EQ(b.size, 100u);
  EXPECT_TRUE(b.last);
  EXPECT_FALSE(Ok(ParseBdatCommand("0")).last);
  for (const char* bad :
       {"", "x", "-1", "1 FIRST", "1 LAST x", "1  LAST", "18446744073709551616"}) {
    EXPECT_EQ(Err(ParseBdatCommand(bad)), "501 5.5.4 Syntax: BDAT count [LAST]\r\n") << bad;
  }
  EXPECT_EQ(Ok(ParseBdatCommand("18446744073709551615")).size, UINT64_MAX);
}

TEST(AuthCommandTest, Parse) {
  AuthCommand a = Ok(ParseAuthCommand("plain AHVzZXIAc2VjcmV0"));
  EXPECT_EQ(a.mechanism, "PLAIN");
  EXPECT_EQ(a.initial_response, std::string("\0user\0secret", 12));
  EXPECT_EQ(Ok(ParseAuthCommand("PLAIN =")).initial_response, "");
  EXPECT_FALSE(Ok(ParseAuthCommand("LOGIN")).initial_response.has_value());
  EXPECT_EQ(Err(ParseAuthCommand("PLAIN !!!")), "501 5.5.2 Cannot decode response\r\n");
  EXPECT_EQ(Err(ParseAuthCommand("A-MECHANISM-NAME-LONGER-THAN-20")).substr(0, 9), "501 5.5.4");
}

TEST(Base64Test, StrictDecoding) {
  EXPECT_EQ(DecodeBase64(""), "");
  EXPECT_EQ(DecodeBase64("Zm9v"), "foo");
  EXPECT_EQ(DecodeBase64("Zm8="), "fo");
  EXPECT_EQ(DecodeBase64("Zg=="), "f");
  EXPECT_FALSE(DecodeBase64("Zg").has_value());    // unpadded
  EXPECT_FALSE(DecodeBase64("Zh==").has_value());  // non-canonical bits
  EXPECT_FALSE(DecodeBase64("Zg=a").has_value());
  EXPECT_FALSE(DecodeBase64("Z===").has_value());
  EXPECT_FALSE(DecodeBase64("Zm9v Zm9v").has_value());
  EXPECT_FALSE(DecodeBase64("Zg==Zm9v").has_value());  // padding inside
  for (std::string s : {std::string(""), std::string("a"), std::string("ab"), std::string("abc"),
                        std::string("\0\xff\x10", 3)}) {
    EXPECT_EQ(DecodeBase64(EncodeBase64(s)), s);
  }
}

TEST(XtextTest, Decode) {
  EXPECT_EQ(DecodeXtext("a+2Bb"), "a+b");
  EXPECT_FALSE(DecodeXtext("a+2b").has_value());  // hex must be upper case
  EXPECT_FALSE(DecodeXtext("a+2").has_value());
  EXPECT_FALSE(DecodeXtext("a=b").has_value());
  EXPECT_FALSE(DecodeXtext("a b").has_value());
}

}  // namespace
}  // namespace mailgrid::smtp
