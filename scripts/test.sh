#!/usr/bin/env bash
# README command 2 (and what CI runs): installs what is missing, checks the
# formatting, builds everything with -j2 and runs the whole ctest suite.
# GPU tests (label gpu) skip with a stated reason when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

echo "== format check"
scripts/check-format.sh

echo "== build"
scripts/build.sh -DENGRAM_BUILD_TESTS=ON -DENGRAM_BUILD_BENCHMARKS=ON

echo "== thread-safety analysis (clang -Wthread-safety)"
scripts/thread-safety.sh

echo "== tests"
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j 2 --timeout 300

echo "== ThreadSanitizer (kernels and core, the concurrency stress test included)"
scripts/tsan.sh

echo "== AddressSanitizer + UBSan + LeakSanitizer (every non-GPU test, a short soak)"
scripts/asan.sh

echo "== fuzzing (${FUZZ_SECONDS:-60}s per target, ASan + UBSan)"
scripts/fuzz.sh
