// Cosine kernels against the memory roofline and against the matrix-product
// formulation, on data that is the same in every run (bench/bench_data.h).
//
// - BM_ReadBandwidth: the STREAM-like read roofline (bench/read_bandwidth.h)
//   on the very buffer BM_CosineRoofline scores, 1 thread and all threads.
// - BM_FmaPeak: the arithmetic roofline (bench/fma_peak.h), 1 thread and
//   all threads, against which the panel kernel's GFLOP/s are read.
// - BM_CosineRoofline: one query against targets 12x the LLC; bytes/s is
//   target bytes read per second, to be divided by BM_ReadBandwidth's.
// - BM_Cosine: the peer grid (docs/performance.md): Q x N x d, all scores
//   (k = 0) or top-10, all threads, the service's kernel choice.
// - BM_KernelCrossover: the row and the panel kernel forced, by Q, which
//   sets kPanelMinQueries in kernels/cpu/cosine.cc.
// - BM_MaskedCosine: top-10 over 1Mi x 768 targets restricted by a row mask
//   admitting a fraction of the rows at random positions (filters,
//   deleted rows), timed against the unmasked pass over the same targets
//   in the same iterations: the counters give both times per row and their
//   ratio (docs/performance.md, "Masked search").
// - BM_OpenBlasCosine: the alternative formulation, OpenBLAS SGEMM of the
//   raw vectors plus norms and scaling, to show whether linking a BLAS
//   would pay; the context line names the core OpenBLAS selected.
//
// Args ending in threads: 1 is the calling thread alone, 0 all hardware
// threads (a pool of hardware_concurrency - 1 workers plus the caller).
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "bench/bench_data.h"
#include "bench/fma_peak.h"
#include "bench/read_bandwidth.h"
#include "benchmark/benchmark.h"
#include "kernels/cpu/cosine.h"
#include "kernels/large_buffer.h"
#include "kernels/row_mask.h"
#include "kernels/thread_pool.h"

namespace engram::bench {
namespace {

using kernels::MatrixView;
using kernels::ThreadPool;
using kernels::cpu::CosineKernel;

constexpr uint64_t kQuerySeed = 1;
constexpr uint64_t kTargetSeed = 2;
// The grid's largest shapes; smaller ones use a prefix of these rows.
constexpr size_t kMaxQueries = 128;
constexpr size_t kMaxTargets = size_t{256} << 10;
// 402 MB of targets for the roofline: 12x a 32 MiB LLC.
constexpr size_t kRooflineFloats = size_t{100} << 20;

const std::vector<float>& Data(size_t rows, size_t cols, uint64_t seed) {
  static auto* cache =
      new std::map<std::tuple<size_t, size_t, uint64_t>, std::vector<float>>;
  auto& entry = (*cache)[{rows, cols, seed}];
  if (entry.empty()) entry = BenchMatrix(rows, cols, seed);
  return entry;
}

const std::vector<float>& Queries(size_t d) {
  return Data(kMaxQueries, d, kQuerySeed);
}
const std::vector<float>& Targets(size_t d) {
  return Data(kMaxTargets, d, kTargetSeed);
}

int AllThreads() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// nullptr for one thread; else a pool that, with the caller, makes
// `threads` (0: all hardware threads).
ThreadPool* Pool(int threads) {
  if (threads == 0) threads = AllThreads();
  if (threads == 1) return nullptr;
  static auto* pools = new std::map<int, std::unique_ptr<ThreadPool>>;
  auto& pool = (*pools)[threads];
  if (pool == nullptr) pool = std::make_unique<ThreadPool>(threads - 1);
  return pool.get();
}

int Threads(int arg) { return arg == 0 ? AllThreads() : arg; }

void BM_ReadBandwidth(benchmark::State& state) {
  const std::vector<float>& data = Data(kRooflineFloats, 1, kTargetSeed);
  ThreadPool* pool = Pool(static_cast<int>(state.range(0)));
  const size_t tasks = 4 * static_cast<size_t>(Threads(state.range(0)));
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        SumFloats(data.data(), data.size(), pool ? tasks : 1, pool));
  }
  state.SetBytesProcessed(
      static_cast<int64_t>(state.iterations() * data.size() * sizeof(float)));
  state.counters["threads"] = Threads(state.range(0));
}
BENCHMARK(BM_ReadBandwidth)->ArgName("threads")->Arg(1)->Arg(0)->UseRealTime();

