// engram-cli's `bench` command: a load generator. It builds the request
// `cosine`, `spread` or `collection search` would send, serialises it once,
// sends it over and over through gRPC's callback API on one channel, and
// reports throughput, latency percentiles and errors by code.
#ifndef ENGRAM_CLIENT_CLI_LOAD_GENERATOR_H_
#define ENGRAM_CLIENT_CLI_LOAD_GENERATOR_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cli/invocation.h"

namespace engram::client::cli {

// What `bench` sends: the serialised request, the method and what one
// request carries, for the per-second rates.
struct BenchRequest {
  std::string method;
  std::string payload;   // the serialised request message
  std::string shape;     // e.g. "Q=1 N=64 d=768 top_k=0"
  uint64_t vectors = 0;  // target vectors per request (cosine)
  uint64_t pairs = 0;    // query x target pairs per request (cosine)
  uint64_t edges = 0;    // graph edges per request (spread)
};

// Builds the request `bench` sends from the invocation's cosine or spread
// options (and --random_graph). INVALID_ARGUMENT for bad flags or input.
absl::StatusOr<BenchRequest> BuildBenchRequest(const Invocation& invocation);

// The outcome of a load run. Latencies are of the calls started in the
// measured window (after the warm-up), successful or not.
struct BenchReport {
  std::string target;
  std::string method;
  std::string shape;
  uint32_t concurrency = 0;
  double rate = 0.0;
  double seconds = 0.0;  // the measured window
  uint64_t ok = 0;
  std::vector<std::pair<std::string, uint64_t>> errors;  // code name, count
  uint64_t request_bytes = 0;
  double requests_per_second = 0.0;  // successful calls
  double vectors_per_second = 0.0;
  double pairs_per_second = 0.0;
  double edges_per_second = 0.0;
  double latency_mean_ms = 0.0;
  double latency_p50_ms = 0.0;
  double latency_p90_ms = 0.0;
  double latency_p99_ms = 0.0;
  double latency_max_ms = 0.0;
};

// INVALID_ARGUMENT when `options` cannot describe a load run (concurrency 0,
// negative rate, non-positive duration, unknown format, ...).
absl::Status ValidateBenchOptions(const BenchOptions& options);

// Runs the load described by `options` against common.server, with
// common.timeout as each call's deadline. Returns once every call started
// has finished, so within warmup + duration + timeout. INVALID_ARGUMENT for
// bad options (concurrency 0, negative rate, non-positive duration, ...).
absl::StatusOr<BenchReport> RunBench(const CommonOptions& common,
                                     const BenchOptions& options,
                                     const BenchRequest& request);

// The report as one line of JSON, or as a few lines of text.
std::string BenchReportJson(const BenchReport& report);
std::string BenchReportText(const BenchReport& report);

// The whole `bench` subcommand: builds the request and checks the options
// before connecting (kExitUsage on error), runs the load and prints the
// report to `out`. Returns kExitOk when at least one call succeeded, else
// kExitRpcError.
int RunBenchCommand(const Invocation& invocation, std::ostream& out,
                    std::ostream& err);

}  // namespace engram::client::cli

#endif  // ENGRAM_CLIENT_CLI_LOAD_GENERATOR_H_
