// Fuzzes the Spread path below gRPC: decoding, translation, validation and
// execution on tiny limits. OK results must respect the cap and be finite.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "engram/similarity/v1/similarity.pb.h"
#include "server/proto_conversion.h"
#include "tests/fuzz/fuzz_engine.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  engram::similarity::v1::SpreadRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  std::vector<engram::kernels::SpreadSeed> seeds;
  auto job = engram::server::SpreadJobFromProto(request, &seeds);
  if (!job.ok()) return 0;
  engram::dispatch::SpreadOutput out;
  const absl::Status status = engram::fuzz::FuzzEngine().Spread(*job, &out);
  if (!status.ok()) {
    const bool gpu_only_refused =
        status.code() == absl::StatusCode::kUnavailable &&
        job->placement == engram::dispatch::Placement::kGpuOnly;
    if (status.code() != absl::StatusCode::kInvalidArgument &&
        status.code() != absl::StatusCode::kResourceExhausted &&
        !gpu_only_refused) {
      std::abort();
    }
    return 0;
  }
  if (out.result.activation.size() != job->graph.num_nodes) std::abort();
  const float cap = job->params.max_activation;
  for (float a : out.result.activation) {
    if (!std::isfinite(a) || a < 0.0f || a > cap) std::abort();
  }
  if (out.result.hops > job->params.max_hops) std::abort();
  return 0;
}
