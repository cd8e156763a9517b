// What the C++ client pays to build and send a BatchCosine request, the
// baseline clients/python/bench/request_cost.py holds the Python client to.
// Against a running server at $ENGRAM_BENCH_TARGET (host:port), one call at
// a time:
//   BM_BuildAndSend  MakeMatrix from a FloatMatrix (a copy of the values),
//                    MakeCosineRequest and SimilarityClient::BatchCosine:
//                    what a caller holding its vectors in memory pays;
//   BM_Send          BatchCosine with the request already built.
// The shape is $ENGRAM_BENCH_SHAPE as Q,N,D (default 1,1365,768: about 1 Mi
// values) with top_k $ENGRAM_BENCH_TOP_K (default 10), so the response is
// small and the request dominates.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "benchmark/benchmark.h"
#include "client/requests.h"
#include "client/similarity_client.h"
#include "client/types.h"

namespace engram {
namespace {

namespace v1 = ::engram::similarity::v1;

struct Setup {
  std::unique_ptr<client::SimilarityClient> client;
  client::FloatMatrix queries;
  client::FloatMatrix targets;
  uint32_t top_k = 10;
  std::string error;
};

client::FloatMatrix Random(std::size_t rows, std::size_t cols, uint32_t state) {
  client::FloatMatrix matrix{rows, cols, std::vector<float>(rows * cols)};
  for (float& v : matrix.values) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<float>(state >> 8) * (1.0f / 16777216.0f) - 0.5f;
  }
  return matrix;
}

const Setup& GetSetup() {
  static Setup* setup = [] {
    auto* s = new Setup();
    const char* target = std::getenv("ENGRAM_BENCH_TARGET");
    if (target == nullptr) {
      s->error = "set ENGRAM_BENCH_TARGET to a running server's host:port";
      return s;
    }
    const char* shape_env = std::getenv("ENGRAM_BENCH_SHAPE");
    std::vector<std::string> shape =
        absl::StrSplit(shape_env != nullptr ? shape_env : "1,1365,768", ',');
    std::size_t q = 0, n = 0, d = 0;
    if (shape.size() != 3 || !absl::SimpleAtoi(shape[0], &q) ||
        !absl::SimpleAtoi(shape[1], &n) || !absl::SimpleAtoi(shape[2], &d)) {
      s->error = "ENGRAM_BENCH_SHAPE must be Q,N,D";
      return s;
    }
    const char* top_k = std::getenv("ENGRAM_BENCH_TOP_K");
    if (top_k != nullptr && !absl::SimpleAtoi(top_k, &s->top_k)) {
      s->error = "ENGRAM_BENCH_TOP_K must be a number";
      return s;
    }
    client::SimilarityClient::Options options;
    options.target = target;
    auto created = client::SimilarityClient::Create(options);
    if (!created.ok()) {
      s->error = created.status().ToString();
      return s;
    }
    s->client = *std::move(created);
    s->queries = Random(q, d, 1);
    s->targets = Random(n, d, 2);
    return s;
  }();
  return *setup;
}

absl::StatusOr<v1::BatchCosineRequest> Build(const Setup& s) {
  absl::StatusOr<v1::Matrix> queries = client::MakeMatrix(s.queries);
  if (!queries.ok()) return queries.status();
  absl::StatusOr<v1::Matrix> targets = client::MakeMatrix(s.targets);
  if (!targets.ok()) return targets.status();
  return client::MakeCosineRequest(*std::move(queries), *std::move(targets),
                                   s.top_k, std::nullopt);
}

void BM_BuildAndSend(benchmark::State& state) {
  const Setup& s = GetSetup();
  if (!s.error.empty()) {
    state.SkipWithError(s.error.c_str());
    return;
  }
  for (auto _ : state) {
    absl::StatusOr<v1::BatchCosineRequest> request = Build(s);
    if (!request.ok()) {
      state.SkipWithError(request.status().ToString().c_str());
      return;
    }
    auto response = s.client->BatchCosine(*request);
    if (!response.ok()) {
      state.SkipWithError(response.status().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(response->top_size());
  }
}
BENCHMARK(BM_BuildAndSend)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Send(benchmark::State& state) {
  const Setup& s = GetSetup();
  if (!s.error.empty()) {
    state.SkipWithError(s.error.c_str());
    return;
  }
  absl::StatusOr<v1::BatchCosineRequest> request = Build(s);
  if (!request.ok()) {
    state.SkipWithError(request.status().ToString().c_str());
    return;
  }
  for (auto _ : state) {
    auto response = s.client->BatchCosine(*request);
    if (!response.ok()) {
      state.SkipWithError(response.status().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(response->top_size());
  }
}
BENCHMARK(BM_Send)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace engram

BENCHMARK_MAIN();
