// The shared parts of the reliability load tests (soak, overload, recovery):
// a catalogue of requests from tiny to large with their float64 reference
// answers (tests/testing/reference.h), malformed requests with the status
// code docs/api.md documents for each, the check of a response against its
// reference, per-(method, code) tallies cross-checked with the server's
// engram_requests_total, latency percentiles, and resident-memory sampling
// of a process with the growth gate the soak applies to it.
//
// Cases are built once, before the load starts, so the clients only send,
// compare and count; a case is immutable afterwards and may be used from any
// number of threads at once.
#ifndef ENGRAM_TESTS_SERVER_LOAD_HARNESS_H_
#define ENGRAM_TESTS_SERVER_LOAD_HARNESS_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engram/similarity/v1/similarity.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/reference.h"

namespace engram::testing {

// Absolute tolerance of a float32 answer against the float64 reference, as
// the server end-to-end tests use (1e-5, relative above magnitude 1).
inline constexpr double kLoadTolerance = 1e-5;

// The server limits the malformed "too large" cases are built against: the
// load tests start the server with LoadLimitFlags(), and every valid case
// stays well inside them.
inline constexpr uint64_t kLoadMaxSeeds = 4096;
inline constexpr uint64_t kLoadMaxOutputElements = uint64_t{1} << 20;
std::vector<std::string> LoadLimitFlags();

enum class LoadMethod { kBatchCosine, kSpread };
// "BatchCosine" or "Spread", the `method` label of engram_requests_total.
const char* LoadMethodName(LoadMethod method);

enum class SizeClass { kTiny, kSmall, kMedium, kLarge };
const char* SizeClassName(SizeClass size);

// One request and what the server must answer.
struct LoadCase {
  std::string name;
  LoadMethod method = LoadMethod::kBatchCosine;
  SizeClass size = SizeClass::kTiny;
  engram::similarity::v1::BatchCosineRequest cosine;  // kBatchCosine
  engram::similarity::v1::SpreadRequest spread;       // kSpread
  // OK for a valid case; else the documented code and a fragment its
  // message must contain (the field it names).
  absl::StatusCode expected_code = absl::StatusCode::kOk;
  std::string expected_message;
  // References of a valid case: Q x N float64 cosine scores, or the float64
  // spreading result.
  size_t num_queries = 0;
  size_t num_targets = 0;
  std::vector<double> cosine_reference;
  ReferenceSpreadResult spread_reference;
  // The number of float32 values the request carries (its payload).
  size_t payload_values = 0;
};

// Valid requests, all PLACEMENT_AUTO, from tiny to large: BatchCosine dense
// and top-k (with min_score, zero rows and exact ties among them) and
// Spread dense and top-k (every decay, hop thresholds, caps), each with its
// reference computed here. The largest carry about 1 MiB of payload or
// return 1 MiB of scores (17M multiply-adds, 180K edges over up to 10
// hops): tens of milliseconds of one core. Deterministic in `seed`.
std::vector<LoadCase> MakeValidCases(uint64_t seed);

// One valid BatchCosine case (PLACEMENT_AUTO) of random q x d queries
// against n x d targets, dense (top_k 0) or top-k, with its reference.
LoadCase RandomCosineLoadCase(size_t q, size_t n, size_t d, uint32_t top_k,
                              uint64_t seed);

// Malformed requests of every kind the API documents (dimension mismatch,
// non-finite values, bad value counts, min_score without top_k, unknown
// placement, bad graph offsets, target or seed out of range, negative
// weights, parameters out of range, and inputs over LoadLimitFlags()'
// limits), each with its documented code: INVALID_ARGUMENT, or
// RESOURCE_EXHAUSTED for the over-limit ones.
std::vector<LoadCase> MakeInvalidCases();

// Empty when `response` is the right answer to the valid case `c`; else
// what is wrong. Cosine scores within kLoadTolerance; top-k lists of the
// reference's length with scores within tolerance and the reference's index
// wherever the reference has no near-tie (the index returned must then
// score within tolerance of the reference's); spreading activations within
// kLoadTolerance (relative above 1), hops and edges_traversed exact, top
// nodes as the top-k lists.
std::string CheckCosineResponse(
    const LoadCase& c, const engram::similarity::v1::BatchCosineResponse& r);
std::string CheckSpreadResponse(
    const LoadCase& c, const engram::similarity::v1::SpreadResponse& r);

// Client-observed outcomes by (method, canonical code name). Thread-safe.
class OutcomeTally {
 public:
  void Add(LoadMethod method, absl::StatusCode code) ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t Count(LoadMethod method, absl::StatusCode code) const
      ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t CountCode(absl::StatusCode code) const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t Total() const ABSL_LOCKS_EXCLUDED(mu_);
  // "OK=123 INVALID_ARGUMENT=4 ...", summed over methods.
  std::string ByCode() const ABSL_LOCKS_EXCLUDED(mu_);
  // Empty when engram_requests_total{method, code} in `metrics_text` equals
  // this tally for both methods and every code (zero where never seen);
  // else the mismatches.
  std::string CompareWithServer(const std::string& metrics_text) const
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::map<std::pair<LoadMethod, absl::StatusCode>, uint64_t> counts_
      ABSL_GUARDED_BY(mu_);
};

// The q-quantile (0..1, nearest rank) of `values`; 0 when empty.
double Percentile(std::vector<double> values, double q);

// VmRSS of process `pid` from /proc/<pid>/status, in bytes.
absl::StatusOr<uint64_t> ReadResidentBytes(pid_t pid);

struct RssSample {
  double seconds = 0;  // since sampling started
  uint64_t bytes = 0;
};

// Samples ReadResidentBytes(pid) every `period` on its own thread from
// construction until Stop() (or destruction); a process that has exited
// ends the sampling. Thread-safe.
class RssSampler {
 public:
  RssSampler(pid_t pid, absl::Duration period);
  ~RssSampler();
  RssSampler(const RssSampler&) = delete;
  RssSampler& operator=(const RssSampler&) = delete;

