#include "client/cli/load_generator.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "client/cli/credentials.h"
#include "client/cli/output.h"
#include "client/cli/request_builders.h"
#include "client/requests.h"
#include "client/similarity_client.h"
#include "client/status_conversion.h"
#include "client/types.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"

namespace engram::client::cli {

namespace v1 = ::engram::similarity::v1;

absl::StatusOr<BenchRequest> BuildBenchRequest(const Invocation& invocation) {
  const BenchOptions& bench = invocation.bench;
  BenchRequest out;
  if (bench.rpc == "cosine") {
    if (!bench.random_graph.empty()) {
      return UsageError("--random_graph is for --rpc=spread");
    }
    ENGRAM_ASSIGN_OR_RETURN(const v1::BatchCosineRequest request,
                            BuildCosineRequest(invocation.cosine));
    out.method = "/engram.similarity.v1.Similarity/BatchCosine";
    out.payload = request.SerializeAsString();
    const uint64_t q = request.queries().rows();
    const uint64_t n = request.targets().rows();
    out.vectors = n;
    out.pairs = q * n;
    out.shape = absl::StrCat("BatchCosine Q=", q, " N=", n,
                             " d=", request.targets().cols(),
                             " top_k=", request.top_k());
  } else if (bench.rpc == "spread") {
    SpreadOptions options = invocation.spread;
    if (options.seeds.empty()) options.seeds = "0:1";
    if (bench.random_graph.empty()) {
      ENGRAM_ASSIGN_OR_RETURN(const v1::SpreadRequest request,
                              BuildSpreadRequest(options));
      out.payload = request.SerializeAsString();
      out.edges = request.graph().targets_size();
      out.shape = absl::StrCat("Spread nodes=", request.graph().num_nodes(),
                               " edges=", out.edges);
    } else {
      if (!options.graph_path.empty()) {
        return UsageError("give --graph or --random_graph, not both");
      }
      const std::vector<absl::string_view> parts =
          absl::StrSplit(bench.random_graph, ',');
      uint32_t nodes = 0, degree = 0;
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &nodes) ||
          !absl::SimpleAtoi(parts[1], &degree) || nodes == 0) {
        return UsageError(absl::StrCat("--random_graph '", bench.random_graph,
                                       "': expected NODES,DEGREE with NODES "
                                       ">= 1"));
      }
      if (uint64_t{nodes} * degree > (uint64_t{1} << 31)) {
        return UsageError("--random_graph: more than 2^31 edges");
      }
      ENGRAM_ASSIGN_OR_RETURN(v1::SpreadRequest request,
                              BuildSpreadRequestWithoutGraph(options));
      std::mt19937_64 rng(invocation.cosine.seed);
      std::uniform_int_distribution<uint32_t> node(0, nodes - 1);
      std::uniform_real_distribution<float> unit(0.0f, 1.0f);
      std::vector<Edge> edges;
      edges.reserve(uint64_t{nodes} * degree);
      for (uint32_t u = 0; u < nodes; ++u) {
        for (uint32_t i = 0; i < degree; ++i) {
          edges.push_back({u, node(rng), 1.0f - unit(rng)});
        }
      }
      absl::StatusOr<v1::Graph> graph = MakeGraph(nodes, edges);
      if (!graph.ok()) return UsageError(graph.status().message());
      *request.mutable_graph() = *std::move(graph);
      out.payload = request.SerializeAsString();
      out.edges = edges.size();
      out.shape = absl::StrCat("Spread nodes=", nodes, " edges=", out.edges,
                               " (random, degree ", degree, ")");
    }
    out.method = "/engram.similarity.v1.Similarity/Spread";
  } else if (bench.rpc == "SearchCollection") {
    if (bench.collection.empty()) {
      return UsageError("--collection is required with --rpc=SearchCollection");
    }
    ENGRAM_ASSIGN_OR_RETURN(
        const v1::SearchCollectionRequest request,
        BuildSearchRequest(bench.collection, invocation.cosine));
    out.method = "/engram.similarity.v1.Similarity/SearchCollection";
    out.payload = request.SerializeAsString();
    out.shape = absl::StrCat("SearchCollection collection=", bench.collection,
                             " Q=", request.queries().rows(),
                             " d=", request.queries().cols(),
                             " top_k=", request.top_k());
  } else {
    return UsageError(absl::StrCat("--rpc '", bench.rpc,
                                   "' is not one of cosine, spread, "
                                   "SearchCollection"));
  }
  if (!bench.collection.empty() && bench.rpc != "SearchCollection") {
    return UsageError("--collection is for --rpc=SearchCollection");
  }
  if (!bench.method.empty()) {
    if (bench.method.front() != '/' ||
        std::count(bench.method.begin(), bench.method.end(), '/') != 2) {
      return UsageError(absl::StrCat("--method '", bench.method,
                                     "': expected /package.Service/Method"));
    }
    out.method = bench.method;
  }
  return out;
}

