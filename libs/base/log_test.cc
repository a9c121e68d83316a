#include "libs/base/log.h"

#include "gtest/gtest.h"

namespace mailgrid::log {
namespace {

TEST(LogTest, OneLineLogfmt) {
  SetServiceName("testd");
  std::string line = FormatLine(Level::kInfo, "started", {{"port", 7000}, {"ok", true}});
  EXPECT_EQ(line.find("ts="), 0u);
  EXPECT_NE(line.find(" level=info svc=testd msg=started port=7000 ok=true\n"), std::string::npos) << line;
}

TEST(LogTest, HostileValuesCannotForgeLines) {
  std::string line = FormatLine(Level::kWarn, "bad ehlo", {{"helo", "x\r\nlevel=error msg=forged"}, {"nul", std::string("a\0b", 3)}});
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
  EXPECT_NE(line.find("helo=\"x\\r\\nlevel=error msg=forged\""), std::string::npos) << line;
  EXPECT_NE(line.find("nul=\"a\\x00b\""), std::string::npos) << line;
  EXPECT_NE(line.find("msg=\"bad ehlo\""), std::string::npos) << line;
}

TEST(LogTest, LevelNames) {
  EXPECT_TRUE(SetMinLevelByName("debug").ok());
  EXPECT_TRUE(SetMinLevelByName("WARN").ok());
  EXPECT_FALSE(SetMinLevelByName("loud").ok());
  SetMinLevel(Level::kInfo);
}

}  // namespace
}  // namespace mailgrid::log
