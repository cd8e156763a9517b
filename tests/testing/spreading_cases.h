// Loads the worked spreading-activation cases of
// tests/data/spreading-cases.json and converts their API messages to kernel
// types. Safe to call from any thread; results own their data except where a
// view is returned.
#ifndef ENGRAM_TESTS_TESTING_SPREADING_CASES_H_
#define ENGRAM_TESTS_TESTING_SPREADING_CASES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engram/similarity/v1/similarity.pb.h"
#include "kernels/types.h"
#include "spreading_cases.pb.h"

namespace engram::testing {

// The path of the case file relative to the repository root, where ctest runs
// the tests.
inline constexpr char kSpreadCasesPath[] = "tests/data/spreading-cases.json";

// Reads and parses the case file; unknown JSON fields are ignored. NOT_FOUND
// if the file cannot be read, INVALID_ARGUMENT if it does not parse.
absl::StatusOr<std::vector<SpreadCase>> LoadSpreadCases(
    const std::string& path);

// The API's params with its defaults (max_hops 4, exponential rate 0.7,
// threshold 0.01, max_activation 1.0) where a field is absent.
kernels::SpreadParams ToKernelParams(
    const engram::similarity::v1::SpreadParams& params);

// A view of the message's arrays; the message must outlive it.
kernels::GraphView ToGraphView(const engram::similarity::v1::Graph& graph);

std::vector<kernels::SpreadSeed> ToSeeds(const SpreadCase& spread_case);

}  // namespace engram::testing

#endif  // ENGRAM_TESTS_TESTING_SPREADING_CASES_H_
