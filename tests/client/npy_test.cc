// .npy reading and writing: round trips for each supported layout and
// version, files crafted byte by byte the way numpy writes them, and every
// rejected input with the message that says why.
#include "client/npy.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class NpyTest : public ::testing::Test {
 protected:
  static std::string TempPath(const std::string& name) {
    return ::testing::TempDir() + "/" + name;
  }

  // A .npy file assembled independently of EncodeNpy: magic, version, the
  // header length in 2 (v1) or 4 (v2, v3) little-endian bytes, the header
  // padded with spaces to 64 bytes and ended by '\n', then `data`.
  static std::string Craft(int major, const std::string& dict,
                           const std::string& data) {
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
    return bytes + header + data;
  }

  // Little-endian float32 bytes.
  static std::string Floats(const std::vector<float>& values) {
    std::string bytes;
    for (float v : values) {
      uint32_t bits;
      std::memcpy(&bits, &v, sizeof(bits));
      for (int i = 0; i < 4; ++i) {
        bytes += static_cast<char>((bits >> (8 * i)) & 0xff);
      }
    }
    return bytes;
  }

  static absl::StatusOr<FloatMatrix> ReadBytes(const std::string& name,
                                               const std::string& bytes) {
    const std::string path = TempPath(name);
    std::ofstream(path, std::ios::binary) << bytes;
    return ReadNpyFile(path);
  }

  static void ExpectRejected(const std::string& name, const std::string& bytes,
                             const std::string& message) {
    auto matrix = ReadBytes(name, bytes);
    EXPECT_EQ(matrix.status().code(), absl::StatusCode::kInvalidArgument)
        << name << ": " << matrix.status();
    EXPECT_THAT(matrix.status().message(), HasSubstr(message)) << name;
    EXPECT_THAT(matrix.status().message(), HasSubstr(name)) << name;
  }

  static constexpr const char* kDict23 =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
};

TEST_F(NpyTest, RoundTrips2dInEveryVersion) {
  const FloatMatrix matrix{2, 3, {1.5f, -2.0f, 0.0f, -0.0f, 1e-30f, 3e30f}};
  for (int version : {1, 2, 3}) {
    const std::string path =
        TempPath("round_trip_v" + std::to_string(version) + ".npy");
    NpyWriteOptions options;
    options.major_version = version;
    ASSERT_TRUE(WriteNpyFile(path, matrix, options).ok());
    auto read = ReadNpyFile(path);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->rows, 2u);
    EXPECT_EQ(read->cols, 3u);
    ASSERT_EQ(read->values.size(), matrix.values.size());
    // Bit-exact, so -0.0 stays negative zero.
    EXPECT_EQ(std::memcmp(read->values.data(), matrix.values.data(),
                          matrix.values.size() * sizeof(float)),
              0);
  }
}

TEST_F(NpyTest, RoundTrips1dAsOneRow) {
  const FloatMatrix matrix{1, 4, {1, 2, 3, 4}};
  NpyWriteOptions options;
  options.one_dimensional = true;
  const std::string path = TempPath("round_trip_1d.npy");
  ASSERT_TRUE(WriteNpyFile(path, matrix, options).ok());
  auto read = ReadNpyFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->rows, 1u);
  EXPECT_EQ(read->cols, 4u);
  EXPECT_THAT(read->values, ElementsAre(1, 2, 3, 4));
}

TEST_F(NpyTest, EncodedHeaderIsTheOneNumpyWrites) {
  auto bytes = EncodeNpy(FloatMatrix{2, 3, std::vector<float>(6, 1.0f)});
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, Craft(1, kDict23, Floats(std::vector<float>(6, 1.0f))));

  NpyWriteOptions options;
  options.major_version = 2;
  options.one_dimensional = true;
  bytes = EncodeNpy(FloatMatrix{1, 2, {1, 2}}, options);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(
      *bytes,
      Craft(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
            Floats({1, 2})));
}

TEST_F(NpyTest, ReadsHandCraftedV1AndV2Files) {
  const std::string data = Floats({1, 2, 3, 4, 5, 6});
  for (int version : {1, 2}) {
    auto matrix = ReadBytes("crafted_v" + std::to_string(version) + ".npy",
                            Craft(version, kDict23, data));
    ASSERT_TRUE(matrix.ok()) << matrix.status();
    EXPECT_EQ(matrix->rows, 2u);
    EXPECT_EQ(matrix->cols, 3u);
    EXPECT_THAT(matrix->values, ElementsAre(1, 2, 3, 4, 5, 6));
  }
}

