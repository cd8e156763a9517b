// The data directory's costs (core/collections/data_dir.h), each against its
// baseline in the same run:
//   BM_SequentialRead  the segment file read front to back in 4 MiB steps
//                      into one reused buffer, nothing else: the disk's (or
//                      the page cache's) rate, the ceiling of a start-up
//                      load;
//   BM_ReadIntoFreshBuffer
//                      the same reads into a freshly allocated buffer of the
//                      file's size (a LargeBuffer, as a segment is), freed
//                      outside the timing: the floor of any loader that ends
//                      with its own copy in memory, page faults included;
//   BM_Load            DataDir::Load of the same collection into fresh
//                      stores: checksum, check every value, norms, with
//                      the segment file mapped and its rows used in place
//                      (map:1, the default) or read into memory (map:0);
//   BM_Commit          an upload staged from memory and committed, without
//                      a journal (durable:0) and through the data directory
//                      (durable:1: rows written to the segment file as they
//                      are staged, then the file fsynced and the manifest
//                      replaced): the difference is what durability adds.
// cold:1 drops the files from the page cache before each iteration
// (posix_fadvise DONTNEED), so reads come from the device. Arg rows: a
// collection of rows x 768 float32: $ENGRAM_BENCH_ROWS, default 2^18
// (768 MiB; 2^20 is 3 GiB, 2^19 1.5 GiB); commits take half as many rows.
// The files live under $ENGRAM_BENCH_DIR (default /tmp), which should be on
// the disk being measured.
// $ENGRAM_BENCH_LOAD_THREADS and $ENGRAM_BENCH_LOAD_PIECE_KIB, when set,
// replace the loader's own choice of threads and piece size
// (SnapshotLoadSplit), to see how the load scales.
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/resident_bench_util.h"
#include "benchmark/benchmark.h"
#include "core/collections/atomic_file.h"
#include "core/collections/collection_store.h"
#include "core/collections/data_dir.h"
#include "core/collections/graph_store.h"
#include "core/collections/memory_budget.h"
#include "core/collections/snapshot.h"
#include "kernels/large_buffer.h"

namespace engram::collections {
namespace {

using bench::BigBudget;
using bench::GraphOptions;
using bench::kDimension;
using bench::kStepBytes;
using bench::Rows;
using bench::UploadAndCommit;

std::string BenchDir(int64_t rows) {
  const char* root = std::getenv("ENGRAM_BENCH_DIR");
  return absl::StrCat(root != nullptr ? root : "/tmp", "/engram_data_dir_",
                      rows);
}

// A data directory holding one collection of `rows` rows, made once.
const std::string& Prepared(int64_t rows) {
  static auto* made = new std::map<int64_t, std::string>();
  auto it = made->find(rows);
  if (it != made->end()) return it->second;
  const std::string dir = BenchDir(rows);
  std::system(absl::StrCat("rm -rf '", dir, "'").c_str());
  auto data_dir = *DataDir::Open(dir);
  CollectionStore::Options options;
  options.budget = BigBudget();
  options.journal = data_dir.get();
  auto store = *CollectionStore::Create(options);
  const absl::Status done =
      UploadAndCommit(*store, "bench", Rows(static_cast<uint64_t>(rows)))
          .status();
  if (!done.ok()) std::abort();
  return (*made)[rows] = dir;
}

std::vector<std::string> SegmentFiles(const std::string& dir) {
  std::vector<std::string> files;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir((dir + "/segments").c_str()),
                                        ::closedir);
  while (dirent* e = d ? ::readdir(d.get()) : nullptr) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") files.push_back(dir + "/segments/" + name);
  }
  return files;
}