void BM_FmaPeak(benchmark::State& state) {
  ThreadPool* pool = Pool(static_cast<int>(state.range(0)));
  const size_t threads = static_cast<size_t>(Threads(state.range(0)));
  constexpr size_t kIterations = size_t{1} << 22;
  std::vector<double> flops(threads);
  std::vector<float> sums(threads);
  double total = 0.0;
  for (auto _ : state) {
    auto run = [&](size_t t) { sums[t] = FmaChains(kIterations, &flops[t]); };
    if (pool == nullptr) {
      run(0);
    } else {
      pool->ParallelFor(threads, run);
    }
    for (double f : flops) total += f;
    benchmark::DoNotOptimize(sums.data());
  }
  state.counters["gflops"] =
      benchmark::Counter(total * 1e-9, benchmark::Counter::kIsRate);
  state.counters["threads"] = static_cast<double>(threads);
}
BENCHMARK(BM_FmaPeak)->ArgName("threads")->Arg(1)->Arg(0)->UseRealTime();

// Args: d, threads. The targets are the BM_ReadBandwidth buffer as
// (kRooflineFloats / d) x d.
void BM_CosineRoofline(benchmark::State& state) {
  const size_t d = state.range(0);
  const std::vector<float>& data = Data(kRooflineFloats, 1, kTargetSeed);
  const MatrixView targets{data.data(), data.size() / d, d};
  const MatrixView queries{Queries(d).data(), 1, d};
  ThreadPool* pool = Pool(static_cast<int>(state.range(1)));
  std::vector<float> out(targets.rows);
  for (auto _ : state) {
    auto status = kernels::cpu::CosineDense(queries, targets, out.data(),
                                            targets.rows, 0, pool);
    if (!status.ok()) state.SkipWithError(status.ToString().c_str());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(
      static_cast<int64_t>(state.iterations() * data.size() * sizeof(float)));
  state.counters["threads"] = Threads(state.range(1));
}
BENCHMARK(BM_CosineRoofline)
    ->ArgNames({"d", "threads"})
    ->ArgsProduct({{384, 768}, {1, 0}})
    ->UseRealTime();

void RunCosine(benchmark::State& state, size_t q, size_t n, size_t d,
               uint32_t top_k, CosineKernel kernel, ThreadPool* pool) {
  const MatrixView queries{Queries(d).data(), q, d};
  const MatrixView targets{Targets(d).data(), n, d};
  std::vector<float> out(top_k == 0 ? q * n : 0);
  std::vector<kernels::TopKList> top;
  for (auto _ : state) {
    absl::Status status =
        top_k == 0 ? kernels::cpu::CosineDense(queries, targets, out.data(), n,
                                               0, pool, kernel)
                   : kernels::cpu::CosineTopK(queries, targets, top_k, -2.0f, 0,
                                              pool, &top, kernel);
    if (!status.ok()) state.SkipWithError(status.ToString().c_str());
    benchmark::DoNotOptimize(out.data());
    benchmark::DoNotOptimize(top.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
  state.SetBytesProcessed(
      static_cast<int64_t>(state.iterations() * n * d * sizeof(float)));
  state.counters["gflops"] = benchmark::Counter(
      2.0 * q * n * d * state.iterations() * 1e-9, benchmark::Counter::kIsRate);
}

// Args: Q, N, d, top_k, threads.
void BM_Cosine(benchmark::State& state) {
  const size_t q = state.range(0);
  RunCosine(state, q, state.range(1), state.range(2),
            static_cast<uint32_t>(state.range(3)), CosineKernel::kAuto,
            Pool(static_cast<int>(state.range(4))));
  state.SetLabel(
      kernels::cpu::CosineKernelName(kernels::cpu::CosineKernelFor(q)));
}
BENCHMARK(BM_Cosine)
    ->ArgNames({"Q", "N", "d", "k", "threads"})
    ->ArgsProduct({{1, 16, 128},
                   {1 << 10, 16 << 10, 256 << 10},
                   {384, 768},
                   {0, 10},
                   {0}})
    ->UseRealTime();

// Args: Q, kernel (1 row, 2 panel), threads. N = 16Ki, d = 768: 48 MiB of
// targets, more than the LLC.
void BM_KernelCrossover(benchmark::State& state) {
  const auto kernel = static_cast<CosineKernel>(state.range(1));
  RunCosine(state, state.range(0), size_t{16} << 10, 768, 0, kernel,
            Pool(static_cast<int>(state.range(2))));
  state.SetLabel(kernels::cpu::CosineKernelName(kernel));
}
BENCHMARK(BM_KernelCrossover)
    ->ArgNames({"Q", "kernel", "threads"})
    ->ArgsProduct({{1, 2, 4, 6, 8, 12, 16, 32, 128},
                   {static_cast<int>(CosineKernel::kRowDot),
                    static_cast<int>(CosineKernel::kPanel)},
                   {1, 0}})
    ->UseRealTime();

// 3 GiB of targets for the masked passes: the resident collection of the
// service's goals (docs/performance.md, resident collections).
constexpr size_t kMaskedTargets = size_t{1} << 20;
constexpr size_t kMaskedDim = 768;
constexpr uint64_t kMaskSeed = 3;

// The masked passes' targets, held as the collection store holds a
// resident segment (kernels/large_buffer.h: transparent huge pages): with
// 4 KiB pages a sparse mask's rows would each sit on a page of their own,
// a TLB miss per row that the service's segments do not pay.
const kernels::LargeBuffer<float>& MaskedTargets() {
  static const auto* buffer = [] {
    auto* b = new kernels::LargeBuffer<float>(kMaskedTargets * kMaskedDim);
    const std::vector<float> data =
        BenchMatrix(kMaskedTargets, kMaskedDim, kTargetSeed);
    std::copy(data.begin(), data.end(), b->data());
    return b;
  }();
  return *buffer;
}

// A mask over kMaskedTargets rows admitting each with probability
// permille / 1000, independently; cached per density.
const std::vector<uint64_t>& MaskWords(int permille) {
  static auto* cache = new std::map<int, std::vector<uint64_t>>;
  auto& words = (*cache)[permille];
  if (words.empty()) {
    words.assign(kMaskedTargets / 64, 0);
    std::mt19937_64 rng(kMaskSeed + permille);
    std::bernoulli_distribution admit(permille / 1000.0);
    for (size_t r = 0; r < kMaskedTargets; ++r) {
      if (admit(rng)) words[r / 64] |= uint64_t{1} << (r % 64);
    }
  }
  return words;
}

// Args: Q, admitted rows per mille, threads. Each iteration runs the masked
// pass (the iteration's time) and then the unmasked pass over all rows, so
// both see the same machine state; counters: ns per admitted row, ns per
// row unmasked, and their ratio.
void BM_MaskedCosine(benchmark::State& state) {
  const size_t q = state.range(0);
  const int permille = static_cast<int>(state.range(1));
  ThreadPool* pool = Pool(static_cast<int>(state.range(2)));
  const size_t d = kMaskedDim;
  const MatrixView queries{Queries(d).data(), q, d};
  const MatrixView targets{MaskedTargets().data(), kMaskedTargets, d};
  const std::vector<uint64_t>& words = MaskWords(permille);
  const kernels::RowMask mask{words.data(), 0, kMaskedTargets};
  const size_t admitted = kernels::CountAdmitted(mask, 0, kMaskedTargets);
  constexpr uint32_t kTopK = 10;
  std::vector<kernels::TopKList> top;
  double masked_seconds = 0.0, unmasked_seconds = 0.0;
  using Clock = std::chrono::steady_clock;
  const auto pass = [&](const kernels::RowMask& m) {
    const auto start = Clock::now();
    const absl::Status status = kernels::cpu::CosineTopK(
        queries, targets, m, kTopK, -2.0f, 0, pool, &top);
    if (!status.ok()) state.SkipWithError(status.ToString().c_str());
    benchmark::DoNotOptimize(top.data());
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  for (auto _ : state) {
    const double masked = pass(mask);
    state.SetIterationTime(masked);
    masked_seconds += masked;
    unmasked_seconds += pass(kernels::RowMask{});
  }
  const double iterations = static_cast<double>(state.iterations());
  const double per_admitted =
      masked_seconds * 1e9 / (iterations * static_cast<double>(admitted));
  const double per_row = unmasked_seconds * 1e9 /
                         (iterations * static_cast<double>(kMaskedTargets));
  state.counters["admitted"] = static_cast<double>(admitted);
  state.counters["ns_per_admitted_row"] = per_admitted;
  state.counters["ns_per_row_unmasked"] = per_row;
  state.counters["ratio"] = per_admitted / per_row;
  state.counters["masked_over_unmasked"] = masked_seconds / unmasked_seconds;
  state.SetLabel(
      kernels::cpu::CosineKernelName(kernels::cpu::CosineKernelFor(q)));
}
// Three iterations: a Q = 64 unmasked pass alone takes about a second on one
// core; --benchmark_repetitions gives the spread.
BENCHMARK(BM_MaskedCosine)
    ->ArgNames({"Q", "permille", "threads"})
    ->ArgsProduct({{1, 64}, {10, 100, 500}, {1, 0}})
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// Args: Q, N, d, threads. Scores as OpenBLAS would give them: one SGEMM of
// the raw vectors, then division by both norms (computed with cblas_snrm2
// for the queries and a dot pass for the targets, each target row read one
// more time).
void BM_OpenBlasCosine(benchmark::State& state) {
  const size_t q = state.range(0), n = state.range(1), d = state.range(2);
  const int threads = Threads(state.range(3));
  openblas_set_num_threads(threads);
  const float* qs = Queries(d).data();
  const float* ts = Targets(d).data();
  std::vector<float> out(q * n), q_inv(q), t_inv(n);
  for (auto _ : state) {
    for (size_t i = 0; i < q; ++i) {
      const float norm = cblas_snrm2(static_cast<int>(d), qs + i * d, 1);
      q_inv[i] = norm > 0 ? 1.0f / norm : 0.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(q),
                static_cast<int>(n), static_cast<int>(d), 1.0f, qs,
                static_cast<int>(d), ts, static_cast<int>(d), 0.0f, out.data(),
                static_cast<int>(n));
    for (size_t j = 0; j < n; ++j) {
      const float* t = ts + j * d;
      const float norm_sq = cblas_sdot(static_cast<int>(d), t, 1, t, 1);
      t_inv[j] = norm_sq > 0 ? 1.0f / std::sqrt(norm_sq) : 0.0f;
    }
    for (size_t i = 0; i < q; ++i) {
      float* row = out.data() + i * n;
      for (size_t j = 0; j < n; ++j) {
        row[j] = std::clamp(row[j] * q_inv[i] * t_inv[j], -1.0f, 1.0f);
      }
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
  state.counters["gflops"] = benchmark::Counter(
      2.0 * q * n * d * state.iterations() * 1e-9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string("openblas core ") + openblas_get_corename());
}
BENCHMARK(BM_OpenBlasCosine)
    ->ArgNames({"Q", "N", "d", "threads"})
    ->ArgsProduct({{1, 16, 128}, {16 << 10, 256 << 10}, {384, 768}, {0}})
    ->UseRealTime();

}  // namespace
}  // namespace engram::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("simd_target",
                              engram::kernels::cpu::CosineSimdTarget());
  benchmark::AddCustomContext("openblas_core", openblas_get_corename());
  benchmark::AddCustomContext(
      "panel_from_queries", std::to_string([] {
        for (size_t q = 1; q <= 4096; ++q) {
          if (engram::kernels::cpu::CosineKernelFor(q) ==
              engram::kernels::cpu::CosineKernel::kPanel) {
            return q;
          }
        }
        return size_t{0};
      }()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
