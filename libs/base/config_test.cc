#include "libs/base/config.h"

#include <cstdio>
#include <fstream>

#include "gtest/gtest.h"

namespace mailgrid::config {
namespace {

struct TestConfig {
  std::string listen = "127.0.0.1:7000";
  int workers = 2;
  bool tls = false;
  absl::Duration timeout = absl::Seconds(5);
  std::string secret;
  std::vector<std::string> peers;
};

Flags MakeFlags(TestConfig& c) {
  Flags f("testd");
  f.String("listen", &c.listen, "listen address");
  f.Int("workers", &c.workers, "worker threads");
  f.Bool("tls", &c.tls, "enable TLS");
  f.Duration("timeout", &c.timeout, "timeout");
  f.String("secret", &c.secret, "a secret", /*secret=*/true);
  f.StringList("peers", &c.peers, "peers");
  return f;
}

absl::Status ParseArgs(Flags& f, std::vector<const char*> args, std::vector<const char*> env = {}) {
  args.insert(args.begin(), "testd");
  env.push_back(nullptr);
  return f.Parse(static_cast<int>(args.size()), args.data(), env.data());
}

TEST(FlagsTest, DefaultsStayWhenNothingGiven) {
  TestConfig c;
  Flags f = MakeFlags(c);
  ASSERT_TRUE(ParseArgs(f, {}).ok());
  EXPECT_EQ(c.listen, "127.0.0.1:7000");
  EXPECT_EQ(c.workers, 2);
  EXPECT_FALSE(c.tls);
}

TEST(FlagsTest, FlagsBothSyntaxesAndBools) {
  TestConfig c;
  Flags f = MakeFlags(c);
  ASSERT_TRUE(ParseArgs(f, {"--listen=0.0.0.0:1", "--workers", "8", "--tls", "--timeout=250ms", "--peers=a:1, b:2", "pos"}).ok());
  EXPECT_EQ(c.listen, "0.0.0.0:1");
  EXPECT_EQ(c.workers, 8);
  EXPECT_TRUE(c.tls);
  EXPECT_EQ(c.timeout, absl::Milliseconds(250));
  EXPECT_EQ(c.peers, (std::vector<std::string>{"a:1", "b:2"}));
  EXPECT_EQ(f.Positional(), std::vector<std::string>{"pos"});
  TestConfig d;
  d.tls = true;
  Flags g = MakeFlags(d);
  ASSERT_TRUE(ParseArgs(g, {"--no-tls"}).ok());
  EXPECT_FALSE(d.tls);
}

TEST(FlagsTest, EnvironmentIsOverriddenByFlags) {
  TestConfig c;
  Flags f = MakeFlags(c);
  ASSERT_TRUE(ParseArgs(f, {"--workers=3"}, {"MAILGRID_WORKERS=9", "MAILGRID_LISTEN=1.2.3.4:5"}).ok());
  EXPECT_EQ(c.workers, 3);
  EXPECT_EQ(c.listen, "1.2.3.4:5");
}

TEST(FlagsTest, ConfigFileIsOverriddenByEnvAndFlags) {
  std::string path = testing::TempDir() + "/flags_test.conf";
  {
    std::ofstream out(path);
    out << "# comment\nworkers = 4\nlisten = 9.9.9.9:9\ntimeout = 2s\n";
  }
  TestConfig c;
  Flags f = MakeFlags(c);
  ASSERT_TRUE(ParseArgs(f, {"--config", path.c_str()}, {"MAILGRID_LISTEN=1.1.1.1:1"}).ok());
  EXPECT_EQ(c.workers, 4);
  EXPECT_EQ(c.listen, "1.1.1.1:1");
  EXPECT_EQ(c.timeout, absl::Seconds(2));
}

TEST(FlagsTest, ErrorsNameTheProblem) {
  TestConfig c;
  Flags f = MakeFlags(c);
  absl::Status s = ParseArgs(f, {"--bogus=1"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--bogus"), std::string::npos);

  Flags g = MakeFlags(c);
  s = ParseArgs(g, {"--workers=many"});
  EXPECT_NE(s.message().find("--workers"), std::string::npos);

  Flags h = MakeFlags(c);
  s = ParseArgs(h, {"--config=/nonexistent/file.conf"});
  EXPECT_NE(s.message().find("/nonexistent/file.conf"), std::string::npos);

  Flags i = MakeFlags(c);
  s = ParseArgs(i, {"--workers"});
  EXPECT_NE(s.message().find("needs a value"), std::string::npos);

  Flags j = MakeFlags(c);
  s = ParseArgs(j, {}, {"MAILGRID_TIMEOUT=soon"});
  EXPECT_NE(s.message().find("MAILGRID_TIMEOUT"), std::string::npos);
}

TEST(FlagsTest, UnknownKeyInConfigFileIsAnError) {
  std::string path = testing::TempDir() + "/flags_bad.conf";
  {
    std::ofstream out(path);
    out << "workers = 4\nwrokers = 5\n";
  }
  TestConfig c;
  Flags f = MakeFlags(c);
  absl::Status s = ParseArgs(f, {("--config=" + path).c_str()});
  EXPECT_NE(s.message().find(":2: unknown option \"wrokers\""), std::string::npos) << s;
}

TEST(FlagsTest, SecretsAreRedactedInEffectiveValues) {
  TestConfig c;
  Flags f = MakeFlags(c);
  ASSERT_TRUE(ParseArgs(f, {"--secret=hunter2"}).ok());
  bool seen = false;
  for (const auto& e : f.EffectiveValues()) {
    if (e.name == "secret") {
      seen = true;
      EXPECT_EQ(e.value, "<redacted>");
      EXPECT_EQ(e.source, "flag");
    }
  }
  EXPECT_TRUE(seen);
  EXPECT_EQ(c.secret, "hunter2");
  EXPECT_EQ(f.Usage().find("hunter2"), std::string::npos);
}

TEST(FlagsTest, EnvName) { EXPECT_EQ(Flags::EnvName("metrics-port"), "MAILGRID_METRICS_PORT"); }

}  // namespace
}  // namespace mailgrid::config