absl::Status ValidateBenchOptions(const BenchOptions& options) {
  if (options.concurrency == 0) {
    return UsageError("--concurrency must be at least 1");
  }
  if (!(options.rate >= 0.0) || !std::isfinite(options.rate)) {
    return UsageError("--rate must be a finite number >= 0");
  }
  if (options.duration <= absl::ZeroDuration() ||
      options.duration == absl::InfiniteDuration()) {
    return UsageError("--duration must be positive and finite");
  }
  if (options.warmup < absl::ZeroDuration() ||
      options.warmup == absl::InfiniteDuration()) {
    return UsageError("--warmup must be >= 0 and finite");
  }
  if (options.format != "text" && options.format != "json") {
    return UsageError(
        absl::StrCat("--format '", options.format, "' is not text or json"));
  }
  return absl::OkStatus();
}

namespace {

// One load run: calls go out through the callback API and each completion
// (on a gRPC thread) records its outcome and, closed loop, starts the next.
class LoadRun {
 public:
  LoadRun(std::shared_ptr<grpc::Channel> channel, const BenchOptions& options,
          const BenchRequest& request, absl::Duration timeout)
      : stub_(std::move(channel)),
        options_(options),
        method_(request.method),
        timeout_(timeout) {
    grpc::Slice slice(request.payload);
    payload_ = grpc::ByteBuffer(&slice, 1);
  }

