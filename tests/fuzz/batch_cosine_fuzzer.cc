// Fuzzes the BatchCosine path below gRPC: decoding, translation, validation
// and execution on tiny limits. Any input must give OK or a clean error,
// never a crash, and OK results must be well formed.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/validation.h"
#include "engram/similarity/v1/similarity.pb.h"
#include "server/proto_conversion.h"
#include "tests/fuzz/fuzz_engine.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  engram::similarity::v1::BatchCosineRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  engram::core::Engine& engine = engram::fuzz::FuzzEngine();
  auto job = engram::server::CosineJobFromProto(request);
  if (!job.ok()) return 0;
  if (!engram::core::ValidateCosineJob(*job, engine.limits()).ok()) return 0;
  std::vector<float> scores(
      job->top_k == 0 ? job->queries.rows * job->targets.rows : 0);
  engram::dispatch::CosineOutput out;
  out.scores = absl::MakeSpan(scores);
  const absl::Status status = engine.Cosine(*job, &out);
  if (!status.ok()) {
    // Only bad input may fail, and it must say so; a GPU-only request on a
    // machine without a GPU is refused as unavailable.
    const bool gpu_only_refused =
        status.code() == absl::StatusCode::kUnavailable &&
        job->placement == engram::dispatch::Placement::kGpuOnly;
    if (status.code() != absl::StatusCode::kInvalidArgument &&
        !gpu_only_refused) {
      std::abort();
    }
    return 0;
  }
  for (float s : scores) {
    if (!(s >= -1.0f && s <= 1.0f)) std::abort();
  }
  if (job->top_k > 0) {
    if (out.top.size() != job->queries.rows) std::abort();
    for (const auto& list : out.top) {
      if (list.size() > job->top_k || list.size() > job->targets.rows) {
        std::abort();
      }
      for (size_t i = 1; i < list.size(); ++i) {
        if (engram::kernels::BetterThan(list[i], list[i - 1])) std::abort();
      }
    }
  }
  return 0;
}
