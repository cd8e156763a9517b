#include "core/dispatch/calibration.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "base/key_value_text.h"
#include "base/status_macros.h"
#include "core/dispatch/chunking.h"
#include "kernels/types.h"

namespace engram::dispatch {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<float> RandomVectors(size_t count, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<float> out(count);
  for (float& v : out) v = value(rng);
  return out;
}

struct Graph {
  uint32_t nodes = 0;
  std::vector<uint32_t> offsets;
  std::vector<uint32_t> targets;
  std::vector<float> weights;
};

Graph RandomGraph(uint32_t nodes, uint32_t degree, std::mt19937_64& rng) {
  std::uniform_int_distribution<uint32_t> target(0, nodes - 1);
  std::uniform_real_distribution<float> weight(0.1f, 1.0f);
  Graph g;
  g.nodes = nodes;
  g.offsets.reserve(nodes + 1);
  g.offsets.push_back(0);
  for (uint32_t u = 0; u < nodes; ++u) {
    for (uint32_t e = 0; e < degree; ++e) {
      g.targets.push_back(target(rng));
      g.weights.push_back(weight(rng));
    }
    g.offsets.push_back(static_cast<uint32_t>(g.targets.size()));
  }
  return g;
}

double Median(std::vector<double> v) {
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Runs `call` options.warmup_calls times untimed, then times it
// options.repetitions times on one backend, and returns the median of the
// timed calls that succeeded (NaN when none did); `model`, when not null,
// receives the median once per successful timed call. Failures, warm-up
// included, are counted in *errors, the first kept in *first_error.
template <typename Call>
double MedianSeconds(const CalibrationOptions& options, Clock* clock,
                     Operation op, BackendKind kind, uint64_t work,
                     uint64_t bytes, PerformanceModel* model, Call&& call,
                     absl::Status* first_error, uint32_t* errors) {
  auto failed = [&](absl::Status status) {
    ++*errors;
    if (first_error->ok()) *first_error = std::move(status);
  };
  // One-time costs of the backend and of this shape (see calibration.h).
  for (uint32_t w = 0; w < options.warmup_calls; ++w) {
    absl::Status status = call();
    if (!status.ok()) failed(std::move(status));
  }
  std::vector<double> times;
  for (uint32_t r = 0; r < options.repetitions; ++r) {
    const absl::Time start = clock->Now();
    absl::Status status = call();
    const double seconds = absl::ToDoubleSeconds(clock->Now() - start);
    if (!status.ok()) {
      failed(std::move(status));
      continue;
    }
    times.push_back(seconds);
  }
  const double median = Median(times);
  if (model != nullptr) {
    for (size_t i = 0; i < times.size(); ++i) {
      (void)model->RecordTiming(op, kind, work, median, bytes);
    }
  }
  return median;
}

std::optional<uint64_t> Crossover(const std::vector<CrossoverRow>& rows,
                                  Operation op) {
  std::vector<const CrossoverRow*> mine;
  for (const CrossoverRow& r : rows) {
    if (r.op == op) mine.push_back(&r);
  }
  const bool any_gpu = std::any_of(mine.begin(), mine.end(), [](auto* r) {
    return !std::isnan(r->gpu_seconds);
  });
  if (!any_gpu) return std::nullopt;
  std::optional<uint64_t> from;
  for (auto it = mine.rbegin(); it != mine.rend(); ++it) {
    const CrossoverRow& r = **it;
    if (std::isnan(r.gpu_seconds) || !(r.gpu_seconds < r.cpu_seconds)) break;
    from = r.work;
  }
  return from.has_value() ? from : std::optional<uint64_t>(kNeverGpu);
}

std::string Work(const std::optional<uint64_t>& w) {
  if (!w.has_value()) return "unmeasured";
  if (*w == kNeverGpu) return "never (the GPU did not win)";
  return absl::StrCat(*w);
}

}  // namespace

absl::StatusOr<CrossoverTable> RunCalibration(ComputeBackend& cpu,
                                              ComputeBackend* gpu,
                                              const CalibrationOptions& options,
                                              Clock* clock,
                                              PerformanceModel* seed_model) {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration option ", what));
  };
  if (options.cosine_dim < 1) return bad("cosine_dim must be >= 1");
  if (options.cosine_targets < 1) return bad("cosine_targets must be >= 1");
  for (uint32_t q : options.cosine_queries) {
    if (q < 1) return bad("cosine_queries must all be >= 1");
  }
  for (uint32_t v : options.spread_nodes) {
    if (v < 1) return bad("spread_nodes must all be >= 1");
  }
  if (options.cosine_top_k.empty()) return bad("cosine_top_k is empty");
  for (uint32_t k : options.cosine_top_k) {
    if (k > options.cosine_targets) {
      return bad("cosine_top_k must all be <= cosine_targets");
    }
  }
  if (options.spread_degree < 1) return bad("spread_degree must be >= 1");
  if (options.spread_hops < 1 || options.spread_hops > 64) {
    return bad("spread_hops must be in [1, 64]");
  }
  if (options.repetitions < 1 || options.repetitions > 100) {
    return bad("repetitions must be in [1, 100]");
  }
  if (options.warmup_calls > 10) return bad("warmup_calls must be in [0, 10]");
  if (clock == nullptr) clock = Clock::Real();

