// Labels files: one RowLabels in protobuf JSON per line, blank lines for rows
// without labels, and each error with the line (and field) it names.
#include "client/row_labels_file.h"

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::client {
namespace {

namespace v1 = ::engram::similarity::v1;
using ::testing::HasSubstr;
using ::testing::Not;

class RowLabelsFileTest : public ::testing::Test {
 protected:
  static void ExpectError(const std::string& text, const std::string& message) {
    auto rows = ParseRowLabelsJsonLines(text);
    EXPECT_EQ(rows.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(rows.status().message(), HasSubstr(message)) << text;
    // The CLI prints an error as one line.
    EXPECT_THAT(rows.status().message(), Not(HasSubstr("\n"))) << text;
  }
};

TEST_F(RowLabelsFileTest, ParsesOneRowLabelsPerLine) {
  auto rows = ParseRowLabelsJsonLines(
      "{\"tags\":[{\"key\":\"kind\",\"text\":\"episode\"},{\"key\":\"user\","
      "\"integer\":\"42\"}],\"attributes\":{\"t\":1.5}}\n"
      "\n"
      "{\"tags\":[{\"key\":\"user\",\"integer\":7}]}\n");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 3u);
  const v1::RowLabels& first = (*rows)[0];
  ASSERT_EQ(first.tags_size(), 2);
  EXPECT_EQ(first.tags(0).key(), "kind");
  EXPECT_EQ(first.tags(0).text(), "episode");
  EXPECT_EQ(first.tags(1).key(), "user");
  EXPECT_EQ(first.tags(1).value_case(), v1::Tag::kInteger);
  EXPECT_EQ(first.tags(1).integer(), 42);
  EXPECT_EQ(first.attributes().at("t"), 1.5);
  // A blank line is a row without labels.
  EXPECT_EQ((*rows)[1].ByteSizeLong(), 0u);
  EXPECT_EQ((*rows)[2].tags(0).integer(), 7);
}

TEST_F(RowLabelsFileTest, CountsRowsByLineEnds) {
  EXPECT_EQ(ParseRowLabelsJsonLines("")->size(), 0u);
  // One blank line: one row without labels.
  EXPECT_EQ(ParseRowLabelsJsonLines("\n")->size(), 1u);
  EXPECT_EQ(ParseRowLabelsJsonLines("{}")->size(), 1u);
  EXPECT_EQ(ParseRowLabelsJsonLines("{}\n")->size(), 1u);
  // Trailing blank lines are rows, CRLF line ends are accepted.
  auto rows = ParseRowLabelsJsonLines(
      "{\"tags\":[{\"key\":\"a\",\"text\":\"b\"}]}\r\n\r\n  \r\n");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_EQ((*rows)[0].tags(0).text(), "b");
}

TEST_F(RowLabelsFileTest, NamesTheLineAndTheField) {
  ExpectError("{}\n\n{\"tags\":[{\"key\":\"user\",\"integer\":\"x\"}]}\n",
              "line 3: ");
  ExpectError("{\"tags\":[{\"key\":\"user\",\"integer\":\"x\"}]}",
              "tags[0].integer");
  ExpectError("{\"tagz\":[]}", "line 1: not a RowLabels in JSON: tagz");
  ExpectError("{\"tags\":[{\"key\":\"k\",\"text\":\"a\",\"integer\":1}]}",
              "tags[0]");
  ExpectError("{\"attributes\":{\"t\":\"soon\"}}", "attributes");
  ExpectError("{}\n[1]\n", "line 2: not a RowLabels in JSON: Root element");
  ExpectError("{\"tags\":", "line 1: not a RowLabels in JSON: Unexpected end");
}

TEST_F(RowLabelsFileTest, ReadsFilesAndNamesThemInErrors) {
  const std::string path = ::testing::TempDir() + "/row_labels_ok.jsonl";
  std::ofstream(path) << "{\"attributes\":{\"t\":2}}\n\n";
  auto rows = ReadRowLabelsFile(path);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].attributes().at("t"), 2.0);

  const std::string bad = ::testing::TempDir() + "/row_labels_bad.jsonl";
  std::ofstream(bad) << "{}\n{\"tags\":[{\"kye\":\"a\"}]}\n";
  auto refused = ReadRowLabelsFile(bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      refused.status().message(),
      HasSubstr(bad + ": line 2: not a RowLabels in JSON: (tags[0]) kye"));

  EXPECT_EQ(ReadRowLabelsFile("/nonexistent/labels.jsonl").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace engram::client