  void Stop();
  std::vector<RssSample> samples() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const pid_t pid_;
  const absl::Duration period_;
  std::atomic<bool> stop_{false};
  mutable absl::Mutex mu_;
  std::vector<RssSample> samples_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// Resident memory over a run, judged on levels rather than single samples:
// a server's RSS swings by tens of MiB from one sample to the next with
// the requests in flight, so the growth over the second half is the median
// of the last quarter of the samples (the level at the end) minus the
// median of the quarter centred on the midpoint (the level at the middle).
// A steady leak of r bytes/s over a run of T seconds shows as about
// r * 3T/8; a flat process as about 0, whatever the swings.
struct MemoryGrowth {
  size_t samples = 0;
  uint64_t first = 0;
  uint64_t last = 0;
  uint64_t peak = 0;
  uint64_t midpoint_level = 0;  // median of samples [3n/8, 5n/8)
  uint64_t end_level = 0;       // median of samples [3n/4, n)
  int64_t growth = 0;           // end_level - midpoint_level
};
// INVALID_ARGUMENT with fewer than 8 samples: too few to judge.
absl::StatusOr<MemoryGrowth> SecondHalfGrowth(
    const std::vector<RssSample>& samples);

// The soak's memory gate: success when SecondHalfGrowth(samples).growth is
// below `bound_bytes`; failure (with the figures) when it is not or when
// there are too few samples to judge.
::testing::AssertionResult MemoryGrowthBelow(
    const std::vector<RssSample>& samples, uint64_t bound_bytes);

// Seconds as an integer from the environment variable `name`, or `fallback`
// when it is unset, empty or not a positive number.
int EnvSeconds(const char* name, int fallback);

// A file under $TMPDIR (or /tmp) holding `text`; its path.
std::string WriteTempFile(const std::string& name, const std::string& text);

}  // namespace engram::testing

#endif  // ENGRAM_TESTS_SERVER_LOAD_HARNESS_H_