  CrossoverTable table;
  table.cpu_name = std::string(cpu.name());
  if (gpu != nullptr) {
    table.gpu_name = std::string(gpu->name());
    table.gpu_device = gpu->Capabilities().device_name;
  }
  std::mt19937_64 rng(options.seed);

  std::vector<uint32_t> queries = options.cosine_queries;
  std::sort(queries.begin(), queries.end());
  const uint32_t n = options.cosine_targets;
  const uint32_t d = options.cosine_dim;
  const std::vector<float> targets = RandomVectors(size_t{n} * d, rng);
  // A resident copy of the targets, when the GPU keeps one: the shape
  // where the device reads its own memory and moves only the queries.
  constexpr uint64_t kResidentKey = 0xCA11B2A7E;
  const bool resident =
      gpu != nullptr && options.cosine_resident &&
      gpu->Capabilities().supports_residency &&
      gpu->UploadResident(kResidentKey,
                          kernels::MatrixView{targets.data(), n, d})
          .ok();
  std::vector<uint32_t> top_ks = options.cosine_top_k;
  std::sort(top_ks.begin(), top_ks.end());
  for (uint32_t q : queries) {
    const std::vector<float> query_data = RandomVectors(size_t{q} * d, rng);
    std::vector<float> scores(size_t{q} * n);
    for (uint32_t top_k : top_ks) {
      for (bool on_device : {false, true}) {
        if (on_device && !resident) continue;
        CosineJob job;
        job.queries = kernels::MatrixView{query_data.data(), q, d};
        job.targets = kernels::MatrixView{targets.data(), n, d};
        job.top_k = top_k;
        job.resident_targets = on_device ? kResidentKey : 0;
        CrossoverRow row;
        row.op = Operation::kCosine;
        row.work = job.work();
        row.shape = absl::StrCat("Q=", q, " N=", n, " d=", d,
                                 top_k > 0 ? absl::StrCat(" top-", top_k) : "",
                                 on_device ? " resident" : "");
        auto run_on = [&](ComputeBackend& backend) {
          return [&] {
            CosineOutput out;
            if (job.top_k == 0) out.scores = absl::MakeSpan(scores);
            return backend.Cosine(job, &out);
          };
        };
        // The CPU reads the same host rows either way: a resident row's CPU
        // time is the inline row's, measured once.
        if (on_device) {
          row.cpu_seconds = table.rows.back().cpu_seconds;
        } else {
          absl::Status cpu_error;
          uint32_t cpu_errors = 0;
          row.cpu_seconds = MedianSeconds(
              options, clock, Operation::kCosine, BackendKind::kCpu, row.work,
              0, seed_model, run_on(cpu), &cpu_error, &cpu_errors);
          if (!cpu_error.ok()) {
            if (resident) (void)gpu->EvictResident(kResidentKey);
            return cpu_error;
          }
        }
        row.gpu_seconds = kNaN;
        if (gpu != nullptr) {
          absl::Status gpu_error;
          row.gpu_seconds = MedianSeconds(
              options, clock, Operation::kCosine, BackendKind::kGpu, row.work,
              CosineFootprint(job, on_device).TotalBytes(), seed_model,
              run_on(*gpu), &gpu_error, &table.gpu_errors);
        }
        table.rows.push_back(std::move(row));
      }
    }
  }
  if (resident) (void)gpu->EvictResident(kResidentKey);