  // Applies the load and waits for every call to finish.
  void Run() {
    const absl::Time start = absl::Now();
    {
      absl::MutexLock lock(&mu_);
      measure_from_ = start + options_.warmup;
      stop_at_ = measure_from_ + options_.duration;
    }
    if (options_.rate == 0.0) {
      for (uint32_t i = 0; i < options_.concurrency; ++i) {
        {
          absl::MutexLock lock(&mu_);
          ++in_flight_;
        }
        StartCall(absl::Now());
      }
    } else {
      RunSchedule(start);
    }
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &LoadRun::Idle));
  }

  // Fills the counts and latencies of `report`.
  void Report(BenchReport* report) {
    absl::MutexLock lock(&mu_);
    report->seconds = absl::ToDoubleSeconds(options_.duration);
    report->ok = ok_;
    for (const auto& [code, count] : errors_) {
      report->errors.emplace_back(CodeName(static_cast<absl::StatusCode>(code)),
                                  count);
    }
    std::sort(latencies_.begin(), latencies_.end());
    if (latencies_.empty()) return;
    auto at = [this](double fraction) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      const size_t i = static_cast<size_t>(
          std::ceil(fraction * static_cast<double>(latencies_.size())));
      return absl::ToDoubleMilliseconds(
          latencies_[std::clamp<size_t>(i, 1, latencies_.size()) - 1]);
    };
    absl::Duration total;
    for (absl::Duration d : latencies_) total += d;
    report->latency_mean_ms = absl::ToDoubleMilliseconds(total) /
                              static_cast<double>(latencies_.size());
    report->latency_p50_ms = at(0.50);
    report->latency_p90_ms = at(0.90);
    report->latency_p99_ms = at(0.99);
    report->latency_max_ms = absl::ToDoubleMilliseconds(latencies_.back());
  }

 private:
  struct Call {
    grpc::ClientContext context;
    grpc::ByteBuffer request;
    grpc::ByteBuffer response;
    absl::Time scheduled;
  };

  // Open loop: call i is due at start + i / rate; a call waits for a free
  // slot when `concurrency` are in flight, and its latency still counts from
  // when it was due.
  void RunSchedule(absl::Time start) {
    const absl::Duration interval = absl::Seconds(1.0 / options_.rate);
    for (int64_t i = 0;; ++i) {
      const absl::Time due = start + i * interval;
      {
        absl::MutexLock lock(&mu_);
        if (due >= stop_at_) return;
      }
      // Sleeping overshoots by up to tens of microseconds, which would
      // count as latency: sleep to just short of the due time, then yield.
      const absl::Duration kSpin = absl::Microseconds(200);
      if (const absl::Time now = absl::Now(); due - now > kSpin) {
        absl::SleepFor(due - now - kSpin);
      }
      while (absl::Now() < due) std::this_thread::yield();
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &LoadRun::SlotFree));
        ++in_flight_;
      }
      StartCall(due);
    }
  }

  bool SlotFree() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ < options_.concurrency;
  }
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ == 0;
  }

  void StartCall(absl::Time scheduled) {
    auto* call = new Call;
    call->scheduled = scheduled;
    call->request = payload_;  // shares the slices, no copy
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    stub_.UnaryCall(&call->context, method_, grpc::StubOptions(),
                    &call->request, &call->response,
                    [this, call](grpc::Status status) { Done(call, status); });
  }

  void Done(Call* call, const grpc::Status& status) {
    const absl::Time now = absl::Now();
    const absl::Time scheduled = call->scheduled;
    delete call;
    bool again = false;
    {
      absl::MutexLock lock(&mu_);
      if (scheduled >= measure_from_ && scheduled < stop_at_) {
        latencies_.push_back(now - scheduled);
        if (status.ok()) {
          ++ok_;
        } else {
          ++errors_[static_cast<int>(status.error_code())];
        }
      }
      again = options_.rate == 0.0 && now < stop_at_;
      if (!again) --in_flight_;
    }
    if (again) StartCall(now);
  }

  grpc::GenericStub stub_;
  const BenchOptions& options_;
  const std::string method_;
  const absl::Duration timeout_;
  grpc::ByteBuffer payload_;

  absl::Mutex mu_;
  absl::Time measure_from_ ABSL_GUARDED_BY(mu_);
  absl::Time stop_at_ ABSL_GUARDED_BY(mu_);
  uint32_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t ok_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int, uint64_t> errors_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Duration> latencies_ ABSL_GUARDED_BY(mu_);
};

// "12.3" style numbers for the reports: enough digits, no exponent for the
// magnitudes a benchmark produces.
std::string Number(double value, int decimals = 3) {
  if (!std::isfinite(value)) return "0";
  return absl::StrFormat("%.*f", decimals, value);
}

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

}  // namespace

absl::StatusOr<BenchReport> RunBench(const CommonOptions& common,
                                     const BenchOptions& options,
                                     const BenchRequest& request) {
  ENGRAM_RETURN_IF_ERROR(ValidateBenchOptions(options));
  if (request.method.empty()) return UsageError("no method to call");
  ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                          ChannelCredentialsFor(common));
  grpc::ChannelArguments args;
  const int max_bytes = SimilarityClient::Options().max_message_bytes;
  args.SetMaxSendMessageSize(max_bytes);
  args.SetMaxReceiveMessageSize(max_bytes);
  if (!common.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(common.tls_server_name);
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(common.server, credentials, args);
  LoadRun run(channel, options, request, common.timeout);
  run.Run();

  BenchReport report;
  report.target = common.server;
  report.method = request.method;
  report.shape = request.shape;
  report.concurrency = options.concurrency;
  report.rate = options.rate;
  report.request_bytes = request.payload.size();
  run.Report(&report);
  const double ok = static_cast<double>(report.ok);
  report.requests_per_second = ok / report.seconds;
  report.vectors_per_second = ok * request.vectors / report.seconds;
  report.pairs_per_second = ok * request.pairs / report.seconds;
  report.edges_per_second = ok * request.edges / report.seconds;
  return report;
}

