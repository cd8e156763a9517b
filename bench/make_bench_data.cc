// make_bench_data: writes the inputs of cosine_benchmark and
// spread_benchmark as .npy files, so that the Python peers (bench/peers.py)
// time exactly the same data:
//
//   queries_d<D>.npy   128 x D float32      (BenchMatrix seed 1)
//   targets_d<D>.npy   <max_targets> x D    (BenchMatrix seed 2)
//   rmat<S>_offsets.npy, rmat<S>_targets.npy (uint32), rmat<S>_weights.npy
//                      R-MAT 2^S nodes, average degree 16, seed 3
//
//   make_bench_data --out_dir=/tmp/engram-bench --dims=384,768 --scales=16,20
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_data.h"

ABSL_FLAG(std::string, out_dir, "/tmp/engram-bench", "Folder to write to.");
ABSL_FLAG(std::string, dims, "384,768", "Vector dimensions.");
ABSL_FLAG(int, max_targets, 256 << 10, "Target rows per dimension.");
ABSL_FLAG(std::string, scales, "16,20", "R-MAT scales (log2 of nodes).");

namespace engram::bench {
namespace {

absl::Status Write() {
  const std::string dir = absl::GetFlag(FLAGS_out_dir);
  for (absl::string_view text :
       absl::StrSplit(absl::GetFlag(FLAGS_dims), ',', absl::SkipEmpty())) {
    size_t d = 0;
    if (!absl::SimpleAtoi(text, &d) || d == 0) {
      return absl::InvalidArgumentError(absl::StrCat("bad dimension ", text));
    }
    const std::vector<float> q = BenchMatrix(128, d, 1);
    if (auto s = WriteNpyMatrix(absl::StrCat(dir, "/queries_d", d, ".npy"),
                                q.data(), 128, d);
        !s.ok()) {
      return s;
    }
    const size_t n = static_cast<size_t>(absl::GetFlag(FLAGS_max_targets));
    const std::vector<float> t = BenchMatrix(n, d, 2);
    if (auto s = WriteNpyMatrix(absl::StrCat(dir, "/targets_d", d, ".npy"),
                                t.data(), n, d);
        !s.ok()) {
      return s;
    }
  }
  for (absl::string_view text :
       absl::StrSplit(absl::GetFlag(FLAGS_scales), ',', absl::SkipEmpty())) {
    int scale = 0;
    if (!absl::SimpleAtoi(text, &scale) || scale < 1 || scale > 30) {
      return absl::InvalidArgumentError(absl::StrCat("bad scale ", text));
    }
    const CsrGraph g = RmatGraph(scale, 16, 3);
    const std::string prefix = absl::StrCat(dir, "/rmat", scale);
    if (auto s = WriteNpyVector(prefix + "_offsets.npy", g.row_offsets.data(),
                                g.row_offsets.size());
        !s.ok()) {
      return s;
    }
    if (auto s = WriteNpyVector(prefix + "_targets.npy", g.targets.data(),
                                g.targets.size());
        !s.ok()) {
      return s;
    }
    if (auto s = WriteNpyVector(prefix + "_weights.npy", g.weights.data(),
                                g.weights.size());
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace engram::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = engram::bench::Write();
  if (!status.ok()) {
    std::fprintf(stderr, "make_bench_data: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
