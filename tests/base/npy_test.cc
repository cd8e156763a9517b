// The .npy parser both readers share: every format version, the header
// variants numpy has written, the byte counts a streaming reader follows,
// and each rejected input with its code and message.
#include "base/npy.h"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::base {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr const char* kDict23 =
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";

class NpyTest : public ::testing::Test {
 protected:
  // The preamble and header as numpy.save writes them: the header length in
  // 2 (v1) or 4 (v2, v3) little-endian bytes, the dict padded with spaces to
  // 64 bytes and ended by '\n'. The data, if any, is the caller's to append.
  static std::string Craft(int major, const std::string& dict) {
    const std::size_t preamble = major == 1 ? 10 : 12;
    std::string header = dict;
    while ((preamble + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::string bytes("\x93NUMPY", 6);
    bytes += static_cast<char>(major);
    bytes += '\0';
    for (std::size_t i = 0; i < preamble - 8; ++i) {
      bytes += static_cast<char>((header.size() >> (8 * i)) & 0xff);
    }
    return bytes + header;
  }

  static void ExpectRejected(const std::string& bytes, absl::StatusCode code,
                             const std::string& message) {
    absl::StatusOr<NpyHeader> header = ParseNpyHeader(bytes);
    EXPECT_EQ(header.status().code(), code) << header.status();
    EXPECT_THAT(header.status().message(), HasSubstr(message));
  }
};

TEST_F(NpyTest, ParsesEveryVersion) {
  for (int version : {1, 2, 3}) {
    const std::string preamble_and_header = Craft(version, kDict23);
    absl::StatusOr<NpyHeader> header =
        ParseNpyHeader(preamble_and_header + std::string(24, '\0'));
    ASSERT_TRUE(header.ok()) << version << ": " << header.status();
    EXPECT_EQ(header->major_version, version);
    EXPECT_EQ(header->descr, "<f4");
    EXPECT_THAT(header->shape, ElementsAre(2u, 3u));
    EXPECT_EQ(header->data_offset, preamble_and_header.size());
    EXPECT_EQ(header->data_offset % 64, 0u);
  }
}

TEST_F(NpyTest, AcceptsHeaderVariantsNumpyHasWritten) {
  // Key order, double quotes, no trailing comma, Python 2 long integers, a
  // 0-d shape, and no alignment padding.
  absl::StatusOr<NpyHeader> header =
      ParseNpyHeader(Craft(1,
                           "{\"shape\": (2,3), \"fortran_order\": False, "
                           "\"descr\": \"<u8\"}"));
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->descr, "<u8");
  EXPECT_THAT(header->shape, ElementsAre(2u, 3u));
  header = ParseNpyHeader(
      Craft(1, "{'descr':'<f4','fortran_order':False,'shape':(2L, 3L)}"));
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_THAT(header->shape, ElementsAre(2u, 3u));
  header = ParseNpyHeader(
      Craft(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }"));
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_THAT(header->shape, IsEmpty());

  std::string unpadded("\x93NUMPY\x01\x00", 8);
  const std::string dict = std::string(kDict23) + "\n";
  unpadded += static_cast<char>(dict.size());
  unpadded += '\0';
  header = ParseNpyHeader(unpadded + dict);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->data_offset, 10 + dict.size());
}

TEST_F(NpyTest, BytesNeededLeadAStreamingReaderToTheEndOfTheHeader) {
  for (int version : {1, 2, 3}) {
    const std::string header = Craft(version, kDict23);
    const std::string file = header + std::string(24, 'x');
    // What a streaming reader does: read up to what is needed, then ask
    // again, until the answer is what it holds.
    std::string prefix;
    std::vector<uint64_t> steps;
    while (true) {
      const uint64_t needed = NpyHeaderBytesNeeded(prefix);
      if (needed <= prefix.size()) break;
      steps.push_back(needed);
      prefix = file.substr(0, static_cast<std::size_t>(needed));
    }
    EXPECT_EQ(prefix, header) << version;
    if (version == 1) {
      EXPECT_THAT(steps, ElementsAre(10u, header.size()));
    } else {
      EXPECT_THAT(steps, ElementsAre(10u, 12u, header.size()));
    }
    EXPECT_TRUE(ParseNpyHeader(prefix).ok());
  }
}

TEST_F(NpyTest, BytesNeededAsksNothingMoreOfWhatIsNotNpy) {
  EXPECT_EQ(NpyHeaderBytesNeeded(""), 10u);
  EXPECT_EQ(NpyHeaderBytesNeeded("\x93NU"), 10u);
  EXPECT_EQ(NpyHeaderBytesNeeded("PK"), 2u);
  std::string version4 = Craft(1, kDict23).substr(0, 10);
  version4[6] = 4;
  EXPECT_EQ(NpyHeaderBytesNeeded(version4), 10u);
}

TEST_F(NpyTest, RejectsWrongMagicAndVersions) {
  ExpectRejected("", absl::StatusCode::kInvalidArgument,
                 "not a .npy file: wrong magic (expected \\x93NUMPY)");
  ExpectRejected("PK\x03\x04 this is a zip file",
                 absl::StatusCode::kInvalidArgument, "wrong magic");
  std::string bytes = Craft(1, kDict23);
  bytes[6] = 4;
  ExpectRejected(bytes, absl::StatusCode::kInvalidArgument,
                 "unsupported .npy format version 4.0 (supported: 1.0, 2.0, "
                 "3.0)");
  bytes = Craft(2, kDict23);
  bytes[7] = 1;
  ExpectRejected(bytes, absl::StatusCode::kInvalidArgument,
                 "unsupported .npy format version 2.1");
}

TEST_F(NpyTest, BytesEndingInsideThePreambleOrHeaderAreDataLoss) {
  const std::string whole = Craft(1, kDict23);
  ExpectRejected(whole.substr(0, 3), absl::StatusCode::kDataLoss,
                 "truncated .npy file: 3 bytes end inside the magic");
  ExpectRejected(whole.substr(0, 7), absl::StatusCode::kDataLoss,
                 "truncated .npy file: no format version after the magic");
  ExpectRejected(whole.substr(0, 9), absl::StatusCode::kDataLoss,
                 "truncated .npy file: incomplete header length");
  ExpectRejected(Craft(2, kDict23).substr(0, 11), absl::StatusCode::kDataLoss,
                 "incomplete header length");
  ExpectRejected(whole.substr(0, 40), absl::StatusCode::kDataLoss,
                 "truncated .npy file: header needs 118 bytes, 30 remain");
}

TEST_F(NpyTest, RejectsHeadersThatAreNotNumpysDict) {
  for (const char* dict : {
           "not a dict",
           "{'descr' '<f4', 'fortran_order': False, 'shape': (2,), }",
           "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (2; 3), }",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }",
           "{'descr': '<f4', 'fortran_order': False, 'shape': 2, }",
           "{'descr': '<f4', 'fortran_order': False, 'shape': "
           "(99999999999999999999,), }",
           "{'descr': '<f4, 'fortran_order': False, 'shape': (2,), }",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), "
           "'extra': 1}",
           "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
           "'shape': (2,)}",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x",
       }) {
    ExpectRejected(Craft(1, dict), absl::StatusCode::kInvalidArgument,
                   "cannot parse .npy header");
  }
  ExpectRejected(Craft(1, "{'descr': '<f4', 'fortran_order': False}"),
                 absl::StatusCode::kInvalidArgument,
                 "cannot parse .npy header: missing key 'shape' in \"{");
}

