// Throughput of the checksums over resident data files (core/collections/
// checksum.h): CRC32C on the crc32 instruction and on the table path it falls
// back to, and SHA-256 (OpenSSL). Arg: buffer size in MiB; 1 MiB stays in the
// last-level cache, 64 MiB comes from memory as a snapshot or .npy file does
// at start-up. Bytes per second is input bytes over time.
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "core/collections/checksum.h"

namespace engram::collections {
namespace {

const std::vector<uint8_t>& Buffer(size_t size) {
  static std::vector<uint8_t>* const buffer = new std::vector<uint8_t>();
  if (buffer->size() != size) {
    std::mt19937_64 rng(42);
    buffer->resize(size);
    for (auto& b : *buffer) b = static_cast<uint8_t>(rng());
  }
  return *buffer;
}

size_t Bytes(const benchmark::State& state) {
  return static_cast<size_t>(state.range(0)) << 20;
}

void SetBytes(benchmark::State& state) {
  state.SetBytesProcessed(
      static_cast<int64_t>(state.iterations() * Bytes(state)));
}

void BM_Crc32cHardware(benchmark::State& state) {
  if (!internal::Crc32cUsesHardware()) {
    state.SkipWithError("no crc32 instruction on this CPU");
    return;
  }
  const std::vector<uint8_t>& data = Buffer(Bytes(state));
  for (auto _ : state) {
    benchmark::DoNotOptimize(Crc32c(data.data(), data.size()));
  }
  SetBytes(state);
}
BENCHMARK(BM_Crc32cHardware)->ArgName("MiB")->Arg(1)->Arg(64);

void BM_Crc32cTable(benchmark::State& state) {
  const std::vector<uint8_t>& data = Buffer(Bytes(state));
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        internal::Crc32cPortable(data.data(), data.size()));
  }
  SetBytes(state);
}
BENCHMARK(BM_Crc32cTable)->ArgName("MiB")->Arg(1)->Arg(64);

void BM_Sha256(benchmark::State& state) {
  const std::vector<uint8_t>& data = Buffer(Bytes(state));
  for (auto _ : state) {
    Sha256 sha;
    sha.Update(data.data(), data.size());
    benchmark::DoNotOptimize(sha.Finish());
  }
  SetBytes(state);
}
BENCHMARK(BM_Sha256)->ArgName("MiB")->Arg(1)->Arg(64);

}  // namespace
}  // namespace engram::collections

BENCHMARK_MAIN();
