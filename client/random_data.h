// Seeded random cosine inputs for `engram-cli cosine --random=Q,N,D --seed=S`,
// so load tests and demos need no data files and reruns send identical data.
//
// Values are uniform on [-1, 1) and depend only on the seed: they come from
// std::mt19937_64 (whose output the C++ standard fixes) through an explicit
// bits-to-float mapping instead of std::uniform_real_distribution, whose
// algorithm differs between standard libraries. All functions are
// thread-safe.
#ifndef ENGRAM_CLIENT_RANDOM_DATA_H_
#define ENGRAM_CLIENT_RANDOM_DATA_H_

#include <cstddef>
#include <cstdint>
#include <random>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/types.h"

namespace engram::client {

// The largest number of values one generated matrix may hold (1 GiB of
// float32); far beyond what one request carries, it only stops a typo from
// exhausting memory.
inline constexpr std::size_t kMaxRandomValues = std::size_t{1} << 28;

// Q queries and N targets of dimension D.
struct RandomShape {
  std::size_t queries = 0;
  std::size_t targets = 0;
  std::size_t dim = 0;
};

// Parses "Q,N,D": three positive integers separated by commas (spaces around
// them allowed). Returns INVALID_ARGUMENT naming the problem, including a
// Q*D or N*D above kMaxRandomValues.
absl::StatusOr<RandomShape> ParseRandomShape(absl::string_view text);

// A rows x cols matrix of the next rows * cols values of `engine`.
FloatMatrix RandomMatrix(std::size_t rows, std::size_t cols,
                         std::mt19937_64& engine);

struct RandomCosineData {
  FloatMatrix queries;  // Q x D
  FloatMatrix targets;  // N x D
};

// Queries then targets, drawn from one engine seeded with `seed`.
RandomCosineData MakeRandomCosineData(const RandomShape& shape, uint64_t seed);

}  // namespace engram::client

#endif  // ENGRAM_CLIENT_RANDOM_DATA_H_
