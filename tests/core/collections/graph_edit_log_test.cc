#include "core/collections/graph_edit_log.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/collections/test_util.h"

namespace engram::collections {
namespace {

using ::engram::collections::testing::ReadAll;
using ::engram::collections::testing::TestDir;
using ::engram::collections::testing::WriteAll;
using ::testing::HasSubstr;

GraphEdit SampleEdit() {
  GraphEdit edit;
  edit.add_nodes = 2;
  edit.remove_edges = {{0, 1}, {3, 4}};
  edit.set_weights = {{1, 2, 0.5f}};
  edit.add_edges = {{4, 0, 0.25f}, {0, 4, 1.0f}};
  return edit;
}

void ExpectSameEdit(const GraphEdit& a, const GraphEdit& b) {
  EXPECT_EQ(a.add_nodes, b.add_nodes);
  EXPECT_EQ(a.remove_edges, b.remove_edges);
  ASSERT_EQ(a.set_weights.size(), b.set_weights.size());
  for (size_t i = 0; i < a.set_weights.size(); ++i) {
    EXPECT_EQ(a.set_weights[i].source, b.set_weights[i].source);
    EXPECT_EQ(a.set_weights[i].target, b.set_weights[i].target);
    EXPECT_EQ(a.set_weights[i].weight, b.set_weights[i].weight);
  }
  ASSERT_EQ(a.add_edges.size(), b.add_edges.size());
  for (size_t i = 0; i < a.add_edges.size(); ++i) {
    EXPECT_EQ(a.add_edges[i].source, b.add_edges[i].source);
    EXPECT_EQ(a.add_edges[i].target, b.add_edges[i].target);
    EXPECT_EQ(a.add_edges[i].weight, b.add_edges[i].weight);
  }
}

class GraphEditLogTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = TestDir() + "/g.edits"; }
  storage::GraphEditLogHeader Header() const {
    storage::GraphEditLogHeader header;
    header.set_name("g");
    header.set_base_version(7);
    auto* key = header.add_committed_keys();
    key->set_key("k");
    key->set_version(6);
    return header;
  }
  std::string path_;
};

TEST_F(GraphEditLogTest, AnUpdateRoundTrips) {
  const storage::GraphEdit stored = EncodeGraphEdit(SampleEdit(), 9, "key");
  EXPECT_EQ(stored.version(), 9u);
  EXPECT_EQ(stored.idempotency_key(), "key");
  auto decoded = DecodeGraphEdit(stored, "here");
  ASSERT_TRUE(decoded.ok());
  ExpectSameEdit(*decoded, SampleEdit());
  storage::GraphEdit uneven = stored;
  uneven.add_set_weights(1.0f);
  auto bad = DecodeGraphEdit(uneven, "here");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(bad.status().message(), HasSubstr("here"));
}

TEST_F(GraphEditLogTest, AppendsAreReadBackInOrder) {
  ASSERT_TRUE(WriteGraphEditLog(path_, Header(), {}).ok());
  auto writer = GraphEditLogWriter::Open(path_);
  ASSERT_TRUE(writer.ok());
  for (uint64_t v = 8; v < 11; ++v) {
    ASSERT_TRUE((*writer)->Append(EncodeGraphEdit(SampleEdit(), v, "")).ok());
  }
  auto log = ReadGraphEditLog(path_);
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ(log->header.name(), "g");
  EXPECT_EQ(log->header.base_version(), 7u);
  ASSERT_EQ(log->edits.size(), 3u);
  EXPECT_EQ(log->edits[2].version(), 10u);
  EXPECT_FALSE(log->torn);
  EXPECT_EQ(log->valid_bytes, ReadAll(path_).size());
  EXPECT_EQ((*writer)->size(), log->valid_bytes);
}

TEST_F(GraphEditLogTest, ATornLastRecordIsDroppedAndCutOff) {
  ASSERT_TRUE(
      WriteGraphEditLog(path_, Header(), {EncodeGraphEdit(SampleEdit(), 8, "")})
          .ok());
  const std::string whole = ReadAll(path_);
  for (const std::string& tail :
       {std::string("\x05\x00", 2),                           // a cut header
        std::string("\x30\x00\x00\x00\x01\x02\x03\x04x", 9),  // a cut payload
        std::string(24, '\0')}) {                             // zeros
    WriteAll(path_, whole + tail);
    auto log = ReadGraphEditLog(path_);
    ASSERT_TRUE(log.ok()) << log.status();
    EXPECT_TRUE(log->torn);
    EXPECT_EQ(log->edits.size(), 1u);
    EXPECT_EQ(log->valid_bytes, whole.size());
    auto writer = GraphEditLogWriter::Open(path_, log->valid_bytes);
    ASSERT_TRUE(writer.ok());
    EXPECT_EQ(ReadAll(path_), whole);
  }
}

TEST_F(GraphEditLogTest, DamageIsDataLossNamingTheFile) {
  ASSERT_TRUE(WriteGraphEditLog(path_, Header(),
                                {EncodeGraphEdit(SampleEdit(), 8, ""),
                                 EncodeGraphEdit(SampleEdit(), 9, "")})
                  .ok());
  std::string bytes = ReadAll(path_);
  const size_t first = 8 + 8 + Header().ByteSizeLong();
  std::string damaged = bytes;
  damaged[first + 10] ^= 0x40;  // inside the first update, another follows
  WriteAll(path_, damaged);
  auto log = ReadGraphEditLog(path_);
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(log.status().message(), HasSubstr(path_));
  EXPECT_THAT(log.status().message(), HasSubstr("checksum"));

  WriteAll(path_, "ENGRMCOL" + bytes.substr(8));
  EXPECT_THAT(ReadGraphEditLog(path_).status().message(),
              HasSubstr("not a graph edit log"));
  WriteAll(path_, "ENGRMGLG");
  EXPECT_THAT(ReadGraphEditLog(path_).status().message(),
              HasSubstr("no header record"));
  EXPECT_EQ(ReadGraphEditLog(path_ + ".absent").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace engram::collections
