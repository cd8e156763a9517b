#include "core/logging.h"

#include "gtest/gtest.h"

namespace engram::core {
namespace {

TEST(LoggingTest, ParsesLevelNamesCaseInsensitively) {
  EXPECT_EQ(*ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogLevel("WARNING"), LogLevel::kWarning);
  EXPECT_FALSE(ParseLogLevel("loud").ok());
}

TEST(LoggingTest, LevelFiltersLowerLevels) {
  SetLogLevel(LogLevel::kWarning);
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
  SetLogLevel(LogLevel::kInfo);
  EXPECT_TRUE(LogEnabled(LogLevel::kInfo));
}

TEST(LoggingTest, EscapesJsonSpecialCharacters) {
  EXPECT_EQ(JsonEscape("a\"b\\c\nd\x01"), "a\\\"b\\\\c\\nd\\u0001");
}

TEST(LoggingTest, WritesOneJsonObjectPerLine) {
  ::testing::internal::CaptureStderr();
  Log(LogLevel::kWarning, "breaker \"open\"", {{"reason", "oom"}});
  const std::string line = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(line.front(), '{');
  EXPECT_EQ(line.substr(line.size() - 2), "}\n");
  EXPECT_NE(line.find("\"level\":\"warning\""), std::string::npos);
  EXPECT_NE(line.find("\"event\":\"breaker \\\"open\\\"\""), std::string::npos);
  EXPECT_NE(line.find("\"reason\":\"oom\""), std::string::npos);
}

}  // namespace
}  // namespace engram::core