TEST_F(NpyTest, RejectsStructuredDtypesAndFortranOrder) {
  ExpectRejected(Craft(1,
                       "{'descr': [('a', '<f4')], 'fortran_order': False, "
                       "'shape': (2,), }"),
                 absl::StatusCode::kInvalidArgument,
                 "structured arrays are not supported");
  ExpectRejected(
      Craft(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }"),
      absl::StatusCode::kInvalidArgument,
      "fortran_order True is not supported: save a C-ordered array");
}

TEST_F(NpyTest, WritesShapesAsPythonDoes) {
  EXPECT_EQ(NpyShapeString({}), "()");
  EXPECT_EQ(NpyShapeString({3}), "(3,)");
  EXPECT_EQ(NpyShapeString({2, 3}), "(2, 3)");
  EXPECT_EQ(NpyShapeString({1, 2, 3}), "(1, 2, 3)");
}

TEST_F(NpyTest, ChecksForFloat32) {
  NpyHeader header;
  header.descr = "<f4";
  EXPECT_TRUE(CheckNpyFloat32(header).ok());
  for (const char* descr : {"<f8", ">f4", "=f4", "<i4"}) {
    header.descr = descr;
    const absl::Status status = CheckNpyFloat32(header);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << descr;
    EXPECT_THAT(status.message(),
                HasSubstr(std::string("unsupported dtype '") + descr +
                          "': only little-endian float32 ('<f4')"));
    EXPECT_THAT(status.message(), HasSubstr("astype('<f4')"));
  }
}

TEST_F(NpyTest, CountsTheDataBytesOfAShape) {
  NpyHeader header;
  header.shape = {2, 3};
  EXPECT_EQ(NpyDataBytes(header, 4).value(), 24u);
  header.shape = {7};
  EXPECT_EQ(NpyDataBytes(header, 8).value(), 56u);
  header.shape = {};
  EXPECT_EQ(NpyDataBytes(header, 4).value(), 4u);
  // A zero dimension empties the array, however large the others.
  header.shape = {std::numeric_limits<uint64_t>::max(), 0};
  EXPECT_EQ(NpyDataBytes(header, 4).value(), 0u);

  header.shape = {std::numeric_limits<uint64_t>::max() / 2, 3};
  absl::StatusOr<uint64_t> bytes = NpyDataBytes(header, 1);
  EXPECT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bytes.status().message(), HasSubstr("is too large to address"));
  header.shape = {std::numeric_limits<std::size_t>::max() / 4 + 1};
  EXPECT_EQ(NpyDataBytes(header, 4).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(NpyDataBytes(header, 2).ok());
}

TEST_F(NpyTest, ChecksThatTheDataIsThere) {
  NpyHeader header;
  header.shape = {2, 3};
  EXPECT_TRUE(CheckNpyDataSize(header, 4, 24).ok());
  EXPECT_TRUE(CheckNpyDataSize(header, 4, 100).ok());  // the rest is ignored
  const absl::Status short_data = CheckNpyDataSize(header, 4, 20);
  EXPECT_EQ(short_data.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(short_data.message(),
            "truncated data: shape (2, 3) needs 24 bytes, the file has 20");
  header.shape = {std::numeric_limits<uint64_t>::max(), 2};
  EXPECT_EQ(CheckNpyDataSize(header, 4, 0).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace engram::base