void DropFromPageCache(const std::string& dir) {
  for (const std::string& path : SegmentFiles(dir)) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

uint64_t FileBytes(const std::string& dir) {
  uint64_t bytes = 0;
  for (const std::string& path : SegmentFiles(dir)) {
    auto file = FileReader::Open(path);
    if (file.ok()) bytes += file->size();
  }
  return bytes;
}

// Reads every segment file front to back in kStepBytes steps: into one
// reused buffer, or (`fresh`) into a new buffer of the file's size, freed
// outside the timing.
void ReadSegmentFiles(benchmark::State& state, bool fresh) {
  const std::string& dir = Prepared(state.range(0));
  const bool cold = state.range(1) != 0;
  std::vector<char> step(kStepBytes);
  for (auto _ : state) {
    if (cold) {
      state.PauseTiming();
      DropFromPageCache(dir);
      state.ResumeTiming();
    }
    for (const std::string& path : SegmentFiles(dir)) {
      auto file = FileReader::Open(path);
      if (!file.ok()) {
        state.SkipWithError(std::string(file.status().message()).c_str());
        return;
      }
      kernels::LargeBuffer<char> whole;
      if (fresh) whole = kernels::LargeBuffer<char>(file->size());
      while (file->position() < file->size()) {
        const size_t n = static_cast<size_t>(
            std::min<uint64_t>(kStepBytes, file->size() - file->position()));
        char* to = fresh ? whole.data() + file->position() : step.data();
        if (!file->Read(to, n).ok()) std::abort();
      }
      benchmark::DoNotOptimize(fresh ? whole.data() : step.data());
      if (fresh) {
        state.PauseTiming();
        whole = kernels::LargeBuffer<char>();
        state.ResumeTiming();
      }
    }
  }
  state.SetBytesProcessed(
      static_cast<int64_t>(state.iterations() * FileBytes(dir)));
}

void BM_SequentialRead(benchmark::State& state) {
  ReadSegmentFiles(state, /*fresh=*/false);
}

void BM_ReadIntoFreshBuffer(benchmark::State& state) {
  ReadSegmentFiles(state, /*fresh=*/true);
}

void BM_Load(benchmark::State& state) {
  const std::string& dir = Prepared(state.range(0));
  const bool cold = state.range(1) != 0;
  DataDir::Options dir_options;
  dir_options.path = dir;
  dir_options.map_segments = state.range(2) != 0;
  for (auto _ : state) {
    state.PauseTiming();
    if (cold) DropFromPageCache(dir);
    auto budget = BigBudget();
    auto data_dir = *DataDir::Open(dir_options);
    CollectionStore::Options options;
    options.budget = budget;
    options.journal = data_dir.get();
    auto collections = *CollectionStore::Create(options);
    auto graphs = *GraphStore::Create(GraphOptions(budget));
    state.ResumeTiming();
    const std::vector<LoadOutcome> outcomes =
        *data_dir->Load(collections.get(), graphs.get());
    state.PauseTiming();
    if (outcomes.size() != 1 || !outcomes[0].status.ok()) {
      state.SkipWithError("load failed");
      return;
    }
    collections.reset();  // frees the rows outside the timing
    state.ResumeTiming();
  }
  state.SetBytesProcessed(
      static_cast<int64_t>(state.iterations() * FileBytes(dir)));
}

void BM_Commit(benchmark::State& state) {
  const uint64_t rows = static_cast<uint64_t>(state.range(0));
  const bool durable = state.range(1) != 0;
  static auto* made = new std::map<uint64_t, std::vector<float>>();
  std::vector<float>& values = (*made)[rows];
  if (values.empty()) values = Rows(rows);
  const std::string dir = BenchDir(rows) + "_commit";
  std::system(absl::StrCat("rm -rf '", dir, "'").c_str());
  auto data_dir = *DataDir::Open(dir);
  CollectionStore::Options options;
  options.budget = BigBudget();
  options.journal = durable ? data_dir.get() : nullptr;
  auto store = *CollectionStore::Create(options);
  for (auto _ : state) {
    if (!UploadAndCommit(*store, "bench", values).ok()) {
      state.SkipWithError("commit failed");
      return;
    }
    state.PauseTiming();
    if (!store->Delete("bench").ok()) std::abort();
    state.ResumeTiming();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * rows *
                                               kDimension * sizeof(float)));
  std::system(absl::StrCat("rm -rf '", dir, "'").c_str());
}

}  // namespace
}  // namespace engram::collections

int main(int argc, char** argv) {
  using engram::collections::BM_Commit;
  using engram::collections::BM_Load;
  using engram::collections::BM_ReadIntoFreshBuffer;
  using engram::collections::BM_SequentialRead;
  const char* env = std::getenv("ENGRAM_BENCH_ROWS");
  const int64_t rows = env != nullptr ? std::atoll(env) : int64_t{1} << 18;
  for (int64_t cold : {0, 1}) {
    benchmark::RegisterBenchmark("BM_SequentialRead", BM_SequentialRead)
        ->ArgNames({"rows", "cold"})
        ->Args({rows, cold})
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark("BM_ReadIntoFreshBuffer",
                                 BM_ReadIntoFreshBuffer)
        ->ArgNames({"rows", "cold"})
        ->Args({rows, cold})
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    for (int64_t map : {1, 0}) {
      benchmark::RegisterBenchmark("BM_Load", BM_Load)
          ->ArgNames({"rows", "cold", "map"})
          ->Args({rows, cold, map})
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  }
  for (int64_t durable : {0, 1}) {
    benchmark::RegisterBenchmark("BM_Commit", BM_Commit)
        ->ArgNames({"rows", "durable"})
        ->Args({rows / 2, durable})
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  engram::collections::SnapshotLoadSplit split;
  if (const char* threads = std::getenv("ENGRAM_BENCH_LOAD_THREADS")) {
    split.threads = static_cast<unsigned>(std::atoi(threads));
  }
  if (const char* kib = std::getenv("ENGRAM_BENCH_LOAD_PIECE_KIB")) {
    split.piece_bytes = static_cast<uint64_t>(std::atoll(kib)) << 10;
  }
  engram::collections::internal::SetSnapshotLoadSplitForTesting(split);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
