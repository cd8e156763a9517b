#include "bench/bench_data.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <numeric>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/random_values.h"

namespace engram::bench {
namespace {

// Uniform on [0, 1) from the top 24 bits: exactly representable floats.
float Unit(uint64_t bits) {
  return static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);
}

}  // namespace

std::vector<float> BenchMatrix(size_t rows, size_t cols, uint64_t seed) {
  std::vector<float> values(rows * cols);
  const uint64_t first = base::SplitMix64(seed);
  const size_t threads =
      std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 16);
  const size_t per = (values.size() + threads - 1) / threads;
  std::vector<std::thread> workers;
  for (size_t t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      const size_t end = std::min(values.size(), (t + 1) * per);
      for (size_t i = t * per; i < end; ++i) {
        values[i] = base::SymmetricUnit(base::SplitMix64(first + i));
      }
    });
  }
  for (std::thread& w : workers) w.join();
  return values;
}

CsrGraph RmatGraph(int scale, int avg_degree, uint64_t seed,
                   RmatWeights weights) {
  const uint32_t n = uint32_t{1} << scale;
  const uint64_t m = uint64_t{n} * static_cast<uint64_t>(avg_degree);
  // A fixed pseudo-random permutation of node ids: i -> (a * i + b) mod n
  // with a odd is a bijection on [0, 2^scale).
  const uint32_t perm_a =
      static_cast<uint32_t>(base::SplitMix64(seed ^ 0x5a5a) | 1);
  const uint32_t perm_b =
      static_cast<uint32_t>(base::SplitMix64(seed ^ 0xa5a5));
  auto scramble = [&](uint32_t v) { return (perm_a * v + perm_b) & (n - 1); };
  std::vector<std::pair<uint32_t, uint32_t>> edges(m);
  uint64_t counter = base::SplitMix64(seed);
  for (uint64_t e = 0; e < m; ++e) {
    uint32_t src = 0, dst = 0;
    for (int level = 0; level < scale; ++level) {
      const float r = Unit(base::SplitMix64(counter++));
      // Quadrants a = 0.57, b = 0.19, c = 0.19, d = 0.05.
      const uint32_t bit = uint32_t{1} << level;
      if (r < 0.57f) {
      } else if (r < 0.76f) {
        dst |= bit;
      } else if (r < 0.95f) {
        src |= bit;
      } else {
        src |= bit;
        dst |= bit;
      }
    }
    edges[e] = {scramble(src), scramble(dst)};
  }
  CsrGraph g;
  g.num_nodes = n;
  g.row_offsets.assign(n + 1, 0);
  for (const auto& [src, dst] : edges) ++g.row_offsets[src + 1];
  std::partial_sum(g.row_offsets.begin(), g.row_offsets.end(),
                   g.row_offsets.begin());
  g.targets.resize(m);
  g.weights.resize(m);
  std::vector<uint32_t> fill(g.row_offsets.begin(), g.row_offsets.end() - 1);
  for (uint64_t e = 0; e < m; ++e) {
    const uint32_t pos = fill[edges[e].first]++;
    g.targets[pos] = edges[e].second;
    // (0, 1]: 1 - [0, 1).
    g.weights[pos] = 1.0f - Unit(base::SplitMix64(counter++));
  }
  if (weights == RmatWeights::kFanNormalized) {
    for (uint32_t u = 0; u < n; ++u) {
      const uint32_t begin = g.row_offsets[u], end = g.row_offsets[u + 1];
      for (uint32_t e = begin; e < end; ++e) {
        g.weights[e] /= static_cast<float>(end - begin);
      }
    }
  }
  return g;
}

namespace {

absl::Status WriteNpyRaw(const std::string& path, const char* descr,
                         const void* data, size_t bytes,
                         const std::string& shape) {
  std::string header =
      absl::StrCat("{'descr': '", descr,
                   "', 'fortran_order': False, 'shape': (", shape, "), }");
  // Magic (6) + version (2) + header length (2) + header, padded with spaces
  // and a newline to a multiple of 64 bytes.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"),
                                          &std::fclose);
  if (f == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot open ", path));
  }
  const unsigned char preamble[] = {
      0x93,
      'N',
      'U',
      'M',
      'P',
      'Y',
      1,
      0,
      static_cast<unsigned char>(header.size()),
      static_cast<unsigned char>(header.size() >> 8)};
  if (std::fwrite(preamble, 1, sizeof(preamble), f.get()) != sizeof(preamble) ||
      std::fwrite(header.data(), 1, header.size(), f.get()) != header.size() ||
      std::fwrite(data, 1, bytes, f.get()) != bytes) {
    return absl::UnavailableError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteNpyMatrix(const std::string& path, const float* data,
                            size_t rows, size_t cols) {
  return WriteNpyRaw(path, "<f4", data, rows * cols * sizeof(float),
                     absl::StrCat(rows, ", ", cols));
}

absl::Status WriteNpyVector(const std::string& path, const float* data,
                            size_t size) {
  return WriteNpyRaw(path, "<f4", data, size * sizeof(float),
                     absl::StrCat(size, ","));
}

absl::Status WriteNpyVector(const std::string& path, const uint32_t* data,
                            size_t size) {
  return WriteNpyRaw(path, "<u4", data, size * sizeof(uint32_t),
                     absl::StrCat(size, ","));
}

}  // namespace engram::bench
