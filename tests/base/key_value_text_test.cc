#include "base/key_value_text.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::base {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

class KeyValueTextTest : public ::testing::Test {};

TEST_F(KeyValueTextTest, SkipsCommentsAndBlankLinesKeepingLineNumbers) {
  absl::StatusOr<std::vector<KeyValueLine>> lines = LexKeyValueText(
      "# a comment\n"
      "\n"
      "   \t\n"
      "alpha = 1   # trailing comment\n"
      "  beta=two words  \r\n",
      "test file");
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_THAT(*lines, SizeIs(2));
  EXPECT_EQ((*lines)[0].number, 4);
  EXPECT_FALSE((*lines)[0].is_section);
  EXPECT_EQ((*lines)[0].key, "alpha");
  EXPECT_EQ((*lines)[0].value, "1");
  EXPECT_EQ((*lines)[1].number, 5);
  EXPECT_EQ((*lines)[1].key, "beta");
  EXPECT_EQ((*lines)[1].value, "two words");
}

TEST_F(KeyValueTextTest, EmptyTextHasNoLines) {
  absl::StatusOr<std::vector<KeyValueLine>> lines = LexKeyValueText("", "t");
  ASSERT_TRUE(lines.ok());
  EXPECT_THAT(*lines, IsEmpty());
}

TEST_F(KeyValueTextTest, SplitsSectionHeadersIntoNameAndArgs) {
  absl::StatusOr<std::vector<KeyValueLine>> lines = LexKeyValueText(
      "[profile  H100 NVL ]\n"
      "[ graph\tknowledge]\n"
      "[profile]\n"
      "[]\n",
      "t");
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_THAT(*lines, SizeIs(4));
  for (const KeyValueLine& line : *lines) EXPECT_TRUE(line.is_section);
  EXPECT_EQ((*lines)[0].section, "profile");
  EXPECT_EQ((*lines)[0].args, "H100 NVL");
  EXPECT_EQ((*lines)[1].section, "graph");
  EXPECT_EQ((*lines)[1].args, "knowledge");
  EXPECT_EQ((*lines)[2].section, "profile");
  EXPECT_EQ((*lines)[2].args, "");
  EXPECT_EQ((*lines)[3].section, "");
  EXPECT_EQ((*lines)[3].number, 4);
}

TEST_F(KeyValueTextTest, TheFirstEqualsSignSplitsAPair) {
  absl::StatusOr<std::vector<KeyValueLine>> lines =
      LexKeyValueText("path = a=b.npy", "t");
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_THAT(*lines, SizeIs(1));
  EXPECT_EQ((*lines)[0].key, "path");
  EXPECT_EQ((*lines)[0].value, "a=b.npy");
}

TEST_F(KeyValueTextTest, RejectsMalformedLinesNamingThem) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"a = 1\n[profile H100", "my file line 2: unclosed '['"},
      {"\n\nno_equals_sign", "my file line 3: expected key = value"},
      {"= 5", "my file line 1: expected key = value"},
      {"key =   # only a comment", "my file line 1: key has no value"},
      {"value = a # b\nbad", "my file line 2:"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<KeyValueLine>> lines =
        LexKeyValueText(c.text, "my file");
    EXPECT_EQ(lines.status().code(), absl::StatusCode::kInvalidArgument)
        << c.text;
    EXPECT_THAT(lines.status().message(), HasSubstr(c.message)) << c.text;
  }
}

TEST_F(KeyValueTextTest, LineErrorReadsLikeTheLexers) {
  const absl::Status status = KeyValueLineError("declarations", 7, "bad NAME");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "declarations line 7: bad NAME");
}

}  // namespace
}  // namespace engram::base