TEST_F(NpyTest, AcceptsHeaderVariantsNumpyHasWritten) {
  // Key order, double quotes, no trailing comma, Python 2 long integers, no
  // alignment padding, and bytes after the data (ignored, as numpy.load does).
  const std::string data = Floats({1, 2, 3, 4, 5, 6});
  for (const std::string& dict :
       {std::string("{\"shape\": (2,3), \"fortran_order\": False, "
                    "\"descr\": \"<f4\"}"),
        std::string(
            "{'descr':'<f4','fortran_order':False,'shape':(2L, 3L)}")}) {
    auto matrix = DecodeNpy(Craft(1, dict, data) + "trailing");
    ASSERT_TRUE(matrix.ok()) << dict << ": " << matrix.status();
    EXPECT_EQ(matrix->rows, 2u);
    EXPECT_EQ(matrix->cols, 3u);
  }
  std::string unpadded("\x93NUMPY\x01\x00", 8);
  const std::string header = std::string(kDict23) + "\n";
  unpadded += static_cast<char>(header.size());
  unpadded += '\0';
  auto matrix = DecodeNpy(unpadded + header + data);
  ASSERT_TRUE(matrix.ok()) << matrix.status();
  EXPECT_THAT(matrix->values, ElementsAre(1, 2, 3, 4, 5, 6));
}

TEST_F(NpyTest, ReadsEmptyArrays) {
  auto matrix = DecodeNpy(Craft(
      1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }", ""));
  ASSERT_TRUE(matrix.ok()) << matrix.status();
  EXPECT_EQ(matrix->rows, 0u);
  EXPECT_EQ(matrix->cols, 3u);
  EXPECT_TRUE(matrix->values.empty());
}

TEST_F(NpyTest, RejectsWrongMagic) {
  ExpectRejected("magic.npy", "PK\x03\x04 this is a zip file",
                 "not a .npy file: wrong magic");
  ExpectRejected("empty.npy", "", "wrong magic");
}

TEST_F(NpyTest, RejectsUnsupportedVersion) {
  std::string bytes = Craft(1, kDict23, Floats({1, 2, 3, 4, 5, 6}));
  bytes[6] = 4;
  ExpectRejected("version.npy", bytes, "unsupported .npy format version 4.0");
}

TEST_F(NpyTest, RejectsOtherDtypesNamingThem) {
  ExpectRejected(
      "f8.npy",
      Craft(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
            std::string(16, '\0')),
      "unsupported dtype '<f8': only little-endian float32 ('<f4')");
  ExpectRejected(
      "big_endian.npy",
      Craft(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
            std::string(8, '\0')),
      "unsupported dtype '>f4'");
  ExpectRejected(
      "int.npy",
      Craft(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }",
            std::string(8, '\0')),
      "astype('<f4')");
  ExpectRejected("structured.npy",
                 Craft(1,
                       "{'descr': [('a', '<f4')], 'fortran_order': False, "
                       "'shape': (2,), }",
                       std::string(8, '\0')),
                 "structured arrays are not supported");
}

// Little-endian integer bytes of `width` bytes each.
std::string Ints(const std::vector<int64_t>& values, int width) {
  std::string bytes;
  for (int64_t v : values) {
    const auto u = static_cast<uint64_t>(v);
    for (int i = 0; i < width; ++i) {
      bytes += static_cast<char>((u >> (8 * i)) & 0xff);
    }
  }
  return bytes;
}

std::string IdsDict(const std::string& descr, const std::string& shape) {
  return "{'descr': '" + descr +
         "', 'fortran_order': False, 'shape': " + shape + ", }";
}

TEST_F(NpyTest, ReadsIdsOfEveryIntegerWidthAndSign) {
  const uint64_t big = uint64_t{1} << 63 | 12345;
  auto u8 = DecodeNpyIds(Craft(1, IdsDict("<u8", "(3,)"),
                               Ints({7, 0, static_cast<int64_t>(big)}, 8)));
  ASSERT_TRUE(u8.ok()) << u8.status();
  EXPECT_THAT(*u8, ElementsAre(7u, 0u, big));
  auto i8 = DecodeNpyIds(
      Craft(2, IdsDict("<i8", "(2, 1)"), Ints({int64_t{1} << 40, 3}, 8)));
  ASSERT_TRUE(i8.ok()) << i8.status();
  EXPECT_THAT(*i8, ElementsAre(uint64_t{1} << 40, 3u));
  auto u4 =
      DecodeNpyIds(Craft(1, IdsDict("<u4", "(2,)"), Ints({0xffffffff, 9}, 4)));
  ASSERT_TRUE(u4.ok()) << u4.status();
  EXPECT_THAT(*u4, ElementsAre(0xffffffffu, 9u));
  auto i4 = DecodeNpyIds(Craft(1, IdsDict("=i4", "(1,)"), Ints({42}, 4)));
  ASSERT_TRUE(i4.ok()) << i4.status();
  EXPECT_THAT(*i4, ElementsAre(42u));
  auto empty = DecodeNpyIds(Craft(1, IdsDict("<u8", "(0,)"), ""));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->empty());
}