std::string BenchReportJson(const BenchReport& r) {
  std::string errors;
  for (const auto& [code, count] : r.errors) {
    absl::StrAppend(&errors, errors.empty() ? "" : ",", JsonString(code), ":",
                    count);
  }
  return absl::StrCat(
      "{\"target\":", JsonString(r.target),
      ",\"method\":", JsonString(r.method), ",\"shape\":", JsonString(r.shape),
      ",\"concurrency\":", r.concurrency, ",\"rate\":", Number(r.rate),
      ",\"seconds\":", Number(r.seconds),
      ",\"request_bytes\":", r.request_bytes, ",\"ok\":", r.ok, ",\"errors\":{",
      errors, "},\"requests_per_second\":", Number(r.requests_per_second),
      ",\"vectors_per_second\":", Number(r.vectors_per_second),
      ",\"pairs_per_second\":", Number(r.pairs_per_second),
      ",\"edges_per_second\":", Number(r.edges_per_second),
      ",\"latency_ms\":{\"mean\":", Number(r.latency_mean_ms, 4),
      ",\"p50\":", Number(r.latency_p50_ms, 4),
      ",\"p90\":", Number(r.latency_p90_ms, 4),
      ",\"p99\":", Number(r.latency_p99_ms, 4),
      ",\"max\":", Number(r.latency_max_ms, 4), "}}");
}

std::string BenchReportText(const BenchReport& r) {
  std::string errors;
  for (const auto& [code, count] : r.errors) {
    absl::StrAppend(&errors, errors.empty() ? "" : ", ", code, " ", count);
  }
  const std::string load =
      r.rate > 0.0
          ? absl::StrCat("open loop at ", Number(r.rate, 1),
                         " requests/s, at most ", r.concurrency, " in flight")
          : absl::StrCat("closed loop, ", r.concurrency, " in flight");
  std::string out = absl::StrCat(
      "bench: ", r.shape, " (", r.request_bytes, " request bytes)\n",
      "  target:     ", r.target, " ", r.method, "\n", "  load:       ", load,
      ", ", Number(r.seconds, 1), " s measured\n", "  calls:      ", r.ok,
      " ok, errors: ", errors.empty() ? "none" : errors, "\n",
      "  throughput: ", Number(r.requests_per_second, 1), " requests/s");
  if (r.vectors_per_second > 0.0) {
    absl::StrAppend(&out, ", ", Number(r.vectors_per_second, 0), " vectors/s, ",
                    Number(r.pairs_per_second, 0), " pairs/s");
  }
  if (r.edges_per_second > 0.0) {
    absl::StrAppend(&out, ", ", Number(r.edges_per_second, 0), " edges/s");
  }
  absl::StrAppend(&out, "\n", "  latency ms: p50 ", Number(r.latency_p50_ms),
                  "  p90 ", Number(r.latency_p90_ms), "  p99 ",
                  Number(r.latency_p99_ms), "  max ", Number(r.latency_max_ms),
                  "  mean ", Number(r.latency_mean_ms), "\n");
  return out;
}

int RunBenchCommand(const Invocation& invocation, std::ostream& out,
                    std::ostream& err) {
  absl::StatusOr<BenchRequest> request = BuildBenchRequest(invocation);
  absl::Status valid = request.status();
  if (valid.ok()) valid = ValidateBenchOptions(invocation.bench);
  if (!valid.ok()) {
    err << FormatError(valid) << "\n";
    return kExitUsage;
  }
  absl::StatusOr<BenchReport> report =
      RunBench(invocation.common, invocation.bench, *request);
  if (!report.ok()) {
    err << FormatError(report.status()) << "\n";
    return kExitUsage;
  }
  out << (invocation.bench.format == "json" ? BenchReportJson(*report) + "\n"
                                            : BenchReportText(*report));
  return report->ok > 0 ? kExitOk : kExitRpcError;
}

}  // namespace engram::client::cli
