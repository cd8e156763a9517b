// Wall-time bounds for tests that scale with the build they run in.
//
// A deadline, timeout or wait bound that a test sets so that a hung run
// ends must not be one that a correct but slow run can exceed. The same
// test runs optimized, unoptimized, under AddressSanitizer (several times
// slower) and ThreadSanitizer (slower still), on idle desks and on loaded
// two-core CI machines, so every such bound goes through Scaled(): the
// bound written in the test is the one for an optimized, uninstrumented
// build on an idle machine. Bounds that are the behaviour under test (a
// refusal that must come at once, a deadline the server must enforce) are
// not scaled.
//
// ENGRAM_TEST_TIME_SCALE (a positive number) multiplies the build's factor,
// for machines that are slower or busier than the factor allows for.
//
// Thread-safety: every function may be called from several threads at once.
#ifndef ENGRAM_TESTS_TESTING_TIME_SCALE_H_
#define ENGRAM_TESTS_TESTING_TIME_SCALE_H_

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "absl/time/clock.h"
#include "absl/time/time.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ENGRAM_TESTING_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define ENGRAM_TESTING_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ENGRAM_TESTING_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define ENGRAM_TESTING_TSAN 1
#endif

namespace engram::testing {

// How many times slower than an optimized, uninstrumented build this build
// is assumed to be, times ENGRAM_TEST_TIME_SCALE when that is set. The
// factors are generous: a bound too long costs nothing while the test
// passes, one too short fails a correct run.
inline double TimeScale() {
  static const double scale = [] {
#if defined(ENGRAM_TESTING_TSAN)
    double build = 10;
#elif defined(ENGRAM_TESTING_ASAN)
    double build = 5;
#elif !defined(__OPTIMIZE__)
    double build = 3;
#else
    double build = 1;
#endif
    const char* env = std::getenv("ENGRAM_TEST_TIME_SCALE");
    if (env != nullptr && *env != '\0') {
      char* end = nullptr;
      const double factor = std::strtod(env, &end);
      if (*end == '\0' && factor > 0) {
        build *= factor;
      } else {
        // A typo must not pass unnoticed as the default.
        std::fprintf(stderr,
                     "ENGRAM_TEST_TIME_SCALE='%s' is not a positive number; "
                     "ignored\n",
                     env);
      }
    }
    return build;
  }();
  return scale;
}

// `bound` (written for an optimized, uninstrumented build) for this build.
inline absl::Duration Scaled(absl::Duration bound) {
  return bound * TimeScale();
}

// Now plus Scaled(bound), as gRPC's ClientContext::set_deadline takes it.
inline std::chrono::system_clock::time_point ScaledDeadline(
    absl::Duration bound) {
  return absl::ToChronoTime(absl::Now() + Scaled(bound));
}

}  // namespace engram::testing

#endif  // ENGRAM_TESTS_TESTING_TIME_SCALE_H_