TEST_F(NpyTest, RejectsIdsOfTheWrongTypeShapeOrSign) {
  auto expect = [](const std::string& bytes, const std::string& message) {
    auto ids = DecodeNpyIds(bytes);
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument)
        << message;
    EXPECT_THAT(ids.status().message(), HasSubstr(message));
  };
  expect(Craft(1, IdsDict("<f4", "(2,)"), Floats({1, 2})),
         "unsupported dtype '<f4' for ids");
  expect(Craft(1, IdsDict(">u8", "(1,)"), Ints({1}, 8)),
         "unsupported dtype '>u8'");
  expect(Craft(1, IdsDict("<u2", "(1,)"), Ints({1}, 2)),
         "unsupported dtype '<u2'");
  expect(Craft(1, IdsDict("<u8", "(2, 2)"), Ints({1, 2, 3, 4}, 8)),
         "unsupported shape (2, 2) for ids");
  expect(Craft(1, IdsDict("<i8", "(3,)"), Ints({1, -5, 2}, 8)),
         "ids[1] is negative");
  expect(Craft(1, IdsDict("<u8", "(3,)"), Ints({1, 2}, 8)),
         "truncated data: shape (3,) needs 24 bytes, the file has 16");
  const std::string path = TempPath("ids_missing.npy");
  EXPECT_EQ(ReadNpyIdsFile(path).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(NpyTest, RejectsFortranOrder) {
  ExpectRejected(
      "fortran.npy",
      Craft(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
            Floats({1, 2, 3, 4, 5, 6})),
      "fortran_order True is not supported");
}

TEST_F(NpyTest, RejectsMoreThanTwoDimensionsAndScalars) {
  ExpectRejected(
      "3d.npy",
      Craft(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }",
            Floats(std::vector<float>(8, 0.0f))),
      "3-dimensional arrays are not supported");
  ExpectRejected(
      "0d.npy",
      Craft(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
            Floats({1})),
      "0-dimensional arrays are not supported");
}

TEST_F(NpyTest, RejectsTruncatedData) {
  ExpectRejected(
      "short_data.npy", Craft(1, kDict23, Floats({1, 2, 3, 4, 5})),
      "truncated data: shape (2, 3) needs 24 bytes, the file has 20");
  ExpectRejected("partial_float.npy",
                 Craft(2, kDict23, Floats({1, 2, 3, 4, 5}) + "ab"),
                 "truncated data");
}

TEST_F(NpyTest, RejectsTruncatedHeader) {
  const std::string whole = Craft(1, kDict23, "");
  ExpectRejected("short_header.npy", whole.substr(0, 40),
                 "truncated .npy file: header needs 118 bytes, 30 remain");
  ExpectRejected("no_length.npy", whole.substr(0, 9),
                 "incomplete header length");
  ExpectRejected("no_version.npy", whole.substr(0, 7), "no format version");
}

TEST_F(NpyTest, RejectsUnparsableHeaders) {
  const std::string data = Floats({1, 2});
  for (const char* dict : {
           "not a dict",
           "{'descr' '<f4', 'fortran_order': False, 'shape': (2,), }",
           "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (2; 3), }",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }",
           "{'descr': '<f4', 'fortran_order': False, 'shape': 2, }",
           "{'descr': '<f4, 'fortran_order': False, 'shape': (2,), }",
           "{'descr': '<f4', 'fortran_order': False}",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), "
           "'extra': 1}",
           "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
           "'shape': (2,)}",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x",
       }) {
    auto matrix = DecodeNpy(Craft(1, dict, data));
    EXPECT_EQ(matrix.status().code(), absl::StatusCode::kInvalidArgument)
        << dict;
    EXPECT_THAT(matrix.status().message(),
                HasSubstr("cannot parse .npy header"))
        << dict;
  }
  ExpectRejected("header.npy",
                 Craft(1, "{'descr': '<f4', 'fortran_order': False}", data),
                 "cannot parse .npy header: missing key 'shape'");
}

TEST_F(NpyTest, MissingFileIsNotFound) {
  auto matrix = ReadNpyFile(TempPath("no_such_file.npy"));
  EXPECT_EQ(matrix.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(matrix.status().message(), HasSubstr("no_such_file.npy"));
}

TEST_F(NpyTest, EncodeRejectsInconsistentInput) {
  NpyWriteOptions one_dimensional;
  one_dimensional.one_dimensional = true;
  EXPECT_EQ(
      EncodeNpy(FloatMatrix{2, 1, {1, 2}}, one_dimensional).status().code(),
      absl::StatusCode::kInvalidArgument);
  NpyWriteOptions version4;
  version4.major_version = 4;
  EXPECT_EQ(EncodeNpy(FloatMatrix{1, 1, {1}}, version4).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeNpy(FloatMatrix{2, 2, {1, 2, 3}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      EncodeNpy(FloatMatrix{std::numeric_limits<std::size_t>::max(), 2, {1, 2}})
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace engram::client
