#include "client/random_data.h"

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/random_values.h"

namespace engram::client {
namespace {

constexpr const char* kFormat = "expected Q,N,D (three positive integers)";

}  // namespace

absl::StatusOr<RandomShape> ParseRandomShape(absl::string_view text) {
  const std::vector<absl::string_view> parts = absl::StrSplit(text, ',');
  if (parts.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat(kFormat, ", got '", text, "'"));
  }
  static constexpr const char* kNames[] = {"Q", "N", "D"};
  std::size_t values[3];
  for (int i = 0; i < 3; ++i) {
    const absl::string_view part = absl::StripAsciiWhitespace(parts[i]);
    uint64_t value = 0;
    if (part.empty() || part[0] == '-' || part[0] == '+' ||
        !absl::SimpleAtoi(part, &value)) {
      return absl::InvalidArgumentError(
          absl::StrCat(kFormat, ", got '", text, "': ", kNames[i], " '", part,
                       "' is not a positive integer"));
    }
    if (value == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          kFormat, ", got '", text, "': ", kNames[i], " must be at least 1"));
    }
    if (value > kMaxRandomValues) {
      return absl::InvalidArgumentError(
          absl::StrCat(kFormat, ", got '", text, "': ", kNames[i], " is above ",
                       kMaxRandomValues));
    }
    values[i] = static_cast<std::size_t>(value);
  }
  RandomShape shape{values[0], values[1], values[2]};
  // Each factor is at most 2^28, so the products cannot overflow 64 bits.
  const uint64_t dim = shape.dim;
  if (shape.queries * dim > kMaxRandomValues ||
      shape.targets * dim > kMaxRandomValues) {
    return absl::InvalidArgumentError(
        absl::StrCat("random data '", text,
                     "' is too large: Q*D and N*D must each be at "
                     "most ",
                     kMaxRandomValues));
  }
  return shape;
}

FloatMatrix RandomMatrix(std::size_t rows, std::size_t cols,
                         std::mt19937_64& engine) {
  FloatMatrix matrix;
  matrix.rows = rows;
  matrix.cols = cols;
  matrix.values.resize(rows * cols);
  base::FillSymmetricUnit(engine, absl::MakeSpan(matrix.values));
  return matrix;
}

RandomCosineData MakeRandomCosineData(const RandomShape& shape, uint64_t seed) {
  std::mt19937_64 engine(seed);
  RandomCosineData data;
  data.queries = RandomMatrix(shape.queries, shape.dim, engine);
  data.targets = RandomMatrix(shape.targets, shape.dim, engine);
  return data;
}

}  // namespace engram::client