  std::vector<uint32_t> nodes = options.spread_nodes;
  std::sort(nodes.begin(), nodes.end());
  for (uint32_t v : nodes) {
    const Graph graph = RandomGraph(v, options.spread_degree, rng);
    std::vector<kernels::SpreadSeed> seeds;
    for (uint32_t s = 0; s < std::min<uint32_t>(v, 8); ++s) {
      seeds.push_back(kernels::SpreadSeed{s, 1.0f});
    }
    SpreadJob job;
    job.graph = kernels::GraphView{graph.nodes, graph.offsets, graph.targets,
                                   graph.weights};
    job.seeds = seeds;
    job.params.max_hops = options.spread_hops;
    CrossoverRow row;
    row.op = Operation::kSpread;
    row.work = job.work();
    row.shape = absl::StrCat("V=", v, " E=", graph.targets.size(),
                             " hops=", options.spread_hops);
    auto run_on = [&](ComputeBackend& backend) {
      return [&] {
        SpreadOutput out;
        return backend.Spread(job, &out);
      };
    };
    absl::Status cpu_error;
    uint32_t cpu_errors = 0;
    row.cpu_seconds = MedianSeconds(options, clock, Operation::kSpread,
                                    BackendKind::kCpu, row.work, 0, seed_model,
                                    run_on(cpu), &cpu_error, &cpu_errors);
    if (!cpu_error.ok()) return cpu_error;
    row.gpu_seconds = kNaN;
    if (gpu != nullptr) {
      absl::Status gpu_error;
      row.gpu_seconds =
          MedianSeconds(options, clock, Operation::kSpread, BackendKind::kGpu,
                        row.work, SpreadFootprint(job).TotalBytes(), seed_model,
                        run_on(*gpu), &gpu_error, &table.gpu_errors);
    }
    table.rows.push_back(std::move(row));
  }

  // By operation, then work (Crossover reads them in that order).
  std::stable_sort(table.rows.begin(), table.rows.end(),
                   [](const CrossoverRow& a, const CrossoverRow& b) {
                     return std::make_pair(a.op, a.work) <
                            std::make_pair(b.op, b.work);
                   });
  table.cosine_min_gpu_work = Crossover(table.rows, Operation::kCosine);
  table.spread_min_gpu_work = Crossover(table.rows, Operation::kSpread);
  return table;
}

