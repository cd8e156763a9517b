// The engram-cli command line: parsing `engram-cli <subcommand> [--flags]`,
// building requests from the parsed options, and running a subcommand against
// a server. main() only forwards to Main(); everything here is testable.
//
// Output contract: a successful command prints one JSON object (the response,
// proto field names, default values included) on stdout; a failure prints
// `error: <CODE_NAME>: <message>` on stderr. Exit codes are kExit* below.
#ifndef ENGRAM_CLIENT_CLI_COMMANDS_H_
#define ENGRAM_CLIENT_CLI_COMMANDS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/types.h"
#include "engram/similarity/v1/similarity.pb.h"
#include "google/protobuf/message.h"
#include "grpcpp/security/credentials.h"

namespace engram::client::cli {

// Success; for `health`, the server reported SERVING.
inline constexpr int kExitOk = 0;
// The RPC failed, or `health` got an answer other than SERVING. Container
// health checks read any non-zero code as unhealthy.
inline constexpr int kExitRpcError = 1;
// Bad usage or input: unknown subcommand or flag, invalid flag value,
// unreadable or malformed input file. Nothing was sent.
inline constexpr int kExitUsage = 2;

enum class Subcommand {
  kCosine,
  kSpread,
  kStats,
  kHealth,
  kBench,
  kCollection,
  kGraph
};

// Flags every subcommand accepts.
struct CommonOptions {
  std::string server = "127.0.0.1:50051";
  absl::Duration timeout = absl::Seconds(30);
  std::string request_id;  // empty: no x-request-id is sent
  // TLS: a CA bundle to trust turns TLS on; a certificate and key add the
  // client's identity (mutual TLS); the server name overrides the host the
  // server's certificate must name. All PEM files.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_server_name;
};

struct CosineOptions {
  std::string queries_path;  // .npy, with targets_path; or random
  std::string targets_path;
  std::string random;  // "Q,N,D"
  uint64_t seed = 1;
  uint32_t top_k = 0;
  std::optional<float> min_score;
  std::string placement = "auto";
};

struct SpreadOptions {
  std::string graph_path;  // edge list, see client/edge_list.h
  std::string graph_name;  // a resident graph instead of graph_path
  std::optional<uint32_t> num_nodes;
  std::string seeds;  // "node:activation,..."
  std::optional<uint32_t> max_hops;
  std::string decay;  // "kind:value"; empty leaves the server default
  std::optional<float> threshold;
  std::string hop_thresholds;  // "t1,t2,..."; empty sends none
  std::optional<float> max_activation;
  uint32_t top_k = 0;
  std::string placement = "auto";
};

// `engram-cli collection ACTION`: create, upload (creates), append, delete,
// list, describe, search. Search takes the cosine flags for its queries
// (--queries FILE.npy, or --random=Q,D), --top_k, --min_score, --placement.
struct CollectionOptions {
  std::string action;
  std::string name;
  uint32_t dimension = 0;   // create
  std::string metadata;     // "key=value,..." (create, upload)
  std::string file;         // .npy rows (upload, append)
  std::string ids_file;     // .npy ids, one per row (upload, append)
  uint64_t chunk_rows = 0;  // rows per upload message; 0: about 4 MiB each
};

// `engram-cli graph ACTION`: put (from an edge list), delete, list,
// describe.
struct GraphOptions {
  std::string action;
  std::string name;
  std::string graph_path;  // edge list (put)
  std::optional<uint32_t> num_nodes;
  uint64_t chunk_entries = uint64_t{1} << 20;
};

struct HealthOptions {
  std::string service;
};

// `engram-cli bench`: a load generator. The request is the one `cosine` or
// `spread` would send (their flags apply), built and serialised once, then
// sent over one channel, either closed loop (`concurrency` calls always in
// flight) or open loop (`rate` calls per second on a fixed schedule, at most
// `concurrency` in flight; latency counts from the scheduled start, so a
// server that falls behind shows it instead of slowing the schedule down).
struct BenchOptions {
  // "cosine", "spread" or "SearchCollection" (against `collection`, with
  // queries from --random=Q,D or --queries).
  std::string rpc = "cosine";
  std::string collection;
  // The full method to call, e.g. "/engram.bench.v1.Echo/BatchCosine" for
  // bench/echo_server; empty: the Similarity service's method for `rpc`.
  std::string method;
  uint32_t concurrency = 1;
  double rate = 0.0;  // requests per second; 0: closed loop
  absl::Duration duration = absl::Seconds(10);
  // Calls started before the end of the warm-up are not counted.
  absl::Duration warmup = absl::Seconds(1);
  std::string format = "text";  // "text" or "json"
  // Spread only, instead of --graph: "NODES,DEGREE", every node with DEGREE
  // out-edges to uniformly random nodes, weights uniform on (0, 1], from the
  // cosine --seed.
  std::string random_graph;
};

// A parsed command line. With `help`, `subcommand` says whose help was asked
// for (none: the overview) and the option structs are meaningless.
struct Invocation {
  bool help = false;
  std::optional<Subcommand> subcommand;
  CommonOptions common;
  CosineOptions cosine;
  SpreadOptions spread;
  HealthOptions health;
  BenchOptions bench;
  CollectionOptions collection;
  GraphOptions graph;
};

// Parses the arguments after the program name: the subcommand first, then
// flags as `--name=value` or `--name value` (one leading dash also works).
// `help`, `--help` or `-h` anywhere asks for help. Flags are the absl flags
// of this file; a flag the subcommand does not take is an error. Returns
// INVALID_ARGUMENT describing the problem. Not thread-safe: it resets this
// file's flags to their defaults, then sets them from `args`, so the result
// depends on `args` alone.
absl::StatusOr<Invocation> ParseArgs(const std::vector<std::string>& args);

// The --help text: the overview with exit codes, or one subcommand's flags.
std::string UsageText(std::optional<Subcommand> subcommand);

// "auto", "cpu" or "gpu".
absl::StatusOr<engram::similarity::v1::Placement> ParsePlacement(
    absl::string_view text);

// "exponential:R", "power_law:E", "linear:S" or "constant:F" into the decay
// oneof of `params`, which is left unchanged on error.
absl::Status ParseDecay(absl::string_view text,
                        engram::similarity::v1::SpreadParams* params);

// "node:activation,node:activation,...": at least one seed, node ids
// non-negative 32-bit integers, activations finite.
absl::StatusOr<std::vector<SpreadSeed>> ParseSeeds(absl::string_view text);

// "f1,f2,...": finite floats, at least one.
absl::StatusOr<std::vector<float>> ParseFloatList(absl::string_view text);

// The request `options` describe: reads the .npy files or generates the
// random data. INVALID_ARGUMENT for inconsistent flags or bad input; file
// errors as ReadNpyFile reports them.
absl::StatusOr<engram::similarity::v1::BatchCosineRequest> BuildCosineRequest(
    const CosineOptions& options);

// The request `options` describe: reads the edge list, builds the CSR graph
// (over --num_nodes nodes when given, else max id + 1) and sets only the
// parameters that were given.
absl::StatusOr<engram::similarity::v1::SpreadRequest> BuildSpreadRequest(
    const SpreadOptions& options);

// The SearchCollection request `collection search` (and bench
// --rpc=SearchCollection) sends: queries from options.queries_path or
// options.random ("Q,D"), options.top_k, min_score and placement.
absl::StatusOr<engram::similarity::v1::SearchCollectionRequest>
BuildSearchRequest(const std::string& collection, const CosineOptions& options);

// "key=value,key=value" (empty: none).
absl::StatusOr<std::map<std::string, std::string>> ParseMetadata(
    absl::string_view text);

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

// The channel credentials `common` asks for: TLS (with a client certificate
// for mutual TLS) when a CA file is given, else plaintext. An error names an
// unreadable file.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const CommonOptions& common);

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

// `message` as one line of JSON: proto field names, fields at their default
// values included. INTERNAL when protobuf cannot print it.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

// `error: <CODE_NAME>: <message>`.
std::string FormatError(const absl::Status& status);

// Runs a parsed, non-help invocation: builds the request, calls the server
// and prints the result to `out` or the error to `err`. Returns the exit code.
int Run(const Invocation& invocation, std::ostream& out, std::ostream& err);

// The whole program: ParseArgs, help or Run. Returns the exit code.
int Main(int argc, char** argv, std::ostream& out, std::ostream& err);

}  // namespace engram::client::cli

#endif  // ENGRAM_CLIENT_CLI_COMMANDS_H_
