// Keeping freed memory in glibc's heaps, for processes that parse requests
// of a few MiB on many threads: engram-server (--malloc_trim_threshold) and
// the echo floor it is measured against (bench/echo_server), so that both
// pay the same allocator costs.
//
// glibc's defaults return a thread heap's free top to the system once it
// exceeds 128 KiB (madvise DONTNEED), so each large request faults every
// page of its buffer in afresh: about a fifth of the server's CPU time at
// 3 MiB a call (perf, docs/performance.md). With a trim threshold of
// `trim_threshold` bytes, and allocations up to 32 MiB served from the heaps
// rather than mmap, the next request reuses the memory.
//
// Call before any thread starts, so that every arena gets the settings.
#ifndef ENGRAM_SERVER_MALLOC_TUNING_H_
#define ENGRAM_SERVER_MALLOC_TUNING_H_

#include <malloc.h>

namespace engram::server {

// The largest trim threshold mallopt takes (an int).
inline constexpr unsigned long long kMaxMallocTrimThreshold = 2147483647;

// False when the allocator refused (not glibc's: a sanitizer's, for one);
// the process then runs on the allocator's defaults. `trim_threshold` must
// be in [1, kMaxMallocTrimThreshold].
inline bool RetainFreedMemory(int trim_threshold) {
  return mallopt(M_MMAP_THRESHOLD, 32 << 20) != 0 &&
         mallopt(M_TRIM_THRESHOLD, trim_threshold) != 0;
}

}  // namespace engram::server

#endif  // ENGRAM_SERVER_MALLOC_TUNING_H_