std::string FormatCrossoverTable(const CrossoverTable& table) {
  std::string out = absl::StrCat(
      "calibration: cpu=", table.cpu_name,
      " gpu=", table.gpu_name.empty() ? "(none)" : table.gpu_name,
      table.gpu_device.empty() ? "" : absl::StrCat(" (", table.gpu_device, ")"),
      "\n");
  absl::StrAppendFormat(&out, "%-7s %-28s %16s %12s %12s %9s\n", "op", "shape",
                        "work", "cpu_ms", "gpu_ms", "speedup");
  for (const CrossoverRow& r : table.rows) {
    const std::string gpu_ms =
        std::isnan(r.gpu_seconds)
            ? "-"
            : absl::StrFormat("%.4f", r.gpu_seconds * 1e3);
    const std::string speedup =
        std::isnan(r.gpu_seconds) || r.gpu_seconds <= 0
            ? "-"
            : absl::StrFormat("%.2fx", r.cpu_seconds / r.gpu_seconds);
    absl::StrAppendFormat(&out, "%-7s %-28s %16d %12.4f %12s %9s\n",
                          r.op == Operation::kCosine ? "cosine" : "spread",
                          r.shape, r.work, r.cpu_seconds * 1e3, gpu_ms,
                          speedup);
  }
  absl::StrAppend(
      &out,
      "crossover: cosine min_gpu_work = ", Work(table.cosine_min_gpu_work),
      "; spread min_gpu_work = ", Work(table.spread_min_gpu_work), "\n");
  if (table.gpu_errors > 0) {
    absl::StrAppend(&out, "GPU calls that failed during the sweep: ",
                    table.gpu_errors, "\n");
  }
  return out;
}

std::string FormatCrossoverProfile(const CrossoverTable& table) {
  if (!table.cosine_min_gpu_work.has_value() &&
      !table.spread_min_gpu_work.has_value()) {
    return "";
  }
  std::string out =
      absl::StrCat("# measured by calibration: ", table.cpu_name, " vs ",
                   table.gpu_name, "\n[profile ", table.gpu_device, "]\n");
  auto line = [&](Operation op, absl::string_view key,
                  const std::optional<uint64_t>& min_work) {
    if (!min_work.has_value()) return;
    if (*min_work != kNeverGpu) {
      absl::StrAppend(&out, key, " = ", *min_work, "\n");
      return;
    }
    // The sweep says nothing of sizes above its largest: keep what the GPU
    // lost on the CPU and leave larger work to the performance model, rather
    // than shut the GPU out of sizes where it may win.
    uint64_t largest = 0;
    for (const CrossoverRow& r : table.rows) {
      if (r.op == op && !std::isnan(r.gpu_seconds)) {
        largest = std::max(largest, r.work);
      }
    }
    absl::StrAppend(&out, "# the GPU lost at every measured size up to ",
                    largest, "; larger sizes were not measured\n", key, " = ",
                    largest + 1, "\n");
  };
  line(Operation::kCosine, "min_gpu_work_cosine", table.cosine_min_gpu_work);
  line(Operation::kSpread, "min_gpu_work_spread", table.spread_min_gpu_work);
  return out;
}

std::optional<uint64_t> SmallestGpuWin(const CrossoverTable& table,
                                       Operation op) {
  std::optional<uint64_t> smallest;
  for (const CrossoverRow& r : table.rows) {
    if (r.op != op || std::isnan(r.gpu_seconds) ||
        !(r.gpu_seconds < r.cpu_seconds)) {
      continue;
    }
    if (!smallest.has_value() || r.work < *smallest) smallest = r.work;
  }
  return smallest;
}

namespace {

constexpr const char* kOpKeys[2] = {"cosine", "spread"};
constexpr const char* kBackendKeys[2] = {"cpu", "gpu"};

}  // namespace

