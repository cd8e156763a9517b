// Reads this process's figures from /proc/self: CPU time, memory, start time
// and file descriptors, the values of the standard process_* metrics that
// EngineCollector (core/engine_collector.h) adds to every scrape.
//
// Thread-safety: ReadProcessSample() may be called from any thread; each
// call reads /proc afresh and shares no state.
#ifndef ENGRAM_CORE_PROCESS_SAMPLE_H_
#define ENGRAM_CORE_PROCESS_SAMPLE_H_

#include "absl/status/statusor.h"

namespace engram::core {

// One reading of /proc/self: the standard process_* metrics.
struct ProcessSample {
  double cpu_seconds = 0;  // user + system
  double resident_memory_bytes = 0;
  double virtual_memory_bytes = 0;
  double start_time_seconds = 0;  // since the Unix epoch
  double open_fds = 0;
  double max_fds = 0;
};
// UNAVAILABLE when /proc/self cannot be read (not Linux).
absl::StatusOr<ProcessSample> ReadProcessSample();

}  // namespace engram::core

#endif  // ENGRAM_CORE_PROCESS_SAMPLE_H_
