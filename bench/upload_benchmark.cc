// What a data directory adds to an upload's transfer time: UploadCollection
// through the real gRPC server over loopback, each against its baseline in
// the same run:
//   BM_Upload/durable:0  the upload's RPC, from the client's first message to
//                        its answer, with the server holding the rows in
//                        memory only;
//   BM_Upload/durable:1  the same with --data_dir: the server writes the rows
//                        to their segment file as they arrive and answers
//                        once the file is fsynced and the manifest replaced.
// The difference is what durability adds. The server is a SimilarityServer
// in this process, as engram-server runs it (two worker threads), and the
// client is client::SimilarityClient sending 4 MiB chunk messages to
// 127.0.0.1, so client, server and disk share the machine, as a loopback
// measurement must. Rows: $ENGRAM_BENCH_ROWS x 768 float32, default 2^19
// (1.5 GiB); the collection is deleted, and its files with it, between
// iterations. The data directory is $ENGRAM_BENCH_DIR (default
// /tmp)/engram_upload, which should be on the disk being measured. Needs
// about three times the upload's size in free memory (the client's copy,
// the server's, and the page cache).
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "client/similarity_client.h"
#include "client/types.h"
#include "core/logging.h"
#include "server/server.h"

namespace engram {
namespace {

constexpr uint32_t kDimension = 768;

std::string DataDir() {
  const char* root = std::getenv("ENGRAM_BENCH_DIR");
  return absl::StrCat(root != nullptr ? root : "/tmp", "/engram_upload");
}

// Values that pass the server's checks, cheap to make.
const client::FloatMatrix& Matrix(uint64_t rows) {
  static auto* matrix = new client::FloatMatrix();
  if (matrix->rows != rows) {
    matrix->rows = rows;
    matrix->cols = kDimension;
    matrix->values.resize(rows * kDimension);
    uint32_t state = 12345;
    for (float& v : matrix->values) {
      state = state * 1664525u + 1013904223u;
      v = static_cast<float>(state >> 8) * (1.0f / 16777216.0f) - 0.5f;
    }
  }
  return *matrix;
}

void BM_Upload(benchmark::State& state) {
  const uint64_t rows = static_cast<uint64_t>(state.range(0));
  const bool durable = state.range(1) != 0;
  const client::FloatMatrix& matrix = Matrix(rows);
  const std::string dir = DataDir();
  std::system(absl::StrCat("rm -rf '", dir, "'").c_str());

  server::SimilarityServer::Options options;
  options.grpc_address = "127.0.0.1:0";
  options.metrics_address = "127.0.0.1:0";
  options.engine.worker_threads = 2;
  // The rows and their norms, twice over for slack.
  options.engine.resident.memory_bytes =
      2 * rows * (kDimension + 1) * sizeof(float) + (uint64_t{256} << 20);
  if (durable) options.engine.resident.data_dir = dir;
  auto server = server::SimilarityServer::Create(options);
  if (!server.ok()) {
    state.SkipWithError(std::string(server.status().message()).c_str());
    return;
  }
  if (absl::Status started = (*server)->Start(); !started.ok()) {
    state.SkipWithError(std::string(started.message()).c_str());
    return;
  }
  client::SimilarityClient::Options client_options;
  client_options.target = absl::StrCat("127.0.0.1:", (*server)->grpc_port());
  client_options.timeout = absl::Minutes(10);
  auto client = client::SimilarityClient::Create(client_options);
  if (!client.ok()) {
    state.SkipWithError(std::string(client.status().message()).c_str());
    return;
  }
  client::UploadOptions upload;
  upload.name = "bench";
  for (auto _ : state) {
    auto uploaded = (*client)->UploadCollection(upload, matrix);
    if (!uploaded.ok()) {
      state.SkipWithError(std::string(uploaded.status().message()).c_str());
      break;
    }
    state.PauseTiming();
    if (!(*client)->DeleteCollection("bench").ok()) std::abort();
    state.ResumeTiming();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * rows *
                                               kDimension * sizeof(float)));
  (*server)->Drain().IgnoreError();
  std::system(absl::StrCat("rm -rf '", dir, "'").c_str());
}

}  // namespace
}  // namespace engram

int main(int argc, char** argv) {
  engram::core::SetLogLevel(engram::core::LogLevel::kWarning);
  const char* env = std::getenv("ENGRAM_BENCH_ROWS");
  const int64_t rows = env != nullptr ? std::atoll(env) : int64_t{1} << 19;
  for (int64_t durable : {0, 1}) {
    benchmark::RegisterBenchmark("BM_Upload", engram::BM_Upload)
        ->ArgNames({"rows", "durable"})
        ->Args({rows, durable})
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