std::string FormatStoredCalibration(const StoredCalibration& c) {
  std::string out =
      "# The dispatch engine's calibration: the cost models fitted to its\n"
      "# sweep and the smallest work at which the GPU won, per operation.\n"
      "# Written by the server; loaded at start-up on the same GPU.\n"
      "format = 1\n";
  // No line: measured without a GPU (the format has no empty values).
  if (!c.gpu_device.empty()) {
    absl::StrAppend(&out, "gpu_device = ", c.gpu_device, "\n");
  }
  if (c.cosine_min_gpu_work.has_value()) {
    absl::StrAppend(&out, "cosine_min_gpu_work = ", *c.cosine_min_gpu_work,
                    "\n");
  }
  if (c.spread_min_gpu_work.has_value()) {
    absl::StrAppend(&out, "spread_min_gpu_work = ", *c.spread_min_gpu_work,
                    "\n");
  }
  for (int o = 0; o < 2; ++o) {
    for (int b = 0; b < 2; ++b) {
      const CostFit& f = c.fits[o][b];
      if (!f.usable) continue;
      absl::StrAppend(
          &out, kOpKeys[o], ".", kBackendKeys[b], " = ",
          absl::StrFormat("%.17g %.17g %.17g %d %d %d %.17g\n", f.fixed_seconds,
                          f.seconds_per_byte, f.seconds_per_unit, f.samples,
                          f.min_work, f.max_work, f.relative_error));
    }
  }
  return out;
}

absl::StatusOr<StoredCalibration> ParseStoredCalibration(
    absl::string_view text) {
  constexpr absl::string_view kWhat = "calibration";
  ENGRAM_ASSIGN_OR_RETURN(std::vector<base::KeyValueLine> lines,
                          base::LexKeyValueText(text, kWhat));
  StoredCalibration c;
  bool format_seen = false;
  for (const base::KeyValueLine& line : lines) {
    auto bad = [&](absl::string_view why) {
      return base::KeyValueLineError(kWhat, line.number, why);
    };
    if (line.is_section) return bad("a calibration has no sections");
    const std::string& key = line.key;
    const std::string& value = line.value;
    uint64_t number = 0;
    if (key == "format") {
      if (value != "1") return bad("unsupported format (this build reads 1)");
      format_seen = true;
    } else if (key == "gpu_device") {
      c.gpu_device = value;
    } else if (key == "cosine_min_gpu_work" || key == "spread_min_gpu_work") {
      if (!absl::SimpleAtoi(value, &number)) return bad("not a work count");
      (key == "cosine_min_gpu_work" ? c.cosine_min_gpu_work
                                    : c.spread_min_gpu_work) = number;
    } else {
      int op = -1, backend = -1;
      for (int o = 0; o < 2; ++o) {
        for (int b = 0; b < 2; ++b) {
          if (key == absl::StrCat(kOpKeys[o], ".", kBackendKeys[b])) {
            op = o;
            backend = b;
          }
        }
      }
      if (op < 0) return bad(absl::StrCat("unknown key \"", key, "\""));
      const std::vector<absl::string_view> parts =
          absl::StrSplit(value, ' ', absl::SkipEmpty());
      CostFit f;
      uint64_t samples = 0;
      if (parts.size() != 7 || !absl::SimpleAtod(parts[0], &f.fixed_seconds) ||
          !absl::SimpleAtod(parts[1], &f.seconds_per_byte) ||
          !absl::SimpleAtod(parts[2], &f.seconds_per_unit) ||
          !absl::SimpleAtoi(parts[3], &samples) ||
          !absl::SimpleAtoi(parts[4], &f.min_work) ||
          !absl::SimpleAtoi(parts[5], &f.max_work) ||
          !absl::SimpleAtod(parts[6], &f.relative_error) ||
          !(f.fixed_seconds >= 0) || !(f.seconds_per_byte >= 0) ||
          !(f.seconds_per_unit >= 0) || !std::isfinite(f.fixed_seconds) ||
          !std::isfinite(f.seconds_per_byte) ||
          !std::isfinite(f.seconds_per_unit) ||
          samples > std::numeric_limits<uint32_t>::max()) {
        return bad(
            "expected seven numbers: fixed, per byte and per unit seconds "
            "(finite, >= 0), samples, min and max work, relative error");
      }
      f.samples = static_cast<uint32_t>(samples);
      f.usable = true;
      c.fits[op][backend] = f;
    }
  }
  if (!format_seen) {
    return absl::InvalidArgumentError("calibration: no \"format = 1\" line");
  }
  return c;
}

}  // namespace engram::dispatch
