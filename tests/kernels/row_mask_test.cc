#include "kernels/row_mask.h"

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/types.h"
#include "tests/testing/random_data.h"

namespace engram::kernels {
namespace {

class RowMaskTest : public ::testing::Test {};

TEST_F(RowMaskTest, CountsWalksAndSkipsLikeTheBits) {
  const size_t rows = 700;
  uint64_t seed = 1;
  for (double density : {0.0, 0.01, 0.3, 0.5, 1.0}) {
    for (size_t offset : {size_t{0}, size_t{1}, size_t{63}, size_t{64},
                          size_t{65}, size_t{200}}) {
      SCOPED_TRACE(::testing::Message()
                   << "density " << density << " offset " << offset);
      const testing::OwnedRowMask owned =
          testing::RandomRowMask(rows, density, offset, ++seed);
      const std::vector<bool>& admitted = owned.admitted;
      const RowMask mask = owned.mask();
      for (size_t begin : {size_t{0}, size_t{3}, size_t{64}, size_t{129}}) {
        for (size_t end : {begin, begin + 1, begin + 70, rows}) {
          std::vector<uint32_t> want;
          for (size_t r = begin; r < end; ++r) {
            if (admitted[r]) want.push_back(static_cast<uint32_t>(r));
          }
          EXPECT_EQ(CountAdmitted(mask, begin, end), want.size());
          std::vector<uint32_t> got;
          AppendAdmittedRows(mask, begin, end, &got);
          EXPECT_EQ(got, want);
          for (size_t count = 0; count <= want.size() + 1; ++count) {
            const size_t expected = count == 0             ? begin
                                    : count <= want.size() ? want[count - 1] + 1
                                                           : end;
            EXPECT_EQ(SkipAdmitted(mask, begin, end, count), expected)
                << "count " << count << " of [" << begin << ", " << end << ")";
          }
        }
      }
    }
  }
}

TEST_F(RowMaskTest, AWalkStopsWhereItsFunctionSaysAndResumes) {
  const testing::OwnedRowMask owned = testing::RandomRowMask(300, 0.4, 37, 9);
  const std::vector<bool>& admitted = owned.admitted;
  std::vector<size_t> seen;
  size_t pos = 0;
  while (pos < admitted.size()) {
    size_t taken = 0;
    pos = WalkAdmitted(owned.mask(), pos, admitted.size(), [&](size_t r) {
      seen.push_back(r);
      return ++taken < 7;
    });
  }
  std::vector<size_t> want;
  for (size_t r = 0; r < admitted.size(); ++r) {
    if (admitted[r]) want.push_back(r);
  }
  EXPECT_EQ(seen, want);
}

TEST_F(RowMaskTest, AMaskThatAdmitsEveryRowCountsThemAll) {
  const RowMask all;
  EXPECT_EQ(CountAdmitted(all, 5, 17), 12u);
  EXPECT_EQ(SkipAdmitted(all, 5, 17, 3), 8u);
  EXPECT_EQ(SkipAdmitted(all, 5, 17, 30), 17u);
  std::vector<uint32_t> rows;
  AppendAdmittedRows(all, 2, 5, &rows);
  EXPECT_EQ(rows, (std::vector<uint32_t>{2, 3, 4}));
}

TEST_F(RowMaskTest, SlicesKeepTheirRowsBits) {
  const testing::OwnedRowMask owned = testing::RandomRowMask(500, 0.5, 3, 11);
  const std::vector<bool>& admitted = owned.admitted;
  const RowMask slice = owned.mask().Rows(100, 333);
  EXPECT_EQ(slice.rows, 233u);
  for (size_t r = 0; r < slice.rows; ++r) {
    EXPECT_EQ(slice.test(r), admitted[100 + r]) << r;
  }
  EXPECT_EQ(CountAdmitted(slice, 0, slice.rows),
            CountAdmitted(owned.mask(), 100, 333));
}

TEST_F(RowMaskTest, PackedMasksStartAtBitZeroAndFindEachAdmittedRow) {
  uint64_t seed = 20;
  for (size_t rows : {size_t{1}, size_t{64}, size_t{65}, size_t{1000}}) {
    for (size_t offset : {size_t{0}, size_t{5}, size_t{64}, size_t{127}}) {
      for (double density : {0.0, 0.2, 1.0}) {
        SCOPED_TRACE(::testing::Message() << rows << " rows, offset " << offset
                                          << ", density " << density);
        const testing::OwnedRowMask owned =
            testing::RandomRowMask(rows, density, offset, ++seed);
        const PackedRowMask packed = PackRowMask(owned.mask(), rows);
        ASSERT_EQ(packed.words.size(), (rows + 63) / 64);
        ASSERT_EQ(packed.admitted, owned.count());
        size_t c = 0;
        for (size_t r = 0; r < packed.words.size() * 64; ++r) {
          const bool bit = (packed.words[r / 64] >> (r % 64)) & 1;
          ASSERT_EQ(bit, r < rows && owned.admitted[r]) << "row " << r;
          if (r % 64 == 0) {
            ASSERT_EQ(packed.first[r / 64], c);
          }
          if (bit) {
            ASSERT_EQ(packed.Row(c), r) << "admitted row " << c;
            ++c;
          }
        }
      }
    }
  }
  const PackedRowMask all = PackRowMask(RowMask{}, 70);
  EXPECT_EQ(all.admitted, 70u);
  EXPECT_EQ(all.Row(69), 69u);
}

TEST_F(RowMaskTest, AMaskMustCoverTheTargetRows) {
  const testing::OwnedRowMask owned =
      testing::RowMaskOf(std::vector<bool>(10, true), 0);
  EXPECT_TRUE(CheckRowMask(owned.mask(), 10).ok());
  EXPECT_TRUE(CheckRowMask(RowMask{}, 123).ok());
  const absl::Status status = CheckRowMask(owned.mask(), 11);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "the row mask covers 10 rows and the targets have 11");
}

}  // namespace
}  // namespace engram::kernels
