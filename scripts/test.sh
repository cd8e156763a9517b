#!/usr/bin/env bash
# README command 2 (and what CI runs): installs what is missing, checks the
# formatting, builds everything with -j2 and runs the whole ctest suite,
# the sanitizers and the fuzzers, then builds the container image (CPU variant)
# and runs it. GPU tests (label gpu) skip with a stated reason when no GPU is
# present; the image check skips with one where buildah, debootstrap or the
# Debian archive is not there.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each step's header carries the time since the start, so a slow step shows
# in the CI log.
step() { printf '== %s [%dm%02ds]\n' "$1" $((SECONDS / 60)) $((SECONDS % 60)); }
scripts/install-deps.sh

step "format check"
scripts/check-format.sh

step "build"
scripts/build.sh -DENGRAM_BUILD_TESTS=ON -DENGRAM_BUILD_BENCHMARKS=ON

step "thread-safety analysis (clang -Wthread-safety)"
scripts/thread-safety.sh

step "tests"
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j 2 --timeout 300

step "ThreadSanitizer (kernels and core, the concurrency stress test included)"
scripts/tsan.sh

step "AddressSanitizer + UBSan + LeakSanitizer (every non-GPU test, a short soak)"
scripts/asan.sh

step "fuzzing (${FUZZ_SECONDS:-45}s per target, ASan + UBSan)"
scripts/fuzz.sh

step "image (CPU variant on Debian 12 with buildah: build, run, check)"
scripts/image-check.sh

step "done"
