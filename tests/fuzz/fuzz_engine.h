// A process-wide engine with tiny limits for the fuzz targets: created once,
// so each input pays only for its own request.
#ifndef ENGRAM_TESTS_FUZZ_FUZZ_ENGINE_H_
#define ENGRAM_TESTS_FUZZ_FUZZ_ENGINE_H_

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "absl/time/time.h"
#include "core/engine.h"

namespace engram::fuzz {

// Limits small enough that every accepted input runs in microseconds, so
// the fuzzer explores instead of computing.
inline core::RequestLimits TinyLimits() {
  core::RequestLimits limits;
  limits.max_input_elements = 4096;
  limits.max_output_elements = 4096;
  limits.max_nodes = 1024;
  limits.max_edges = 4096;
  limits.max_seeds = 64;
  return limits;
}

inline core::Engine& FuzzEngine() {
  static core::Engine* engine = [] {
    core::Engine::Options options;
    options.worker_threads = 1;
    options.limits = TinyLimits();
    // Resident data fits in 1 MiB: a header that declares more is refused
    // before anything is allocated, so no input allocates much.
    options.resident.memory_bytes = 1 << 20;
    // A search for a version this process will never have answers at once
    // rather than after the server's default wait.
    options.resident.min_version_wait = absl::Milliseconds(1);
    auto created =
        core::Engine::Create(options, std::make_shared<prometheus::Registry>());
    if (!created.ok()) {
      std::fprintf(stderr, "fuzz engine: %s\n",
                   created.status().ToString().c_str());
      std::abort();
    }
    return created->release();
  }();
  return *engine;
}

}  // namespace engram::fuzz

#endif  // ENGRAM_TESTS_FUZZ_FUZZ_ENGINE_H_
