#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer job (LeakSanitizer included):
# builds everything without CUDA with -fsanitize=address,undefined and runs
# the unit, end-to-end and stress tests, then a shortened fault-injected soak
# (ENGRAM_SOAK_SECONDS, default 15 here). The end-to-end tests stop their
# servers with SIGTERM and require exit code 0, so a leak in the server (the
# cancellation tests included) fails them. Any report fails the job.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build_dir=${ASAN_BUILD_DIR:-$root/build-asan}

echo "== asan: building with -fsanitize=address,undefined"
# -O1 -g1, the level ASan's authors recommend: reports keep function names
# and file:line, and the build takes about 40% less time than at -O2 -g,
# which is most of this job on a 2-core machine.
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DENGRAM_SANITIZE=address -DENGRAM_CUDA=OFF -DENGRAM_BUILD_BENCHMARKS=OFF \
  > /dev/null
cmake --build "$build_dir" -j "${JOBS:-2}"

# detect_leaks: LeakSanitizer at every process exit; exitcode 23 marks a
# leak. UBSan halts on the first report (compiled -fno-sanitize-recover).
export ASAN_OPTIONS="detect_leaks=1 halt_on_error=1 abort_on_error=0 exitcode=23 strict_string_checks=1 detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1"
export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp print_suppressions=0"

echo "== asan: unit, end-to-end and stress tests"
ctest --test-dir "$build_dir" --output-on-failure -j 2 --timeout 900 \
  -LE 'gpu|soak'

# The soak's resident-memory gate is off here: ASan's quarantine of freed
# blocks grows the resident set by design; LeakSanitizer judges leaks when
# the soak stops the server.
echo "== asan: shortened fault-injected soak"
ENGRAM_SOAK_SECONDS=${ENGRAM_SOAK_SECONDS:-15} ENGRAM_SOAK_MEMORY_GATE=0 \
  ctest --test-dir "$build_dir" --output-on-failure --timeout 900 \
  -R '^reliability_soak_test$'
